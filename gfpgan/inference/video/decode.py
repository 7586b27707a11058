"""Frame-exact decoding of a probed video with PyAV: any timestamp range, upright RGB.

:func:`iter_frames` decodes a range with a keyframe seek, converting to upright RGB (the
display-matrix rotation applied with lossless 90-degree turns) and keeping the decoded frame, so
frames the restorer leaves untouched can be re-encoded from their original planes. Packets that
fail to decode are counted, not fatal. A folder of images decodes as its sorted files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import av
import numpy as np

from gfpgan.errors import UserError
from gfpgan.inference.video.info import VideoInfo
from gfpgan.inference.video.streams import av_open as _av_open

__all__ = ["DecodedFrame", "iter_frames", "decode_frames", "open_input"]

# AVColorSpace -> swscale colour matrix (both use the same small integers where they exist).
SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}


@dataclass
class DecodedFrame:
    """One decoded frame: upright RGB for the restorer plus the original frame for pass-through."""

    pts: int
    image: np.ndarray
    frame: Optional[av.VideoFrame] = None


def open_input(path: Path):
    try:
        return _av_open(path)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path} is not a readable video ({type(exc).__name__}: "
                        f"{getattr(exc, 'strerror', None) or exc}); check that the file is "
                        f"complete and in a format FFmpeg decodes.") from None


def _to_rgb(f: av.VideoFrame) -> np.ndarray:
    """Decoded frame -> RGB uint8 with the frame's own colour matrix and range."""
    matrix = SWS_MATRIX.get(int(f.colorspace), 5)
    rng = 2 if int(f.color_range) == 2 or f.format.name.startswith("yuvj") else 1
    if f.format.name in ("rgb24",):
        return f.to_ndarray()
    return f.to_ndarray(format="rgb24", src_colorspace=matrix, src_color_range=rng)


def decode_frames(info: VideoInfo, seek_pts: Optional[int], counter: Optional[list] = None,
            raw: bool = False) -> Iterator[DecodedFrame]:
    """Decode frames from the key frame at or before ``seek_pts`` (None: from the start).

    ``seek_pts`` is a table timestamp, or for repaired stamps a raw one (``info.stamps.seek``).
    Frames carry table timestamps: their own ``pts``, or for repaired stamps the table entry of
    their position (from the start) or of their raw ``(pts, dts)`` (after a seek). ``raw``: no
    RGB conversion and no renumbering (``image`` is None; the probe reads the decoder's stamps).
    """
    k = (info.rotation // 90) % 4
    if info.files:
        from gfpgan.images import read_image
        start = 0 if seek_pts is None else int(seek_pts)
        for i in range(start, len(info.files)):
            img = read_image(info.files[i])
            if img.shape[:2] != (info.height, info.width):
                raise UserError(f"the frame {info.files[i]} is {img.shape[1]}x{img.shape[0]}, "
                                f"not {info.width}x{info.height} like the first frame; all frames "
                                f"of a folder must have the same size.")
            yield DecodedFrame(i, img, None)
        return
    st = info.stamps
    with open_input(info.path) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        seeked = seek_pts is not None and info.seekable
        if seeked:
            c.seek(int(seek_pts), stream=vs, backward=True, any_frame=False)
        n = 0
        packets = c.demux(vs)
        flushed = False
        while not flushed:
            try:
                p = next(packets)
            except StopIteration:
                p, flushed = None, True
            except av.error.FFmpegError:
                if counter is not None:
                    counter[0] += 1
                p, flushed = None, True  # unreadable tail: flush what the decoder holds
            if p is not None and p.size == 0:
                p, flushed = None, True
            try:
                frames = vs.decode(p)
            except av.error.FFmpegError:
                if counter is not None:
                    counter[0] += 1
                continue
            for f in frames:
                n += 1
                if raw:
                    yield DecodedFrame(f.pts if f.pts is not None else -1, None, f)
                    continue
                if st is None:
                    if f.pts is None:
                        continue  # cannot be placed (the probe's check found none such)
                    pts = int(f.pts)
                else:
                    i = st.keys.get((f.pts, f.dts)) if seeked else n - 1
                    if i is None or i >= len(st.pts):
                        continue
                    pts = int(st.pts[i])
                img = _to_rgb(f)
                if k:
                    img = np.ascontiguousarray(np.rot90(img, k))
                yield DecodedFrame(pts, img, f)


def iter_frames(info: VideoInfo, start_pts: int, stop_pts: Optional[int],
                counter: Optional[list] = None) -> Iterator[DecodedFrame]:
    """Decode the frames with ``start_pts <= pts < stop_pts`` in display order.

    Seeks to a key frame before ``start_pts``; when the demuxer lands after it (open GOPs, coarse
    indexes) it retries from further back, finally from the start, so the range is frame-exact.
    With repaired stamps every frame of the range must come in table order; a gap (a frame not
    found again after the seek) also retries from further back.

    Args:
        info: from :func:`probe_video`.
        start_pts, stop_pts: timestamp range in ``info.time_base`` (stop None: to the end).
        counter: a one-item list incremented for each packet that fails to decode.
    Yields:
        :class:`DecodedFrame` with ``image`` upright RGB uint8 (H, W, 3).
    """
    first_pts = int(info.pts[0]) if len(info.pts) else 0
    repaired = info.stamps is not None
    i0 = int(np.searchsorted(info.pts, start_pts))
    anchor = start_pts
    if repaired and info.seekable and i0 < len(info.pts):
        anchor, first_pts = int(info.stamps.seek[i0]), int(info.stamps.seek[0])
    span = int(max(1, round(2 / info.time_base)))  # back off 2 s, 8 s, 32 s... then the start
    targets = [anchor] if anchor > first_pts else []
    targets += [anchor - span * 4 ** i for i in range(4) if anchor - span * 4 ** i > first_pts]
    targets.append(None)
    if not info.seekable or info.files:
        targets = [None] if not info.files else [start_pts]
    nxt = i0  # repaired stamps: index of the next frame owed
    for target in targets:
        started = False
        for d in decode_frames(info, target, counter):
            if not started:
                started = True
                if d.pts > start_pts and target is not None:
                    break  # landed after the start: retry from further back
            if d.pts < start_pts:
                continue
            if stop_pts is not None and d.pts >= stop_pts:
                return
            if repaired:
                if nxt < len(info.pts) and d.pts < info.pts[nxt]:
                    continue  # already given before a retry
                if nxt >= len(info.pts) or d.pts != info.pts[nxt]:
                    break  # a frame not found again after the seek: from further back
                nxt += 1
            yield d
        else:
            if started or target is None:
                return
            # nothing decoded after the seek (it landed at the end): from further back
    return
