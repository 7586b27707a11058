"""What a probe learns about a source video: its frame table, streams and display tags.

:class:`VideoInfo` is filled by :func:`gfpgan.inference.video.probe.probe_video` and read by
the decoder, the encoder and the joiner; this module holds only the records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from gfpgan.inference.video.timestamps import RepairedStamps

__all__ = ["AudioInfo", "VideoInfo"]

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
        stamps: the repaired stamps where the file's own were broken (None: the packets').
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
    stamps: Optional[RepairedStamps] = None

    @property
    def num_frames(self) -> int:
        return int(len(self.pts))

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the end of the last (last frame lasts 1/rate)."""
        if not len(self.pts):
            return 0.0
        return float((int(self.pts[-1]) - int(self.pts[0])) * self.time_base + 1 / self.rate)
