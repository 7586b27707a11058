"""The faces of a video that can teach the model the person: personalization targets.

:class:`TargetCollector` is a :class:`~gfpgan.inference.tracks.sinks.FaceSink`. A face qualifies
as a target only when it cannot be worse than what is to be restored: it spans at least as many
source pixels as the model's crop (:func:`~gfpgan.inference.faces.evidence.source_scale` >= 1, so
the crop was made by shrinking, never by upsampling), its detector is confident and it faces the
camera. Qualifying faces are ranked by sharpness x frontal x score, and the best ``top_n`` are kept,
at most one per ``spacing`` frames of a track (consecutive frames are near duplicates). Every other
face is a face to restore; its source scale is kept so that tuning can degrade the targets the
way the video degrades those faces (:func:`gfpgan.personalize.matched_degradation`).
"""

from __future__ import annotations

import heapq
from typing import Collection, Dict, List, NamedTuple, Tuple

import numpy as np

from gfpgan.inference.faces.evidence import frontal, sharpness, source_scale
from gfpgan.inference.tracks.sinks import FaceRecord, FaceSink

__all__ = ["Evidence", "evidence_of", "TargetCollector"]


class Evidence(NamedTuple):
    """What a face shows at its source, and whether it can serve as a training target."""

    scale: float  # source pixels per crop pixel (>= 1: the crop shrank it)
    sharpness: float  # variance of the Laplacian of the crop
    frontal: float  # in [0, 1]
    score: float  # detector confidence
    qualifies: bool  # a target: large enough, confident and frontal enough
    rank: float  # sharpness x frontal x score


def evidence_of(record: FaceRecord, min_scale: float = 1.0, min_score: float = 0.9,
                min_frontal: float = 0.5) -> Evidence:
    """The :class:`Evidence` of one face record (thresholds as :class:`TargetCollector`'s)."""
    scale, front, sharp = source_scale(record.affine), frontal(record.smoothed), sharpness(record.crop)
    ok = scale >= min_scale and record.score >= min_score and front >= min_frontal
    return Evidence(scale, sharp, front, float(record.score), ok, sharp * front * float(record.score))


class TargetCollector(FaceSink):
    """Keep the best personalization targets of the faces a video shows (see the module docstring).

    Args:
        top_n: targets kept.
        min_scale: least source pixels per crop pixel of a target.
        min_score: least detector confidence of a target.
        min_frontal: least :func:`~gfpgan.inference.faces.evidence.frontal` of a target.
        spacing: frames between two targets of one track.
    """

    def __init__(self, top_n: int = 16, min_scale: float = 1.0, min_score: float = 0.9,
                 min_frontal: float = 0.5, spacing: int = 4):
        self.top_n, self.min_scale, self.min_score = top_n, min_scale, min_score
        self.min_frontal, self.spacing = min_frontal, spacing
        self._heap: List[Tuple[float, int, int, np.ndarray, Dict]] = []
        self._last: Dict[Tuple[str, int], int] = {}
        self.restore_scales: List[float] = []  # source scales of the faces that are not targets

    def add(self, record: FaceRecord) -> None:
        if not record.written:
            return
        ev = evidence_of(record, self.min_scale, self.min_score, self.min_frontal)
        if not ev.qualifies:
            self.restore_scales.append(ev.scale)
            return
        key = (record.video, record.track)
        if record.frame - self._last.get(key, -self.spacing) < self.spacing:
            return
        self._last[key] = record.frame
        meta = dict(ev._asdict(), video=record.video, frame=record.frame, track=record.track)
        item = (ev.rank, record.frame, record.track, record.crop.copy(), meta)
        if len(self._heap) < self.top_n:
            heapq.heappush(self._heap, item)
        elif ev.rank > self._heap[0][0]:
            heapq.heapreplace(self._heap, item)

    def end_tracks(self, video: str, live: Collection[int]) -> None:
        pass

    @property
    def targets(self) -> List[np.ndarray]:
        """The kept targets, best first: aligned RGB uint8 crops at the model's size."""
        return [item[3] for item in sorted(self._heap, key=lambda i: (-i[0], i[1], i[2]))]

    @property
    def metadata(self) -> List[Dict]:
        """The evidence of each kept target, in :attr:`targets`' order."""
        return [item[4] for item in sorted(self._heap, key=lambda i: (-i[0], i[1], i[2]))]
