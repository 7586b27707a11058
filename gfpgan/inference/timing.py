"""Timing the stages of a restorer: the :class:`StageTimer` protocol and a timer that does nothing.

The face stages (detect, generator, paste ...) and the video job's threads report every stage they
run to the timer they were given; ``gfpgan.tools.bench_video`` passes one that adds up the time.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager, Protocol

__all__ = ["StageTimer", "NO_TIMER"]

class StageTimer(Protocol):
    """Observes the pipeline's stages (benchmarks): ``with timer.stage("generator"): ...``.

    Stages: detect, track, align, generator, paste (face pipeline) and encode (video job, once
    per written frame). Stages run in several threads at once, so an implementation must be
    thread-safe.
    """

    def stage(self, name: str) -> ContextManager[None]:
        """A context manager around one run of stage ``name``."""


class _NoTimer(StageTimer):
    def stage(self, name: str) -> ContextManager[None]:
        return contextlib.nullcontext()


NO_TIMER: StageTimer = _NoTimer()
