"""The video face restorer: faces tracked across frames, stabilised, restored in batches, pasted back.

:class:`VideoFaceRestorer` is the :class:`~gfpgan.inference.job.segments.SegmentProcessor` of
``gfpgan.infer_video``: it detects faces on key frames and tracks them in between, smooths each
track's landmarks over a short window (stabilised alignment), restores the faces of many frames
per forward pass (or hands them to a temporal step), and pastes them back with masks smoothed per
track, emitting a :class:`~gfpgan.inference.tracks.sinks.FaceRecord` per face to its sinks.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from gfpgan.inference.faces.batch import FaceBatchRestorer
from gfpgan.inference.faces.detection import Detections
from gfpgan.inference.faces.model import weights_digest
from gfpgan.inference.faces.paste import MaskSmoother
from gfpgan.inference.faces.pipeline import FaceStages, select_indices
from gfpgan.inference.job.segments import ProcessedFrame, SegmentWindow
from gfpgan.inference.job.threads import in_order, prefetch
from gfpgan.inference.settings import VideoRestorerConfig
from gfpgan.inference.tracks.keyframes import KeyframeDetector
from gfpgan.inference.tracks.sinks import FaceRecord, FaceSink
from gfpgan.inference.tracks.tracking import IoUTracker, LandmarkSmoother

__all__ = ["VideoFaceRestorer"]

_TRACK_STRIDE = 100000  # track ids of a segment count up from its first written frame x this
_WHOLE = SegmentWindow()  # a stream restored on its own: the whole of a video


def _on_own_stream(items: Iterable, device) -> Iterator:
    """Iterate ``items`` with a CUDA stream of its own as the current stream (of the thread that
    iterates it: the detection thread).

    The detector reads its results back to the host several times a frame; on the generator's
    stream each of those reads would also wait for the generator's queued batch. Only host
    arrays leave the detector, so no tensor crosses the two streams.
    """
    import torch

    with torch.cuda.stream(torch.cuda.Stream(device)):
        yield from items


@dataclass
class _Pending:
    index: int
    frame: np.ndarray
    det: Detections
    track_ids: np.ndarray


class FaceStep(Protocol):
    """How the video face restorer restores the aligned faces of a group of frames.

    The restorer hands its step every face of a group, in frame order, with its ``(frame,
    track)`` key and alignment; a step may keep per-track state (the temporal module does), which
    :meth:`reset` clears at the start of every segment. It says what it adds to the segment's
    context and to the resume fingerprint.
    """

    def reset(self, window: SegmentWindow) -> None:
        """Start from a clean state for the segment ``window``."""

    def context(self) -> Tuple[int, int]:
        """Frames the step needs before and after a segment, besides the restorer's own."""

    def fingerprint(self) -> Dict[str, Any]:
        """The step's settings that change pixels."""

    def restore(self, restorer: FaceBatchRestorer, crops: Sequence[np.ndarray],
                affines: Sequence[np.ndarray], keys: Sequence[Tuple[int, int]],
                landmarks: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Restored crops for a group's aligned crops.

        Args:
            restorer: the batch restorer (the model, ``batch_faces`` and ``strength``).
            crops: (S, S, 3) uint8 aligned faces, in frame order.
            affines: their frame -> crop (2, 3) matrices.
            keys: ``(frame in the whole video, track id)`` of each crop.
            landmarks: the (5, 2) frame landmarks each crop was aligned with.
        """


class FrameStep(FaceStep):
    """Each face on its own, frame by frame: the restorer's batches, no state."""

    def reset(self, window: SegmentWindow) -> None:
        pass

    def context(self) -> Tuple[int, int]:
        return 0, 0

    def fingerprint(self) -> Dict[str, Any]:
        return {}

    def restore(self, restorer, crops, affines, keys, landmarks) -> List[np.ndarray]:
        return restorer.restore(crops)


class VideoFaceRestorer(FaceStages):
    """Streaming face restoration of video frames with tracking and temporal stabilisation.

    A :class:`~gfpgan.inference.job.segments.SegmentProcessor`: the video job drives it segment by
    segment; it can equally restore any stream of frames with :meth:`process`.

    Args (besides :class:`FaceStages`'):
        config: a :class:`~gfpgan.inference.settings.VideoRestorerConfig` (the face settings plus
            detect_every, stabilize, lookahead, past, mask_smoothing, detect_batch_size,
            overlap, paste_workers).
        sinks: :class:`~gfpgan.inference.tracks.sinks.FaceSink` objects that receive a
            :class:`~gfpgan.inference.tracks.sinks.FaceRecord` for every restored face (face database,
            crop saver, ...).
        step: how a group's faces are restored (:class:`FaceStep`); frame by frame by default,
            :class:`~gfpgan.inference.tracks.temporal_step.TemporalStep` with the temporal module.
    """

    config_type = VideoRestorerConfig

    def __init__(self, model, config: Optional[VideoRestorerConfig] = None, *,
                 sinks: Sequence[FaceSink] = (), step: Optional[FaceStep] = None, **kwargs):
        super().__init__(model, config, **kwargs)
        cfg = self.config
        self.sinks = list(sinks)
        self.step = step if step is not None else FrameStep()
        self.lookahead = cfg.lookahead if cfg.stabilize else 0
        self._pool: Optional[ThreadPoolExecutor] = None
        self._keyframes: Optional[KeyframeDetector] = None
        self.reset()

    def reset(self, window: SegmentWindow = _WHOLE) -> None:
        """Forget all tracks and smoothing state; track ids of ``window`` are unique in its video."""
        cfg = self.config
        self.window = window
        self.step.reset(window)
        self.tracker = IoUTracker(first_id=window.start * _TRACK_STRIDE)
        self.smoother = LandmarkSmoother(past=cfg.past, lookahead=self.lookahead,
                                         enabled=cfg.stabilize)
        self.mask_smoother = MaskSmoother() if cfg.mask_smoothing else None

    # -- the SegmentProcessor contract ----------------------------------------------------------
    def context(self) -> Tuple[int, int]:
        """Frames needed before a segment (back to a key frame, then the smoother's history) and
        after it (the look-ahead, and the held frames up to the next key frame)."""
        cfg = self.config
        warmup, tail = self.step.context()
        return cfg.detect_every + cfg.past + warmup, self.lookahead + cfg.detect_every + 4 + tail

    def fingerprint(self) -> Dict[str, Any]:
        """The settings that change pixels, and the sha256 of every weight file used."""
        cfg = self.config.as_dict()
        for k in ("device", "batch_faces", "detect_batch_size", "overlap", "paste_workers"):
            del cfg[k]  # where and how the work is scheduled, not what it computes
        for k in ("temporal_reset", "gate_reset"):
            del cfg[k]  # the temporal step's settings: it reports those it uses
        cfg["device_type"] = self.device.type
        cfg["model"] = weights_digest(self.model_spec)
        cfg["detector_weights"] = weights_digest(self.detector_weights())
        cfg["parse_weights"] = weights_digest(self.config.parse_weights)
        cfg["personal"] = weights_digest(self.config.personal)
        if self.own_detector:  # a caller's detector object replaces the one the config names
            cfg["detector"] = f"{type(self._detector).__module__}.{type(self._detector).__qualname__}"
        cfg.update(self.step.fingerprint())
        return cfg

    @property
    def keyframes(self) -> KeyframeDetector:
        """The key-frame detector (built with the detector, on first use)."""
        if self._keyframes is None:
            track = getattr(self.detector, "track", None)  # detectors without it: every frame
            self._keyframes = KeyframeDetector(
                self.detect_batch, track and self._timed_track,
                lambda d, shape: select_indices(d, shape, self.only, self.min_face),
                self.config.detect_every)
        return self._keyframes

    def _timed_track(self, *args, **kwargs):
        with self.timer.stage("track"):
            return self.detector.track(*args, **kwargs)

    def process(self, frames: Iterable[np.ndarray],
                window: SegmentWindow = _WHOLE) -> Iterator[ProcessedFrame]:
        """Restore a stream of RGB uint8 (H, W, 3) frames from a clean state; yields one
        :class:`~gfpgan.inference.job.segments.ProcessedFrame` per frame, in order.

        Output lags the input by ``lookahead`` frames, a detection batch and, with
        ``detect_every`` > 1, up to that many frames (held until the next full detection);
        memory is bounded by a few frames. A frame without faces (at ``upscale`` 1) comes back
        as the very same array, marked unchanged.

        Args:
            frames: the frames, in order.
            window: where they sit in their video: key frames are counted from the video's
                start (so a segment sees the same schedule as a whole pass), and the sinks learn
                which frames are written.
        """
        self.reset(window)
        self.keyframes.start(window.first)  # builds the detector here, before any thread
        detected = self._detected(frames)
        if not self.config.overlap:
            yield from self._restored(detected)
        else:
            if self.device.type == "cuda":
                detected = _on_own_stream(detected, self.device)
            self._pool = ThreadPoolExecutor(self.config.paste_workers,
                                            thread_name_prefix="gfpgan-paste")
            try:
                yield from in_order(self._restored(prefetch(detected, 2, "gfpgan-detect")),
                                    window=2 * self.config.paste_workers)
            finally:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
        for sink in self.sinks:
            sink.end_tracks(window.video, ())

    def _detected(self, frames: Iterable[np.ndarray]) -> Iterator[tuple]:
        """The detection stage: ``(finalized frames, restorable up to, last)`` per chunk.

        Touches only the key-frame detector, so it may run in a thread of its own.
        """
        kf = self.keyframes
        chunk: List[np.ndarray] = []
        start = 0
        for frame in frames:
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(f"frame {start + len(chunk)}: expected RGB uint8 (H, W, 3), "
                                 f"got {frame.shape} {frame.dtype}")
            chunk.append(frame)
            if len(chunk) >= self.config.detect_batch_size:
                final = kf.push(start, chunk)
                start += len(chunk)
                chunk = []
                yield final, kf.finalized - 1 - self.lookahead, False
        final = kf.push(start, chunk) if chunk else []
        yield final + kf.flush(), kf.finalized, True

    def _restored(self, detected: Iterable[tuple]) -> Iterator:
        """The tracking, restoration and paste stage, in order (frames, or futures of them)."""
        pending: "deque[_Pending]" = deque()
        for final, ready_upto, last in detected:
            self._add(final, pending)
            yield from self._drain(pending, ready_upto, final=last)

    def _add(self, final, pending) -> None:
        """Track ids and smoother observations for frames whose detections are final."""
        for idx, frame, det in final:
            tids = self.tracker.update(det.boxes, det.landmarks)
            for tid, lm in zip(tids.tolist(), det.landmarks):
                self.smoother.observe(idx, tid, lm)
            pending.append(_Pending(idx, frame, det, tids))

    def _drain(self, pending, ready_upto: int, final: bool = False) -> Iterator:
        """Restore and yield pending frames with index <= ready_upto, batching their faces.

        Unless ``final``, a last group with fewer than ``batch_faces`` faces waits for the next
        frames so that every forward pass is full (at most ``batch_faces`` frames are held).
        """
        while pending and pending[0].index <= ready_upto:
            group, n_faces = [], 0
            while pending and pending[0].index <= ready_upto and (
                    not group or n_faces + len(pending[0].det) <= self.restorer.batch_faces):
                group.append(pending.popleft())
                n_faces += len(group[-1].det)
            short = 0 < n_faces < self.restorer.batch_faces
            if short and not final and not (pending and pending[0].index <= ready_upto):
                pending.extendleft(reversed(group))  # wait for more faces
                break
            yield from self._restore_group(group)
            # history still needed: the window of the oldest frame not yet restored
            self.smoother.release(pending[0].index if pending else group[-1].index + 1)
        # a track that ended at detection time may still have frames waiting here
        live = set(self.tracker.live_ids) | {t for p in pending for t in p.track_ids.tolist()}
        if self.mask_smoother is not None:
            self.mask_smoother.drop(live)
        for sink in self.sinks:
            sink.end_tracks(self.window.video, live)

    def _restore_group(self, group: List[_Pending]) -> Iterator:
        faces = []  # (frame in group, detection, track, smoothed landmarks)
        for gi, p in enumerate(group):
            for j, tid in enumerate(p.track_ids.tolist()):
                faces.append((gi, j, tid, self.smoother.smoothed(p.index, tid,
                                                                 raw=p.det.landmarks[j])))
        crops, affines = [], []
        with self.timer.stage("align"):
            for gi, _, _, lm in faces:
                c, a = self.align(group[gi].frame, lm[None])
                crops += c
                affines += a
        keys = [(group[gi].index + self.window.first, tid) for gi, _, tid, _ in faces]
        with self.timer.stage("generator"):
            restored = self.step.restore(self.restorer, crops, affines, keys, [f[3] for f in faces])
        masks = self.face_masks(restored, [f[2] for f in faces], self.mask_smoother)
        per_frame: List[List[int]] = [[] for _ in group]
        for k, (gi, j, tid, lm) in enumerate(faces):
            per_frame[gi].append(k)
            p = group[gi]
            record = FaceRecord(self.window.video, p.index + self.window.first, tid,
                                p.det.boxes[j], float(p.det.scores[j]), p.det.landmarks[j], lm,
                                affines[k], crops[k], restored[k],
                                self.window.written(p.index + self.window.first))
            for sink in self.sinks:
                sink.add(record)
        for gi, p in enumerate(group):
            ks = per_frame[gi]
            if not ks and self.upscale == 1:
                yield ProcessedFrame(p.frame, False)
                continue
            args = (p.frame, [restored[k] for k in ks], [affines[k] for k in ks],
                    [masks[k] for k in ks])
            yield (self._paste_frame(*args) if self._pool is None
                   else self._pool.submit(self._paste_frame, *args))

    def _paste_frame(self, frame, restored, affines, masks) -> ProcessedFrame:
        """Paste one frame's faces, each weighted by --keep-detail's trust (measured here, on the
        paste pool, not on the thread that feeds the generator)."""
        with self.timer.stage("paste"):
            trust = self.trust(frame, affines)
            return ProcessedFrame(self.paste(frame, restored, affines, masks, trust), True)
