"""The contract between the video job and what restores its frames.

:func:`gfpgan.inference.job.video_job.run_videos` cuts each video into segments and hands every
segment to a :class:`SegmentProcessor`, together with the frames around it that the processor
asked for (:meth:`SegmentProcessor.context`). The processor starts each segment from a clean
state, so a segment's output does not depend on which process ran which segment before it; it
says which settings change its pixels (:meth:`SegmentProcessor.fingerprint`), so that ``--resume``
never splices segments restored two different ways.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Protocol, Tuple

import numpy as np

__all__ = ["SegmentWindow", "ProcessedFrame", "images", "SegmentProcessor", "IdentityProcessor"]


@dataclass(frozen=True)
class SegmentWindow:
    """Which frames of which video a :meth:`SegmentProcessor.process` call sees and writes.

    Attributes:
        video: the video's name (its input's stem).
        first: frame number (in the whole video) of the first frame fed.
        start, stop: frames ``start <= i < stop`` are written; the others fed are context.
    """

    video: str = "video"
    first: int = 0
    start: int = 0
    stop: int = sys.maxsize

    def written(self, index: int) -> bool:
        """Whether frame ``index`` (in the whole video) is part of the output."""
        return self.start <= index < self.stop


class ProcessedFrame(NamedTuple):
    """One output frame: the image, and whether it differs from the input frame.

    An unchanged frame is ``ProcessedFrame(input_frame, False)``: the job re-encodes it from its
    original decoded planes, without a colour conversion.
    """

    image: np.ndarray
    changed: bool


def images(frames: Iterable[ProcessedFrame]) -> List[np.ndarray]:
    """The images of a :meth:`SegmentProcessor.process` stream, as a list."""
    return [f.image for f in frames]


class SegmentProcessor(Protocol):
    """What :func:`~gfpgan.inference.job.video_job.run_videos` drives, once per segment."""

    def context(self) -> Tuple[int, int]:
        """``(warmup, tail)``: frames needed before and after a segment for the same result as
        one pass over the whole video."""

    def process(self, frames: Iterable[np.ndarray],
                window: SegmentWindow = SegmentWindow()) -> Iterator[ProcessedFrame]:
        """Restore upright RGB uint8 (H, W, 3) frames, one output per input, in order, starting
        from a clean state."""

    def fingerprint(self) -> Dict[str, Any]:
        """Every setting that changes the output pixels (with the sha256 of each weight file);
        a resumed job must have the same."""


class IdentityProcessor(SegmentProcessor):
    """Returns every frame unchanged (tests, I/O benchmarks)."""

    def context(self) -> Tuple[int, int]:
        return 0, 0

    def process(self, frames, window=SegmentWindow()):
        for f in frames:
            yield ProcessedFrame(f, False)

    def fingerprint(self) -> Dict[str, Any]:
        return {"processor": "identity"}
