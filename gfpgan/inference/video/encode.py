"""Encoding one segment of restored frames with PyAV.

:class:`SegmentEncoder` writes one segment to a ``.mov`` file with timestamps rebased to zero
(mp4/mov edit lists are only millisecond-exact at a non-zero start); every segment starts with
a fresh encoder, hence an IDR frame. :func:`encoder_options` and :func:`default_pix_fmt` turn the
user's codec, quality and pixel format into what the encoder accepts.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Dict, List, Optional

import av
import numpy as np

from gfpgan.errors import UserError
from gfpgan.inference.video.decode import SWS_MATRIX

__all__ = ["SegmentEncoder", "encoder_options", "default_pix_fmt"]

_CRF_CODECS = {"libx264", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1"}


_PRESET_CODECS = {"libx264", "libx265", "libsvtav1"}


_SUBSAMPLED = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "nv12", "yuv420p10le")


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
        self._matrix = SWS_MATRIX.get(self.colour.get("colorspace", 2), 5)
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
