"""Face tracks across video frames and per-track landmark smoothing (stabilised alignment).

Per-frame detection jitters by a pixel or so even on a still face; aligned with those raw
landmarks, the crop shakes, the network sees a different input every frame and the pasted face
wobbles (facexlib #48, GFPGAN #302). KEEP and DicFace smooth one face's landmarks off-line with a
Gaussian over the whole clip. Here it is streaming and multi-face:

* :class:`IoUTracker` assigns a track id to every detection, matching boxes to the live tracks by
  IoU plus a landmark-distance term (Hungarian assignment), so several faces keep their identity.
* :class:`LandmarkSmoother` keeps each track's recent raw landmarks and estimates the landmarks of
  frame t by a Gaussian-weighted local *linear* fit over frames [t - past, t + lookahead]. A linear
  fit does not lag behind a moving face the way a one-sided average does, a short look-ahead makes
  the estimate nearly centred, and frames where the face was missed (NaN gaps) simply do not vote.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Dict, List, Optional, Tuple

import numpy as np

from gfpgan.inference.faces.detection import box_iou

__all__ = ["IoUTracker", "LandmarkSmoother", "landmark_jitter"]


class IoUTracker:
    """Greedy-free (Hungarian) IoU + landmark tracker.

    Args:
        iou_threshold: minimum IoU for a detection to continue a track.
        max_missed: frames a track survives without a detection (bridges short misses).
        landmark_weight: weight of the mean landmark distance (in units of the box size) in the
            matching cost ``1 - IoU + w * dist``; separates overlapping faces.
        first_id: the id of the first track (ids count up from it).
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 8,
                 landmark_weight: float = 0.5, first_id: int = 0):
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.landmark_weight = landmark_weight
        self._next_id = int(first_id)
        # track id -> (last box (4,), last landmarks (5,2), frames since last seen)
        self._tracks: Dict[int, Tuple[np.ndarray, np.ndarray, int]] = {}

    @property
    def live_ids(self) -> List[int]:
        return list(self._tracks)

    def update(self, boxes: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Assign track ids to one frame's detections (call once per frame, in order).

        Args:
            boxes: (N, 4) boxes in frame pixels.
            landmarks: (N, 5, 2) landmarks in frame pixels.

        Returns:
            (N,) int64 track ids.
        """
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        landmarks = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
        ids = np.full(len(boxes), -1, np.int64)
        tids = list(self._tracks)
        if tids and len(boxes):
            tb = np.stack([self._tracks[t][0] for t in tids])
            tl = np.stack([self._tracks[t][1] for t in tids])
            iou = box_iou(boxes, tb)
            scale = np.sqrt(np.clip((boxes[:, 2:] - boxes[:, :2]).prod(-1), 1, None))[:, None]
            dist = np.linalg.norm(landmarks[:, None] - tl[None], axis=-1).mean(-1) / scale
            cost = 1.0 - iou + self.landmark_weight * dist
            cost[iou < self.iou_threshold] = 1e6
            from scipy.optimize import linear_sum_assignment  # lazy: scipy import is slow

            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] < 1e6:
                    ids[r] = tids[c]
        for i in np.nonzero(ids < 0)[0]:
            ids[i] = self._next_id
            self._next_id += 1
        seen = set(ids.tolist())
        for t in list(self._tracks):
            if t not in seen:
                box, lm, missed = self._tracks[t]
                if missed + 1 > self.max_missed:
                    del self._tracks[t]
                else:
                    self._tracks[t] = (box, lm, missed + 1)
        for i, t in enumerate(ids.tolist()):
            self._tracks[t] = (boxes[i], landmarks[i], 0)
        return ids


def _local_linear(times: np.ndarray, values: np.ndarray, t: float, sigma: float) -> np.ndarray:
    """Gaussian-weighted least-squares line through (times, values) evaluated at ``t``."""
    dt = times - t
    w = np.exp(-0.5 * (dt / sigma) ** 2)
    if len(times) < 3 or np.ptp(times) < 2:  # too few points for a slope: weighted mean
        return (w[:, None] * values).sum(0) / w.sum()
    a = np.stack([np.ones_like(dt), dt], 1)  # (n, 2)
    aw = a * w[:, None]
    coef = np.linalg.solve(aw.T @ a + 1e-9 * np.eye(2), aw.T @ values)
    return coef[0]


class LandmarkSmoother:
    """Causal per-track landmark smoother with a short look-ahead.

    Feed every frame's raw landmarks with :meth:`observe` (frame index, track id); once frames up
    to ``t + lookahead`` have been observed, :meth:`smoothed` returns the estimate for frame t.
    Call :meth:`release` with the next frame still to be estimated to bound memory.

    Args:
        past: frames before t that vote (the window is ``[t - past, t + lookahead]``).
        lookahead: frames after t that vote (the pipeline delays its output by this many frames).
        sigma: Gaussian weight width in frames.
        enabled: False returns the raw landmarks (for comparison runs).
    """

    def __init__(self, past: int = 8, lookahead: int = 2, sigma: float = 5.0,
                 enabled: bool = True):
        self.past = int(past)
        self.lookahead = int(lookahead)
        self.sigma = float(sigma)
        self.enabled = bool(enabled)
        self._hist: Dict[int, Deque[Tuple[int, np.ndarray]]] = {}

    def observe(self, frame: int, track_id: int, landmarks: np.ndarray) -> None:
        """Record the raw (5, 2) landmarks of ``track_id`` at ``frame`` (frames in order)."""
        # bounded even if release() is never called; the pipeline releases as it emits frames
        h = self._hist.setdefault(int(track_id), deque(maxlen=1024))
        h.append((int(frame), np.asarray(landmarks, np.float64).reshape(5, 2)))

    def release(self, next_frame: int) -> None:
        """Forget what no query for frames >= ``next_frame`` can use (and tracks left empty)."""
        for tid in list(self._hist):
            h = self._hist[tid]
            while h and h[0][0] < next_frame - self.past:
                h.popleft()
            if not h:
                del self._hist[tid]

    @property
    def track_ids(self) -> List[int]:
        return list(self._hist)

    def smoothed(self, frame: int, track_id: int,
                 raw: Optional[np.ndarray] = None) -> np.ndarray:
        """Smoothed (5, 2) landmarks of ``track_id`` at ``frame``.

        Args:
            frame: frame index to estimate.
            track_id: the track.
            raw: the frame's raw landmarks, returned when smoothing is off or nothing is known.
        """
        h = self._hist.get(int(track_id))
        if not self.enabled or not h:
            if raw is None:
                raise KeyError(f"no landmarks for track {track_id}")
            return np.asarray(raw, np.float64).reshape(5, 2)
        lo, hi = frame - self.past, frame + self.lookahead
        pts = [(f, lm) for f, lm in h if lo <= f <= hi]
        if not pts:
            return np.asarray(raw, np.float64).reshape(5, 2) if raw is not None else h[-1][1]
        times = np.array([f for f, _ in pts], np.float64)
        vals = np.stack([lm.reshape(10) for _, lm in pts])
        ok = np.isfinite(vals).all(1)
        if not ok.any():
            return np.asarray(raw, np.float64).reshape(5, 2)
        return _local_linear(times[ok], vals[ok], float(frame), self.sigma).reshape(5, 2)


def landmark_jitter(landmarks: np.ndarray, reference: Optional[np.ndarray] = None) -> float:
    """Frame-to-frame jitter of a landmark track, in pixels.

    The error against a smooth reference track, e_t = l_t - ref_t, is differenced over time and
    the mean norm of (e_t - e_{t-1}) is returned: a smooth track has ~0 whatever its motion.

    Args:
        landmarks: (T, K, 2) landmarks over T frames.
        reference: (T, K, 2) ground-truth/smooth track; when None, a centred Savitzky-Golay
            fit (9 frames, quadratic) of ``landmarks`` itself.

    Returns:
        Mean per-point jitter in pixels.
    """
    lm = np.asarray(landmarks, np.float64)
    if reference is None:
        from scipy.signal import savgol_filter

        win = min(9, len(lm) - (1 - len(lm) % 2))  # odd, at most the track length
        reference = savgol_filter(lm, win, 2, axis=0, mode="interp") if win >= 3 else lm
    err = lm - np.asarray(reference, np.float64)
    return float(np.linalg.norm(np.diff(err, axis=0), axis=-1).mean())
