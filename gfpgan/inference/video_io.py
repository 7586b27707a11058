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

import heapq
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import av
import numpy as np

from gfpgan.errors import UserError

__all__ = ["AudioInfo", "VideoInfo", "DecodedFrame", "probe_video", "iter_frames",
           "SegmentEncoder", "join_segments", "encoder_options", "OUTPUT_FORMATS"]

# Output containers we mux (by extension) and the muxer name PyAV knows them by.
OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
# AVColorSpace -> swscale colour matrix (both use the same small integers where they exist).
_SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}
_CRF_CODECS = {"libx264", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1"}
_PRESET_CODECS = {"libx264", "libx265", "libsvtav1"}
_SUBSAMPLED = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "nv12", "yuv420p10le")


@dataclass
class AudioInfo:
    """One audio stream of the source (index is the stream's index in the container)."""

    index: int
    codec: str
    sample_rate: int
    channels: int
    language: Optional[str] = None


@dataclass
class VideoInfo:
    """What the pipeline needs to know about an input video or frame folder.

    Attributes:
        pts: sorted presentation timestamps (ints in ``time_base``) of every frame, one per frame.
        keyframes: True where the frame table entry is a keyframe (seek targets).
        rotation: display rotation in degrees counter-clockwise (0, 90, 180, 270).
        colour: AVColor* tags of the first frame (``color_range``, ``colorspace``,
            ``color_primaries``, ``color_trc``).
        files: for a frame folder, the image files in frame order (else empty).
    """

    path: Path
    width: int
    height: int
    time_base: Fraction
    rate: Fraction
    pts: np.ndarray
    keyframes: np.ndarray
    pix_fmt: str = "yuv420p"
    codec: str = ""
    rotation: int = 0
    sar: Optional[Fraction] = None
    colour: Dict[str, int] = field(default_factory=dict)
    audio: List[AudioInfo] = field(default_factory=list)
    files: List[Path] = field(default_factory=list)
    seekable: bool = True

    @property
    def num_frames(self) -> int:
        return int(len(self.pts))

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the end of the last (last frame lasts 1/rate)."""
        if not len(self.pts):
            return 0.0
        return float((int(self.pts[-1]) - int(self.pts[0])) * self.time_base + 1 / self.rate)


@dataclass
class DecodedFrame:
    """One decoded frame: upright RGB for the restorer plus the original frame for pass-through."""

    pts: int
    image: np.ndarray
    frame: Optional[av.VideoFrame] = None


def _av_open(path) -> "av.container.InputContainer":
    """Open a file for reading, tolerant of undecodable metadata tags.

    PyAV < 19 needs ``metadata_errors="ignore"`` for that; PyAV 19 dropped the argument.
    """
    try:
        return av.open(str(path), metadata_errors="ignore")
    except TypeError:
        return av.open(str(path))


def _open_input(path: Path):
    try:
        return _av_open(path)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path} is not a readable video ({type(exc).__name__}: "
                        f"{getattr(exc, 'strerror', None) or exc}); check that the file is "
                        f"complete and in a format FFmpeg decodes.") from None


def _probe_folder(path: Path, fps: Fraction) -> VideoInfo:
    from gfpgan.utils import list_images, read_image  # light helpers, imported lazily
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
    """Check an input and build its frame table without decoding every frame.

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
    with _open_input(path) as c:
        if not c.streams.video:
            raise UserError(f"{path} has no video stream; give a file that contains video.")
        vs = c.streams.video[0]
        tb = vs.time_base or Fraction(1, 90000)
        pts, keys, missing = [], [], 0
        try:
            for p in c.demux(vs):
                if p.size == 0:
                    continue
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
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate or Fraction(25)
    info = VideoInfo(path=path, width=0, height=0, time_base=Fraction(tb), rate=Fraction(rate),
                     pts=np.array([], np.int64), keyframes=np.array([], bool), audio=audio,
                     codec=vs.codec_context.name)
    first = None
    if missing and not pts or missing > len(pts):
        # Timestamp-less streams (raw elementary streams, some AVI): number the frames by
        # decoding once; they cannot be seeked, so segments decode from the start.
        info.seekable = False
        info.time_base = 1 / info.rate
        n = 0
        for d in _decode(info, None):
            first = first or d
            n += 1
        info.pts = np.arange(n, dtype=np.int64)
        info.keyframes = np.zeros(n, bool)
    else:
        order = np.argsort(np.array(pts, np.int64), kind="stable")
        info.pts = np.array(pts, np.int64)[order]
        info.keyframes = np.array(keys, bool)[order]
    for d in _decode(info, None):
        first = d
        break
    if first is None:
        raise UserError(f"{path} contains no decodable video frame; the file is damaged or "
                        f"truncated.")
    f = first.frame
    info.rotation = int(round(f.rotation or 0)) % 360
    info.width, info.height = f.width, f.height
    info.pix_fmt = f.format.name
    info.colour = {k: int(getattr(f, k)) for k in
                   ("color_range", "colorspace", "color_primaries", "color_trc")}
    with _open_input(path) as c:
        sar = c.streams.video[0].sample_aspect_ratio
        info.sar = Fraction(sar) if sar else None
    return info


def _to_rgb(f: av.VideoFrame) -> np.ndarray:
    """Decoded frame -> RGB uint8 with the frame's own colour matrix and range."""
    matrix = _SWS_MATRIX.get(int(f.colorspace), 5)
    rng = 2 if int(f.color_range) == 2 or f.format.name.startswith("yuvj") else 1
    if f.format.name in ("rgb24",):
        return f.to_ndarray()
    return f.to_ndarray(format="rgb24", src_colorspace=matrix, src_color_range=rng)


def _decode(info: VideoInfo, seek_pts: Optional[int], counter: Optional[list] = None
            ) -> Iterator[DecodedFrame]:
    """Decode frames from the keyframe at or before ``seek_pts`` (None: from the start)."""
    k = (info.rotation // 90) % 4
    if info.files:
        from gfpgan.utils import read_image
        start = 0 if seek_pts is None else int(seek_pts)
        for i in range(start, len(info.files)):
            img = read_image(info.files[i])
            if img.shape[:2] != (info.height, info.width):
                raise UserError(f"the frame {info.files[i]} is {img.shape[1]}x{img.shape[0]}, "
                                f"not {info.width}x{info.height} like the first frame; all frames "
                                f"of a folder must have the same size.")
            yield DecodedFrame(i, img, None)
        return
    with _open_input(info.path) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        if seek_pts is not None and info.seekable:
            c.seek(int(seek_pts), stream=vs, backward=True, any_frame=False)
        synth = 0
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
                pts = f.pts if (f.pts is not None and info.seekable) else synth
                synth += 1
                img = _to_rgb(f)
                if k:
                    img = np.ascontiguousarray(np.rot90(img, k))
                yield DecodedFrame(int(pts), img, f)


def iter_frames(info: VideoInfo, start_pts: int, stop_pts: Optional[int],
                counter: Optional[list] = None) -> Iterator[DecodedFrame]:
    """Decode the frames with ``start_pts <= pts < stop_pts`` in display order.

    Seeks to a keyframe before ``start_pts``; when the demuxer lands after it (open GOPs, coarse
    indexes) it retries from further back, finally from the start, so the range is frame-exact.

    Args:
        info: from :func:`probe_video`.
        start_pts, stop_pts: timestamp range in ``info.time_base`` (stop None: to the end).
        counter: a one-item list incremented for each packet that fails to decode.
    Yields:
        :class:`DecodedFrame` with ``image`` upright RGB uint8 (H, W, 3).
    """
    first_pts = int(info.pts[0]) if len(info.pts) else 0
    span = int(max(1, round(2 / info.time_base)))  # back off 2 s, 8 s, 32 s... then the start
    targets = [start_pts] if start_pts > first_pts else []
    targets += [start_pts - span * 4 ** i for i in range(4) if start_pts - span * 4 ** i > first_pts]
    targets.append(None)
    if not info.seekable or info.files:
        targets = [None] if not info.files else [start_pts]
    for target in targets:
        started = False
        for d in _decode(info, target, counter):
            if not started:
                started = True
                if d.pts > start_pts and target is not None:
                    break  # landed after the start: retry from further back
            if d.pts < start_pts:
                continue
            if stop_pts is not None and d.pts >= stop_pts:
                return
            yield d
        else:
            return
    return


def encoder_options(codec: str, crf: Optional[float], preset: Optional[str],
                    extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Codec private options for the quality knobs the CLI exposes, then ``extra`` (any option
    of the encoder, e.g. ``{"x264-params": "mbtree=0"}``) on top."""
    opts = {}
    if crf is not None and codec in _CRF_CODECS:
        opts["crf"] = f"{crf:g}"
        if codec == "libvpx-vp9":
            opts["b"] = "0"
    if preset and codec in _PRESET_CODECS:
        opts["preset"] = str(preset)
    opts.update({str(k): str(v) for k, v in (extra or {}).items()})
    return opts


# What libx264 / libx265 log, and then ignore, for a bad key or value inside x264-params /
# x265-params (FFmpeg only warns).
_REJECTED_PARAM = ("Error parsing option", "Unknown option", "Invalid value for")


def _open_encoder(ctx) -> List[str]:
    """Open ``ctx``; returns the encoder's warnings about parameters it ignored (e.g. a misspelt
    key in ``x264-params``), which FFmpeg logs and would otherwise let pass."""
    level = av.logging.get_level()
    av.logging.set_level(av.logging.WARNING)  # PyAV hands on no FFmpeg log unless a level is set
    try:
        with av.logging.Capture() as logs:
            ctx.open()
    finally:
        av.logging.set_level(level)
    return [msg.strip().rstrip(".") for lvl, _, msg in logs
            if lvl <= av.logging.WARNING and msg.startswith(_REJECTED_PARAM)]


class SegmentEncoder:
    """Encode one segment of frames into a ``.mov`` file, timestamps rebased to the first frame.

    Args:
        path: the segment file to write.
        codec: an encoder PyAV offers (``libx264``, ``libx265``, ``mpeg4``, ``png``...).
        width, height: size of the upright (displayed) frames given to :meth:`write`.
        time_base: the source's time base; frame pts are given in it.
        rate: nominal rate for rate control (never used to time frames).
        pix_fmt: encoder pixel format.
        options: codec options (see :func:`encoder_options`).
        colour: AVColor* tags to write.
        sar: sample aspect ratio to keep.
        threads: encoder threads (0: the encoder's choice).
        rotation: the source's display rotation: upright images are turned back to the stored
            orientation (the joined file carries the rotation tag), decoded frames already are.
    """

    def __init__(self, path, codec: str, width: int, height: int, time_base: Fraction,
                 rate: Fraction, pix_fmt: str, options: Optional[Dict[str, str]] = None,
                 colour: Optional[Dict[str, int]] = None, sar: Optional[Fraction] = None,
                 threads: int = 0, rotation: int = 0):
        self.path = Path(path)
        self._turns = (rotation // 90) % 4
        if self._turns % 2:
            width, height = height, width
        self.offset: Optional[int] = None
        self.frames = 0
        self.pix_fmt = pix_fmt
        self.colour = dict(colour or {})
        self.container = av.open(str(self.path), "w", format="mov")
        try:
            s = self.container.add_stream(codec, rate=rate, options=dict(options or {}))
        except (ValueError, av.error.FFmpegError) as exc:
            self.container.close()
            raise UserError(f"the encoder {codec!r} cannot write this video ({exc}); pick "
                            f"another --codec such as libx264.") from None
        s.width, s.height, s.pix_fmt = width, height, pix_fmt
        s.time_base = time_base
        s.codec_context.time_base = time_base
        if threads:
            s.codec_context.thread_count = threads
        if sar:
            s.codec_context.sample_aspect_ratio = sar
        for key in ("color_range", "colorspace", "color_primaries", "color_trc"):
            if key in self.colour:
                setattr(s.codec_context, key, self.colour[key])
        try:  # open now: settings it refuses, or options it does not know, fail before any frame
            rejected = _open_encoder(s.codec_context)
            unknown = sorted(s.codec_context.options or {})
        except (ValueError, av.error.FFmpegError) as exc:
            self.container.close()
            raise UserError(f"the encoder {codec!r} refuses these settings ({exc}); check --codec, "
                            f"--crf, --preset, --pix-fmt and --codec-option.") from None
        if unknown or rejected:
            self.container.close()
            if unknown:
                raise UserError(f"the encoder {codec!r} has no option {', '.join(unknown)}; check "
                                f"--codec-option (ffmpeg -h encoder={codec} lists them).")
            raise UserError(f"the encoder {codec!r} would ignore parameters it cannot parse "
                            f"({'; '.join(rejected)}); fix the KEY=VALUE pairs inside that "
                            f"--codec-option.")
        self.stream = s
        self._matrix = _SWS_MATRIX.get(self.colour.get("colorspace", 2), 5)
        self._range = 2 if self.colour.get("color_range") == 2 or pix_fmt.startswith("yuvj") else 1

    def write(self, pts: int, image: Optional[np.ndarray] = None,
              frame: Optional[av.VideoFrame] = None) -> None:
        """Encode one frame: an RGB array (H, W, 3) uint8, or an original decoded frame."""
        if self.offset is None:
            self.offset = int(pts)
        if frame is None:
            if self._turns:
                image = np.rot90(image, -self._turns)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if self.pix_fmt != "rgb24":
                frame = frame.reformat(format=self.pix_fmt, dst_colorspace=self._matrix,
                                       dst_color_range=self._range)
        elif frame.format.name != self.pix_fmt:
            frame = frame.reformat(format=self.pix_fmt)
        for key in ("color_range", "colorspace", "color_primaries", "color_trc"):
            if key in self.colour:
                setattr(frame, key, self.colour[key])
        frame.pts = int(pts) - self.offset
        frame.time_base = self.stream.codec_context.time_base
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        try:
            self.container.mux(self.stream.encode(None))
        finally:
            self.container.close()

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - already failing; the file is deleted by the caller
            pass


def _video_packets(segments: Sequence[tuple], out_stream) -> Iterator[tuple]:
    """(time in s, packet) for every packet of the segment files, at absolute timestamps."""
    for path, offset, src_tb in segments:
        with av.open(str(path), format="mov") as c:
            st = c.streams.video[0]
            shift = Fraction(offset) * Fraction(src_tb) / st.time_base
            if shift.denominator != 1:
                shift = Fraction(round(shift))
            for p in c.demux(st):
                if p.size == 0:
                    continue
                p.pts = p.pts + int(shift)
                p.dts = (p.dts if p.dts is not None else p.pts - int(shift)) + int(shift)
                p.stream = out_stream
                yield float(p.dts * st.time_base), 0, p


def _audio_packets(src: Path, a_index: int, out_stream, reencode: bool) -> Iterator[tuple]:
    """(time in s, packet) of one source audio stream, copied or re-encoded."""
    with _av_open(src) as c:
        st = c.streams[a_index]
        if not reencode:
            try:
                for p in c.demux(st):
                    if p.size == 0 or p.dts is None:
                        continue
                    p.stream = out_stream
                    yield float(p.dts * st.time_base), 1, p
            except av.error.FFmpegError:
                return
            return
        ctx = out_stream.codec_context
        res = av.AudioResampler(format=ctx.format.name, layout=ctx.layout.name,
                                rate=ctx.sample_rate, frame_size=ctx.frame_size or None)
        next_pts = None
        try:
            frames = c.decode(st)
            for fr in frames:
                if next_pts is None:
                    t0 = fr.pts * st.time_base if fr.pts is not None else 0
                    next_pts = int(round(t0 * ctx.sample_rate))
                for r in res.resample(fr):
                    r.pts, r.time_base = next_pts, Fraction(1, ctx.sample_rate)
                    next_pts += r.samples
                    for p in out_stream.encode(r):
                        yield float(p.dts * p.time_base), 1, p
        except av.error.FFmpegError:
            pass
        for r in res.resample(None):
            r.pts, r.time_base = next_pts or 0, Fraction(1, ctx.sample_rate)
            next_pts = (next_pts or 0) + r.samples
            for p in out_stream.encode(r):
                yield float(p.dts * p.time_base), 1, p
        for p in out_stream.encode(None):
            yield float(p.dts * p.time_base), 1, p


def join_segments(segments: Sequence[tuple], dest, info: VideoInfo,
                  audio_source: Optional[Path] = None, rotation: Optional[int] = None) -> None:
    """Remux segment files and the source's audio streams into one output file (no re-encode).

    Args:
        segments: ``(segment file, pts offset, time base of the offset)`` in order.
        dest: the file to write (its extension picks the container, see ``OUTPUT_FORMATS``).
        info: the source's :class:`VideoInfo` (time base, rotation, aspect ratio, audio).
        audio_source: the file whose audio streams are carried over (None: no audio).
        rotation: display rotation to tag (default ``info.rotation``).
    """
    dest = Path(dest)
    fmt = OUTPUT_FORMATS.get(dest.suffix.lower())
    if fmt is None:
        raise UserError(f"cannot write {dest}: the extension must be one of "
                        f"{', '.join(sorted(OUTPUT_FORMATS))}.")
    opts = {}
    if fmt in ("mp4", "mov"):
        # Edit lists are written in the movie timescale: make it the track's so a non-zero
        # start time survives exactly (the default 1/1000 rounds it to a millisecond).
        opts["movie_timescale"] = str(min(info.time_base.denominator, 2 ** 31 - 1))
    rot = info.rotation if rotation is None else rotation
    with av.open(str(segments[0][0]), format="mov") as first, \
            av.open(str(dest), "w", format=fmt, options=opts) as out:
        template = first.streams.video[0]
        vout = out.add_stream_from_template(template)
        vout.time_base = info.time_base
        if rot:
            vout.set_display_rotation(rot)
        if info.sar:
            vout.sample_aspect_ratio = info.sar
        sources = [_video_packets(segments, vout)]
        if audio_source is not None:
            for a in info.audio:
                with _av_open(audio_source) as c:
                    src = c.streams[a.index]
                    reencode = fmt != "matroska" and a.codec not in _MP4_AUDIO
                    if reencode:
                        aout = out.add_stream("aac", rate=a.sample_rate or 48000,
                                              layout=src.codec_context.layout.name)
                    else:
                        aout = out.add_stream_from_template(src)
                        aout.time_base = src.time_base
                if a.language:
                    aout.metadata["language"] = a.language
                sources.append(_audio_packets(Path(audio_source), a.index, aout, reencode))
        for _, _, p in heapq.merge(*sources, key=lambda x: (x[0], x[1])):
            out.mux(p)


# Audio codecs the mp4/mov muxers take as a copy; anything else is re-encoded to AAC.
_MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}


def default_pix_fmt(codec: str, source_pix_fmt: str, width: int, height: int) -> str:
    """The source's pixel format when the encoder takes it, else yuv420p (yuv444p at odd sizes)."""
    try:
        supported = [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]
    except Exception:  # noqa: BLE001 - unknown codec: reported when the encoder opens
        supported = []
    pick = source_pix_fmt if source_pix_fmt in supported else (
        "yuv420p" if "yuv420p" in supported or not supported else supported[0])
    if (width % 2 or height % 2) and pick in _SUBSAMPLED:
        pick = "yuv444p" if not supported or "yuv444p" in supported else pick
    return pick


def file_size(path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
