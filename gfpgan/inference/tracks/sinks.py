"""What the video pipeline tells the world about the faces it restores: records and sinks.

:class:`~gfpgan.inference.tracks.video_restorer.VideoFaceRestorer` emits one :class:`FaceRecord` per
restored face to each :class:`FaceSink` it was given, and tells them when tracks end (so a sink
can bound its memory). The face database (:class:`~gfpgan.inference.tracks.face_database.FaceCollector`,
``--collect``), the crop saver (:class:`FaceSaver`, ``--save-faces``) and an in-memory list
(:class:`FaceList`, for callers that want landmarks or crops) are sinks; so is anything that
follows the two-method protocol below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, List, Protocol

import numpy as np

__all__ = ["FaceRecord", "FaceSink", "FaceSaver", "FaceList", "safe_name"]


def safe_name(name: str) -> str:
    """``name`` reduced to ASCII letters, digits and ``_.-`` (file names, LMDB keys)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "video"


@dataclass(frozen=True)
class FaceRecord:
    """One restored face of one frame.

    Attributes:
        video: name of the video (the input's stem; "video" for a bare frame stream).
        frame: frame number in the whole video.
        track: track id, unique within the video (also across segments).
        box: (4,) detector box in frame pixels.
        score: detector confidence.
        landmarks: (5, 2) raw landmarks in frame pixels.
        smoothed: (5, 2) landmarks used for alignment (after temporal smoothing).
        affine: (2, 3) frame -> crop matrix.
        crop: (S, S, 3) uint8 RGB aligned input crop.
        restored: (S, S, 3) uint8 RGB restored crop.
        written: whether this frame is part of the output (False for the context frames that
            a segment restores before and after its own).
    """

    video: str
    frame: int
    track: int
    box: np.ndarray
    score: float
    landmarks: np.ndarray
    smoothed: np.ndarray
    affine: np.ndarray
    crop: np.ndarray
    restored: np.ndarray
    written: bool


class FaceSink(Protocol):
    """Receives the pipeline's face records."""

    def add(self, record: FaceRecord) -> None:
        """One restored face (called in frame order within a track)."""

    def end_tracks(self, video: str, live: Collection[int]) -> None:
        """Every track of ``video`` not in ``live`` has ended (no more records will come)."""


class FaceSaver(FaceSink):
    """``--save-faces DIR``: each written restored crop as ``DIR/<video>/f<frame>_t<track>.png``."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def add(self, record: FaceRecord) -> None:
        if record.written:
            from gfpgan.images import write_image_atomic

            write_image_atomic(self.folder / safe_name(record.video)
                               / f"f{record.frame:06d}_t{record.track:03d}.png", record.restored)

    def end_tracks(self, video: str, live: Collection[int]) -> None:
        pass


class FaceList(FaceSink):
    """Keeps every record in :attr:`records` (landmark studies, tests; memory grows)."""

    def __init__(self):
        self.records: List[FaceRecord] = []

    def add(self, record: FaceRecord) -> None:
        self.records.append(record)

    def end_tracks(self, video: str, live: Collection[int]) -> None:
        pass
