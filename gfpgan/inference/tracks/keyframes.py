"""Key-frame face detection with tracking in between: the detector's cost, paid every K frames.

Running the whole detector on every frame dominates the cost of restoring a video on a CPU
(MTCNN's image pyramid: ~50-65 ms per 640x360 frame on one core, against ~2 ms for the tiny
generator's share), and on a GPU it is the CPU-side stage that caps the frame rate. Faces move
little from one frame to the next, so :class:`KeyframeDetector` runs the full detector only on
*key frames* (every ``every``-th frame of the video, counted from its first frame, so that the
schedule does not depend on where a segment starts) and follows the known faces into the other
frames with the detector's cheap ``track`` (MTCNN: its O-Net alone on the predicted box, ~2 ms a
face; RetinaFace: detection inside a window around the box). In between:

* a face the tracker loses triggers a full detection of that very frame;
* a face that a full detection finds for the first time is tracked *backwards* through the
  frames since the previous full detection (they are held back until then), so it is restored
  from the frame it appeared in, not from the next key frame;
* on a scheduled key frame the faces restart from the detector's boxes (re-anchoring), so the
  state after it depends on that frame alone, not on the whole history (a segmented or
  torchrun-split job then gives the same frames as one pass; the one exception is a face the
  detector misses on a key frame while the tracker still holds it, which is kept).

Landmarks always come from the same refinement (three O-Net rounds for MTCNN), which is also
steadier than the full cascade: on a face sliding across the frame, the residual landmark noise
drops from 0.34 px (full detection per frame) to 0.08 px (tracked).
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from gfpgan.inference.faces.detection import Detections
from gfpgan.inference.tracks.tracking import box_iou

__all__ = ["KeyframeDetector"]

Finalized = Tuple[int, np.ndarray, Detections]


def _concat(a: Detections, b: Detections) -> Detections:
    """The faces of ``a`` followed by those of ``b``."""
    return Detections(np.concatenate([a.boxes, b.boxes]).astype(np.float32),
                      np.concatenate([a.scores, b.scores]).astype(np.float32),
                      np.concatenate([a.landmarks, b.landmarks]).astype(np.float32))


def _overlaps(boxes: np.ndarray, others: np.ndarray, thr: float = 0.3) -> np.ndarray:
    """(N,) bool: box i overlaps any of ``others`` with IoU >= thr."""
    if len(boxes) == 0 or len(others) == 0:
        return np.zeros(len(boxes), bool)
    return box_iou(boxes, others).max(1) >= thr


class KeyframeDetector:
    """Per-frame detections from full detections on key frames and tracking in between.

    Args:
        detect: frames -> one :class:`Detections` per frame (full detection, faces selected).
        track: ``(frame, boxes (N, 4)) -> Tracked`` (see ``MTCNNDetector.track``), or None to
            detect every frame.
        select: ``(Detections, frame shape) -> indices`` of the faces to keep (size / only).
        every: a full detection every this many frames (1: every frame, no tracking).
    """

    def __init__(self, detect: Callable[[Sequence[np.ndarray]], List[Detections]],
                 track: Optional[Callable], select: Callable, every: int = 8):
        self.detect = detect
        self.track = track
        self.select = select
        self.every = max(1, int(every)) if track is not None else 1
        self.start()

    def start(self, first_index: int = 0) -> None:
        """Begin a new stream whose first frame is frame ``first_index`` of the video."""
        self.offset = int(first_index)
        self.finalized = 0  # frames of this stream whose detections are final
        self._held: List[list] = []  # [index, frame, Detections] since the last full detection
        self._boxes = np.zeros((0, 4))  # faces of the last frame, and one frame before
        self._prev = np.zeros((0, 4))
        self.full_detections = 0  # full detector runs in this stream

    def push(self, start: int, frames: Sequence[np.ndarray]) -> List[Finalized]:
        """Feed frames ``start, start+1, ...`` of the stream (in order); returns the frames
        whose detections became final, in order, as ``(index, frame, Detections)``."""
        key = [k for k in range(len(frames)) if self._is_key(start + k)]
        full = dict(zip(key, self._detect([frames[k] for k in key]))) if key else {}
        out: List[Finalized] = []
        for k, frame in enumerate(frames):
            out += self._step(start + k, frame, full.get(k), k in full)
        return out

    def flush(self) -> List[Finalized]:
        """The frames still held back (call at the end of the stream)."""
        return self._release()

    # -- internals ------------------------------------------------------------------------------
    def _release(self, *last: Finalized) -> List[Finalized]:
        out = [tuple(h) for h in self._held] + list(last)
        self._held = []
        self.finalized += len(out)
        return out  # type: ignore[return-value]

    def _is_key(self, index: int) -> bool:
        return self.every == 1 or index == 0 or (self.offset + index) % self.every == 0

    def _detect(self, frames):
        self.full_detections += len(frames)
        return self.detect(frames)

    def _keep(self, det: Detections, shape) -> Tuple[Detections, np.ndarray]:
        idx = np.asarray(self.select(det, shape), np.int64)
        return det.select(idx), idx

    def _refine(self, frame, boxes: np.ndarray, fallback: Detections) -> Detections:
        """Track from the given boxes in the same frame; faces the tracker rejects keep ``fallback``."""
        if len(boxes) == 0:
            return fallback
        tr = self.track(frame, boxes)
        keep = np.asarray(tr.found, bool)
        return Detections(np.where(keep[:, None], tr.det.boxes, fallback.boxes),
                          np.where(keep, tr.det.scores, fallback.scores),
                          np.where(keep[:, None, None], tr.det.landmarks, fallback.landmarks))

    def _step(self, index: int, frame: np.ndarray, full: Optional[Detections],
              scheduled: bool) -> List[Finalized]:
        if self.every == 1:
            return self._release((index, frame, full))
        # follow the faces of the previous frame (constant-velocity prediction)
        tracked, prev = Detections(), np.zeros((0, 4))
        if len(self._boxes):
            tr = self.track(frame, self._boxes + (self._boxes - self._prev))
            found = np.asarray(tr.found, bool)
            tracked, prev = tr.det.select(np.nonzero(found)[0]), self._boxes[found]
            if full is None and not found.all():
                full = self._detect([frame])[0]  # a face was lost: look again, now
        if full is None:  # between key frames: the tracked faces
            det, idx = self._keep(tracked, frame.shape)
            self._held.append([index, frame, det])
            self._boxes, self._prev = det.boxes.astype(np.float64), prev[idx]
            return []

        fresh = ~_overlaps(full.boxes, tracked.boxes)  # faces no track holds
        if scheduled:
            # re-anchor every face on the detector's boxes, at rest: what follows depends on
            # this frame alone (tracked faces the detector missed are kept all the same)
            faces = self._refine(frame, full.boxes.astype(np.float64), full)
            held = tracked.select(np.nonzero(~_overlaps(tracked.boxes, full.boxes))[0])
            merged = _concat(faces, held)
            is_new = np.r_[fresh, np.zeros(len(held), bool)]
            det, idx = self._keep(merged, frame.shape)
            prev = det.boxes
        else:  # a forced detection: tracked faces go on, new ones start at rest
            new = full.select(np.nonzero(fresh)[0])
            new = self._refine(frame, new.boxes.astype(np.float64), new)
            merged = _concat(tracked, new)
            is_new = np.r_[np.zeros(len(tracked), bool), np.ones(len(new), bool)]
            det, idx = self._keep(merged, frame.shape)
            prev = np.concatenate([prev, new.boxes])[idx]
        for j in np.nonzero(is_new[idx])[0]:
            self._backfill(det.boxes[j].astype(np.float64))
        self._boxes, self._prev = det.boxes.astype(np.float64), np.asarray(prev, np.float64)
        return self._release((index, frame, det))

    def _backfill(self, box: np.ndarray) -> None:
        """Track a newly found face backwards through the held frames until it is lost."""
        after = box
        for h in reversed(self._held):
            _, frame, det = h
            tr = self.track(frame, (box + (box - after))[None])
            if not tr.found[0] or _overlaps(tr.det.boxes, det.boxes)[0]:
                return
            merged = _concat(det, tr.det)
            kept, idx = self._keep(merged, frame.shape)
            if len(det) not in idx.tolist():  # dropped by the selection (size, only)
                return
            h[2] = kept
            after, box = box, tr.det.boxes[0].astype(np.float64)
