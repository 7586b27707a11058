"""One configuration of the face restorer, shared by the image and the video command lines.

Every setting has exactly one default, written once in :data:`FACE_OPTIONS`: the dataclasses
below take their defaults from it, :func:`add_face_arguments` builds the one argument group both
``gfpgan.infer_image`` and ``gfpgan.infer_video`` use, and :func:`markdown_table` prints the
README's table of those options (``python -m gfpgan.inference.settings`` prints it again after a
change). A config is frozen and validated once, when it is made; the video job hashes it into
its resume fingerprint.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, NamedTuple, Optional, Tuple

from gfpgan.cli import DEVICE_DEFAULT, DEVICE_HELP, device_name
from gfpgan.errors import UserError
from gfpgan.personal_file import GATE_DB
from gfpgan.precision import PRECISIONS

__all__ = ["DEFAULT_MODEL", "FACE_OPTIONS", "VIDEO_OPTIONS", "RestorerConfig", "VideoRestorerConfig",
           "add_face_arguments", "add_video_arguments", "batch_faces_for", "markdown_table"]

DEFAULT_MODEL = "GFPGANv1.4"  # the model card both commands restore with unless --model says otherwise
ONLY_CHOICES = ("all", "center", "largest")
DETECTORS = ("mtcnn", "retinaface")
BACKENDS = ("torch", "onnxruntime")


class Option(NamedTuple):
    """One command-line option: its config field, flag, default, type/choices and help."""

    field: str
    flag: str
    default: Any
    help: str
    type: Any = None
    choices: Optional[Tuple[str, ...]] = None
    metavar: Optional[str] = None


# The face options of both commands (besides --model, which names the network, not a setting).
FACE_OPTIONS = (
    Option("device", "--device", DEVICE_DEFAULT, DEVICE_HELP, device_name),
    Option("backend", "--backend", "torch", "network runtime", choices=BACKENDS),
    Option("precision", "--precision", "auto",
           "the network's arithmetic: auto = bf16 for the v1.2-v1.4 layout on a CPU that computes it "
           "natively (AVX512-BF16/AMX; ~3.5x faster), else fp32; fp32 = the reference's exact computation; "
           "fp16 for CUDA", choices=PRECISIONS),
    Option("strength", "--strength", 1.0, "0..1 blend of restored and input face", float),
    Option("only", "--only", "all", "which faces to restore", choices=ONLY_CHOICES),
    Option("min_face", "--min-face", 10.0, "skip faces whose box is smaller (px)", float),
    Option("detector", "--detector", "mtcnn", "face detector", choices=DETECTORS),
    Option("detector_weights", "--detector-weights", None,
           "RetinaFace weights (default: detection_Resnet50_Final from the weights cache)",
           metavar="FILE"),
    Option("parse_weights", "--parse-weights", None,
           "facexlib parsing_parsenet.pth for face-shaped paste masks (default: feathered square)",
           metavar="FILE"),
    Option("batch_faces", "--batch-faces", None,
           "faces per forward pass (default: 8 on CUDA; 1 on a CPU, fastest there and the least memory)",
           int),
    Option("upscale", "--upscale", 1.0, "scale of the whole output frame", float),
    Option("keep_detail", "--keep-detail", 35.0,
           "a face that loses less than this (PSNR, dB) through the model's crop keeps its own pixels, "
           "ramping to the model's output 3 dB either side (large sharp faces); 0: always the model's",
           float, metavar="DB"),
    Option("personal", "--personal", None,
           "a personal file (python -m gfpgan.personalize) tuned from --model on one person",
           metavar="FILE"),
    Option("personal_gate", "--personal-gate", GATE_DB,
           "with --personal, a face gets the personal output only as far as it explains the input better "
           "than the base's: full weight from this many dB of gain, none at or below 0 (another "
           "person's faces keep the base's); 0: every face gets the personal output", float, metavar="DB"),
)

# Video only: temporal stability (each can be turned off to compare) and detection schedule.
VIDEO_OPTIONS = (
    Option("detect_every", "--detect-every", 8,
           "full face detection every K frames, faces tracked in between (1: every frame)", int,
           metavar="K"),
    Option("stabilize", "--no-stabilize", True, "no tracking/landmark smoothing"),
    Option("mask_smoothing", "--no-mask-smoothing", True, "per-frame paste masks"),
    Option("fixed_noise", "--random-noise", True,
           "fresh StyleGAN2 noise per call (the reference's behaviour; flickers)"),
    Option("lookahead", "--lookahead", 2, "landmark smoother look-ahead (frames)", int),
    Option("temporal_reset", "--temporal-reset", 32,
           "with --temporal: every track's state restarts on frames 0, K, 2K... of the video (the "
           "same frames whatever the segment split)", int, metavar="K"),
    Option("gate_reset", "--gate-reset", 0.05,
           "with --temporal: restart a track's state where its gate (trust in the previous frame) "
           "falls below this (cuts, occlusions)", float),
)


def batch_faces_for(device) -> int:
    """``--batch-faces``' default on ``device``: 8 on CUDA (throughput), 1 on a CPU (a larger
    batch is no faster there, it takes the shared-weight path, and holds 512 px activations of
    every face at once: 7 GB at 8 in fp32)."""
    return 8 if str(device).startswith("cuda") else 1


def _defaults(options) -> Dict[str, Any]:
    return {o.field: o.default for o in options}


_FACE = _defaults(FACE_OPTIONS)
_VIDEO = _defaults(VIDEO_OPTIONS)


@dataclass(frozen=True)
class RestorerConfig:
    """Settings of the face pipeline (see :data:`FACE_OPTIONS` for each field's meaning)."""

    device: str = _FACE["device"]
    backend: str = _FACE["backend"]
    precision: str = _FACE["precision"]
    strength: float = _FACE["strength"]
    only: str = _FACE["only"]
    min_face: float = _FACE["min_face"]
    detector: str = _FACE["detector"]
    detector_weights: Optional[str] = _FACE["detector_weights"]
    parse_weights: Optional[str] = _FACE["parse_weights"]
    batch_faces: Optional[int] = _FACE["batch_faces"]
    upscale: float = _FACE["upscale"]
    keep_detail: float = _FACE["keep_detail"]
    personal: Optional[str] = _FACE["personal"]
    personal_gate: float = _FACE["personal_gate"]
    fixed_noise: bool = _VIDEO["fixed_noise"]

    def __post_init__(self):
        checks = (
            (self.backend in BACKENDS, f"--backend {self.backend!r} is not one of "
                                       f"{', '.join(BACKENDS)}."),
            (self.precision in PRECISIONS, f"--precision {self.precision!r} is not one of "
                                           f"{', '.join(PRECISIONS)}."),
            (0.0 <= self.strength <= 1.0, f"--strength {self.strength} is outside [0, 1]; use "
                                          f"a value between 0 and 1."),
            (self.only in ONLY_CHOICES, f"--only {self.only!r} is not one of "
                                        f"{', '.join(ONLY_CHOICES)}."),
            (self.min_face >= 0, f"--min-face {self.min_face} must be >= 0."),
            (self.detector in DETECTORS, f"unknown face detector {self.detector!r}; use "
                                         f"'mtcnn' or 'retinaface'."),
            (self.batch_faces is None or self.batch_faces >= 1,
             f"--batch-faces {self.batch_faces} must be >= 1."),
            (self.upscale > 0, f"--upscale {self.upscale} must be positive."),
            (self.keep_detail >= 0, f"--keep-detail {self.keep_detail} must be >= 0 (0: off)."),
            (self.personal_gate >= 0, f"--personal-gate {self.personal_gate} must be >= 0 (0: off)."),
        )
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    @classmethod
    def from_args(cls, args: argparse.Namespace):
        """The config of a parsed command line (fields this class has, nothing else)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in vars(args).items() if k in names})

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class VideoRestorerConfig(RestorerConfig):
    """The face pipeline's settings for video: :class:`RestorerConfig` plus temporal ones.

    Attributes (besides the face settings):
        detect_every, stabilize, mask_smoothing, lookahead, temporal_reset, gate_reset: see
            :data:`VIDEO_OPTIONS` (the last two apply with a temporal module only).
        past: frames of history of the landmark smoother.
        detect_batch_size: frames per detector call.
        overlap: detection in a thread ahead of the generator, paste-back on a pool behind it
            (the frames are the same either way).
        paste_workers: paste-back threads when overlapping.
    """

    detect_every: int = _VIDEO["detect_every"]
    stabilize: bool = _VIDEO["stabilize"]
    mask_smoothing: bool = _VIDEO["mask_smoothing"]
    lookahead: int = _VIDEO["lookahead"]
    temporal_reset: int = _VIDEO["temporal_reset"]
    gate_reset: float = _VIDEO["gate_reset"]
    past: int = 8
    detect_batch_size: int = 4
    overlap: bool = True
    paste_workers: int = 2

    def __post_init__(self):
        super().__post_init__()
        if self.detect_every < 1:
            raise UserError(f"--detect-every {self.detect_every} must be >= 1.")
        if self.lookahead < 0 or self.past < 0:
            raise UserError("--lookahead must be >= 0.")
        if self.temporal_reset < 1 or not 0.0 <= self.gate_reset <= 1.0:
            raise UserError(f"--temporal-reset {self.temporal_reset} must be >= 1 and --gate-reset "
                            f"{self.gate_reset} within [0, 1].")
        if self.detect_batch_size < 1 or self.paste_workers < 1:
            raise UserError("detect_batch_size and paste_workers must be >= 1.")


def _add(group, o: Option) -> None:
    if isinstance(o.default, bool):  # a switch that turns a default-on setting off
        group.add_argument(o.flag, dest=o.field, action="store_false", help=o.help)
    else:
        group.add_argument(o.flag, dest=o.field, default=o.default, type=o.type,
                           choices=o.choices, metavar=o.metavar, help=o.help)
    if o.field == "precision":  # the earlier spelling, kept for scripts: --half [fp16|bf16]
        group.add_argument("--half", dest="precision", nargs="?", const="fp16", choices=("fp16", "bf16"),
                           help=argparse.SUPPRESS)


def add_face_arguments(parser: argparse.ArgumentParser):
    """Add ``--model`` and the face options (one group, one default each) to ``parser``."""
    g = parser.add_argument_group("model and faces")
    g.add_argument("--model", default=DEFAULT_MODEL,
                   help="model card name (configs/, e.g. v1.4) or a .safetensors/.pth/.onnx file")
    for o in FACE_OPTIONS:
        _add(g, o)
    return g


def add_video_arguments(parser: argparse.ArgumentParser):
    """Add the video-only face options (detection schedule, temporal stability)."""
    g = parser.add_argument_group("temporal stability (each can be turned off to compare)")
    for o in VIDEO_OPTIONS:
        _add(g, o)
    return g


def markdown_table(options=FACE_OPTIONS + VIDEO_OPTIONS) -> str:
    """The README's table of the face options: flag, default, meaning."""
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for o in options:
        if isinstance(o.default, bool):
            default = "off"
        elif o.choices:
            default = f"{o.default or 'off'} ({'/'.join(o.choices)})"
        elif o.default is None:
            default = "auto" if o.field == "batch_faces" else "none"
        else:
            default = f"{o.default:g}" if isinstance(o.default, float) else str(o.default)
        rows.append(f"| `{o.flag}` | {default} | {o.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
