"""Streaming video input and output with PyAV: probe, frame-exact decode, encode, segment join.

The video path never holds a whole video in memory and never invents a frame rate:

* :func:`probe_video` checks the input (missing, empty, unreadable, no video stream: one clear
  :class:`~gfpgan.errors.UserError`) and builds the frame table: the sorted presentation
  timestamps of every frame, read from the demuxer's packets (no decoding), in the stream's own
  rational time base. Variable frame rates and 30000/1001 clocks are therefore exact.
* :func:`iter_frames` decodes any timestamp range with a keyframe seek, converting to upright RGB
  (the display-matrix rotation applied with lossless 90-degree turns) and keeping the decoded
  frame, so frames the restorer leaves untouched can be re-encoded from their original planes.
  Packets that fail to decode are counted, not fatal.
* :class:`SegmentEncoder` writes one segment to a ``.mov`` file with timestamps rebased to zero
  (mp4/mov edit lists are only millisecond-exact at a non-zero start); every segment starts with
  a fresh encoder, hence an IDR frame.
* :func:`join_segments` remuxes the segments' packets (no re-encode) at their absolute
  timestamps together with every audio stream of the source (copied when the output container
  takes the codec, else re-encoded to AAC), restores rotation, aspect ratio and colour tags.

A folder of images is a video too (:func:`probe_video` on a folder): frames are the sorted image
files at a given constant rate.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path
from typing import List

import av
import numpy as np

from gfpgan.errors import UserError
from gfpgan.inference.video.decode import decode_frames, open_input
from gfpgan.inference.video.info import AudioInfo, VideoInfo
from gfpgan.inference.video.timestamps import repair_stamps

__all__ = ["probe_video"]


_CHECK_FRAMES = 48  # decoded and compared with the packet table before trusting it


def _probe_folder(path: Path, fps: Fraction) -> VideoInfo:
    from gfpgan.images import list_images, read_image  # light helpers, imported lazily
    files = list_images(path)
    if not files:
        raise UserError(f"the folder {path} contains no image files; give a video file or a "
                        f"folder of frames (png/jpg...).")
    h, w = read_image(files[0]).shape[:2]
    rate = Fraction(fps)
    n = len(files)
    return VideoInfo(path=path, width=w, height=h, time_base=1 / rate, rate=rate,
                     pts=np.arange(n, dtype=np.int64), keyframes=np.ones(n, bool),
                     pix_fmt="rgb24", codec="image", files=list(files), colour={})


def probe_video(path, folder_fps: Fraction = Fraction(25)) -> VideoInfo:
    """Check an input and build its frame table, decoding only where the file's stamps are broken.

    The table is read from the demuxer's packets (no decoding), then the first frames are decoded
    and compared with it; where they differ (packed B-frames, missing or repeated stamps, a raw
    stream) the stream is decoded once and its stamps repaired (see
    :mod:`gfpgan.inference.video.timestamps`), ``info.stamps.note()`` says how many.

    Args:
        path: a video file of any container/codec FFmpeg reads, or a folder of frames.
        folder_fps: frame rate given to a folder of frames.
    Returns:
        The :class:`VideoInfo`.
    Raises:
        UserError: missing/empty/unreadable file, no video stream, no decodable frame.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"the input {path} does not exist; check the path.")
    if path.is_dir():
        return _probe_folder(path, folder_fps)
    if path.stat().st_size == 0:
        raise UserError(f"the input {path} is empty (0 bytes); give a complete video file.")
    with open_input(path) as c:
        if not c.streams.video:
            raise UserError(f"{path} has no video stream; give a file that contains video.")
        vs = c.streams.video[0]
        tb = vs.time_base or Fraction(1, 90000)
        pts, keys, missing = [], [], 0
        try:
            for p in c.demux(vs):
                if p.size == 0:
                    continue
                if p.is_discard:
                    continue  # before an edit list's start: the decoder drops it
                if p.pts is None:
                    missing += 1
                    continue
                pts.append(p.pts)
                keys.append(bool(p.is_keyframe))
        except av.error.FFmpegError:
            pass  # a truncated tail: keep the packets read so far
        audio = [AudioInfo(a.index, a.codec_context.name, a.codec_context.sample_rate or 0,
                           a.codec_context.layout.nb_channels, a.language)
                 for a in c.streams.audio]
        rates = [Fraction(r) for r in (vs.average_rate, vs.guessed_rate, vs.base_rate,
                                       vs.codec_context.framerate) if r]
    info = VideoInfo(path=path, width=0, height=0, time_base=Fraction(tb),
                     rate=_nominal_rate(rates, np.sort(np.array(pts, np.int64)), Fraction(tb)),
                     pts=np.array([], np.int64), keyframes=np.array([], bool), audio=audio,
                     codec=vs.codec_context.name)
    order = np.argsort(np.array(pts, np.int64), kind="stable")
    info.pts = np.array(pts, np.int64)[order]
    info.keyframes = np.array(keys, bool)[order]
    head = list(itertools.islice(decode_frames(info, None, raw=True), _CHECK_FRAMES))
    if not head:
        raise UserError(f"{path} contains no decodable video frame; the file is damaged or "
                        f"truncated.")
    table_ok = not missing and len(np.unique(info.pts)) == len(info.pts) and \
        [d.frame.pts for d in head] == [int(t) for t in info.pts[:len(head)]]
    if not table_ok:
        _repair(info)
    f = head[0].frame
    info.rotation = int(round(f.rotation or 0)) % 360
    info.width, info.height = f.width, f.height
    info.pix_fmt = f.format.name
    info.colour = {k: int(getattr(f, k)) for k in
                   ("color_range", "colorspace", "color_primaries", "color_trc")}
    with open_input(path) as c:
        sar = c.streams.video[0].sample_aspect_ratio
        info.sar = Fraction(sar) if sar else None
    return info


def _nominal_rate(rates: List[Fraction], pts: np.ndarray, tb: Fraction) -> Fraction:
    """The stream's frame rate that agrees best with its frame table (a DV file, say, reports an
    average rate of 60000); 25 only where the stream gives none."""
    if not rates:
        return Fraction(25)
    steps = np.diff(pts)
    steps = steps[steps > 0]
    if not len(steps):
        return rates[0]
    seen = 1 / (Fraction(int(np.median(steps))) * tb)
    return min(rates, key=lambda r: abs(float(r / seen) - 1))


def _repair(info: VideoInfo) -> None:
    """Decode the whole stream once and give its frames repaired stamps (the table's order)."""
    raw_pts, raw_dts, durations = [], [], []
    for d in decode_frames(info, None, raw=True):
        raw_pts.append(d.frame.pts)
        raw_dts.append(d.frame.dts)
        durations.append(int(d.frame.duration or 0))
    step = max(1, int(round(1 / (info.rate * info.time_base))))
    st = repair_stamps(raw_pts, raw_dts, durations, step)
    info.stamps = st
    info.pts = st.pts
    info.keyframes = np.zeros(len(st.pts), bool)
    info.seekable = st.keys is not None
