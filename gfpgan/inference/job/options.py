"""The video job's options: encoding and scheduling, one default each, and their command-line form.

:class:`VideoJobOptions` holds every setting of a job besides the restorer itself;
:func:`add_job_arguments` adds its command-line options (defaults read from the dataclass, so
none is written twice) and :meth:`VideoJobOptions.from_args` reads them back. Light: no PyAV.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Dict, Optional

from gfpgan.errors import UserError

__all__ = ["VideoJobOptions", "add_job_arguments"]


@dataclass
class VideoJobOptions:
    """Encoding and scheduling options of a job (everything except the restorer itself).

    Attributes:
        codec, crf, preset, pix_fmt: the video encoder (pix_fmt None: the source's when the
            encoder takes it, yuv444p at odd sizes, else yuv420p).
        codec_options: further encoder options, e.g. ``{"x264-params": "mbtree=0"}``.
        segment_frames: frames per segment (the unit of resume and of torchrun sharding).
        warmup: frames before a segment restored for context but not written (None: what the
            processor's ``context()`` asks for; the frames after a segment are always its).
        queue_size: capacity of each inter-stage queue (frames).
        resume: keep the completed segments of an interrupted job with the same settings.
        side_by_side: also write an input|output comparison video there.
        progress: show a tqdm bar (frames, frames/s, ETA).
        folder_fps: frame rate of a folder-of-frames input.
    """

    codec: str = "libx264"
    crf: Optional[float] = 18
    preset: Optional[str] = "medium"
    pix_fmt: Optional[str] = None
    codec_options: Dict[str, str] = field(default_factory=dict)
    segment_frames: int = 240
    warmup: Optional[int] = None
    queue_size: int = 8
    resume: bool = False
    side_by_side: Optional[str] = None
    progress: bool = True
    folder_fps: Fraction = Fraction(25)
    encoder_threads: int = 0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "VideoJobOptions":
        """The options :func:`add_job_arguments` parsed.

        Raises:
            UserError: a bad ``--codec-option``, ``--segment-frames`` or ``--warmup``.
        """
        if args.segment_frames < 1 or (args.warmup or 0) < 0:
            raise UserError("--segment-frames must be >= 1 and --warmup >= 0.")
        codec_options = {}
        for item in args.codec_option:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UserError(f"--codec-option {item!r} is not KEY=VALUE (e.g. x264-params=mbtree=0).")
            codec_options[key] = value
        return cls(codec=args.codec, crf=args.crf, preset=args.preset, pix_fmt=args.pix_fmt,
                   codec_options=codec_options, segment_frames=args.segment_frames,
                   warmup=args.warmup, resume=args.resume, side_by_side=args.side_by_side,
                   progress=not args.no_progress, folder_fps=args.fps)


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the encoding and job options (defaults: :class:`VideoJobOptions`'s) to ``parser``."""
    d = VideoJobOptions()
    e = parser.add_argument_group("encoding and job")
    e.add_argument("--codec", default=d.codec, help="any video encoder PyAV offers")
    e.add_argument("--crf", type=float, default=d.crf, help="quality (x264/x265/vp9/av1)")
    e.add_argument("--preset", default=d.preset, help="x264/x265 speed preset")
    e.add_argument("--pix-fmt", default=d.pix_fmt, help="encoder pixel format (default: source's)")
    e.add_argument("--codec-option", action="append", default=[], metavar="KEY=VALUE",
                   help="any further encoder option, repeatable (e.g. x264-params=mbtree=0 for "
                        "run-to-run identical x264 output)")
    e.add_argument("--segment-frames", type=int, default=d.segment_frames,
                   help="frames per segment: the unit of --resume and torchrun sharing")
    e.add_argument("--warmup", type=int, default=d.warmup,
                   help="frames before each segment restored for context, not written (default: "
                        "what the restorer needs, --detect-every + 8 or more, which makes the "
                        "output independent of the split)")
    e.add_argument("--fps", type=Fraction, default=d.folder_fps,
                   help="frame rate of a folder-of-frames input (e.g. 30000/1001)")
    e.add_argument("--resume", action="store_true", help="continue an interrupted job")
    e.add_argument("--side-by-side", default=d.side_by_side, metavar="PATH",
                   help="also write an input|restored comparison video")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
