"""The face pipeline: detect, align, restore many faces per forward pass, paste back.

Two front ends share the same stages (:class:`FaceStages`), exposed so a caller can overlap
them in threads:

* :class:`FaceRestorer` restores single images (``restore(img) -> RestoreResult``), including
  already-aligned faces;
* :class:`VideoFaceRestorer` restores a stream of frames (``process(frames) -> iterator``): faces
  of several frames are detected and restored in one batch, tracked across frames, their landmarks
  smoothed per track (a short look-ahead delays the output by ``lookahead`` frames), and frames
  without a face come back as the very same array. Detection runs in a thread of its own, ahead
  of the generator, and paste-back on a small pool (:mod:`gfpgan.inference.overlap`), with
  every frame still returned in order.

Stages: ``detect_batch`` (detector + face selection), ``align`` (FFHQ 5-point similarity warp at
the model's size), ``restore_batch`` (batched network + strength blend), ``face_masks`` (feather or
ParseNet, smoothed per track) and ``paste`` (inverse affine limited to each face's box).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from gfpgan.errors import UserError
from gfpgan.inference.alignment import estimate_affine, warp_face
from gfpgan.inference.config import RestorerConfig, VideoRestorerConfig
from gfpgan.inference.detection import Detections, build_detector
from gfpgan.inference.face_model import load_face_model, resolve_device, weights_digest
from gfpgan.inference.keyframes import KeyframeDetector
from gfpgan.inference.overlap import in_order, prefetch
from gfpgan.inference.paste import MaskSmoother, ParseMasker, feather_mask, paste_face, scale_affine
from gfpgan.inference.restorer import FaceBatchRestorer, crops_to_tensor
from gfpgan.inference.segments import NO_TIMER, ProcessedFrame, SegmentWindow, StageTimer
from gfpgan.inference.sinks import FaceRecord, FaceSink
from gfpgan.inference.tracking import IoUTracker, LandmarkSmoother

__all__ = ["RestoreResult", "FaceStages", "FaceRestorer", "VideoFaceRestorer", "select_faces",
           "select_indices"]

_TRACK_STRIDE = 100000  # track ids of a segment count up from its first written frame x this


@dataclass
class RestoreResult:
    """What :meth:`FaceRestorer.restore` returns.

    Attributes:
        cropped_faces: aligned input crops, (S, S, 3) uint8 RGB each.
        restored_faces: restored crops, same order.
        restored_img: the whole restored image (H*upscale, W*upscale, 3) uint8, or None in aligned
            mode.
        detections: the faces used (boxes, scores, landmarks in input pixels).
    """

    cropped_faces: List[np.ndarray]
    restored_faces: List[np.ndarray]
    restored_img: Optional[np.ndarray]
    detections: Detections = field(default_factory=Detections)


def select_indices(det: Detections, shape, only: str = "all", min_face: float = 0.0) -> np.ndarray:
    """Indices of the faces to keep: box short side >= ``min_face`` px, then all / the centre /
    the largest.

    Args:
        det: one frame's detections.
        shape: the frame's shape (H, W, ...).
        only: "all", "center" (box centre nearest the frame centre) or "largest" (box area).
        min_face: minimum face box side in pixels.
    """
    if len(det) == 0:
        return np.zeros(0, np.int64)
    wh = det.boxes[:, 2:] - det.boxes[:, :2]
    idx = np.nonzero(wh.min(1) >= min_face)[0]
    if len(idx) <= 1 or only == "all":
        return idx
    if only == "largest":
        return idx[[int(np.argmax(wh[idx].prod(1)))]]
    centre = np.array([shape[1] / 2.0, shape[0] / 2.0])
    boxes = det.boxes[idx]
    dist = np.linalg.norm((boxes[:, :2] + boxes[:, 2:]) / 2 - centre, axis=1)
    return idx[[int(np.argmin(dist))]]


def select_faces(det: Detections, shape, only: str = "all", min_face: float = 0.0) -> Detections:
    """The faces :func:`select_indices` keeps."""
    return det.select(select_indices(det, shape, only, min_face))


def _settings(config_type, config, detector, settings):
    """The config of a front end: ``config`` (or the defaults) with ``settings`` replaced, and
    the detector, when ``detector`` is an object rather than a name."""
    if isinstance(detector, str):
        settings["detector"] = detector
        detector = None
    config = config or config_type()
    if not isinstance(config, config_type):
        raise TypeError(f"expected a {config_type.__name__}, got {type(config).__name__}")
    return (dataclasses.replace(config, **settings) if settings else config), detector


class FaceStages:
    """The shared stages; see the module docstring.

    Args:
        model: a FaceModel, an ``nn.Module`` or a spec for :func:`load_face_model` (card name,
            .safetensors/.pth/.onnx path).
        config: a :class:`~gfpgan.inference.config.RestorerConfig` (device, backend, half,
            strength, only, min_face, detector, weights, batch_faces, upscale, fixed_noise).
        detector: a detector object (``detect(list of frames)``, optionally ``track``) that
            replaces the one the config names.
        background: "resize" or a callable ``img -> img * upscale`` (e.g. ``BackgroundUpsampler``).
        timer: a :class:`~gfpgan.inference.segments.StageTimer` that sees every stage run.
        **settings: config fields to override, e.g. ``device="cpu"``.
    """

    config_type = RestorerConfig

    def __init__(self, model, config: Optional[RestorerConfig] = None, *,
                 detector: Union[str, object, None] = None,
                 background: Union[str, Callable] = "resize", timer: StageTimer = NO_TIMER,
                 **settings):
        self.config, self._detector = _settings(self.config_type, config, detector, settings)
        self.timer = timer
        cfg = self.config
        self.model_spec = model
        self.device = resolve_device(cfg.device)
        self.model = load_face_model(model, device=self.device, backend=cfg.backend,
                                     half=cfg.half, fixed_noise=cfg.fixed_noise)
        self.size = int(self.model.size)
        self.restorer = FaceBatchRestorer(self.model, batch_faces=cfg.batch_faces,
                                          strength=cfg.strength)
        self.only = cfg.only
        self.min_face = float(cfg.min_face)
        self.upscale = float(cfg.upscale)
        if not (background == "resize" or callable(background)):
            raise UserError(f"background {background!r} must be 'resize' or an upsampler.")
        self.background = background
        self.parser = ParseMasker(cfg.parse_weights, self.device) if cfg.parse_weights else None

    @property
    def detector(self):
        """The face detector, built on first use (MTCNN's import is not free)."""
        if self._detector is None:
            # MTCNN's image pyramid need not look for faces that select_faces would drop anyway:
            # its cost falls steeply with the smallest face size (~2.7x from 20 to 40 px)
            self._detector = build_detector(self.config.detector, device=self.device,
                                            weights=self.detector_weights(),
                                            min_face=max(20, int(self.min_face)))
        return self._detector

    def detector_weights(self) -> Optional[str]:
        """The RetinaFace weights file: the one configured, else from the weights cache
        (experiments/pretrained_models, ~/.cache/gfpgan); None for MTCNN (weights in its wheel)."""
        if self.config.detector != "retinaface":
            return None
        if self.config.detector_weights:
            return self.config.detector_weights
        from gfpgan.model_cards import resolve_weights

        return str(resolve_weights("detection_Resnet50_Final"))

    # -- stages -------------------------------------------------------------------------------
    def detect_batch(self, frames: Sequence[np.ndarray]) -> List[Detections]:
        """Detect and select faces in RGB uint8 frames; one Detections per frame."""
        with self.timer.stage("detect"):
            dets = self.detector.detect(list(frames))
        return [select_faces(d, f.shape, self.only, self.min_face) for d, f in zip(dets, frames)]

    def align(self, frame: np.ndarray, landmarks: np.ndarray):
        """Aligned crops of ``frame`` for (N, 5, 2) landmarks -> (list of (S,S,3) uint8, list of (2,3))."""
        crops, affines = [], []
        for lm in np.asarray(landmarks).reshape(-1, 5, 2):
            m = estimate_affine(lm, self.size)
            affines.append(m)
            crops.append(warp_face(frame, m, self.size))
        return crops, affines

    def restore_batch(self, crops: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Restore aligned crops, ``batch_faces`` per forward pass."""
        with self.timer.stage("generator"):
            return self.restorer.restore(crops)

    def face_masks(self, restored: Sequence[np.ndarray], track_ids=None,
                   smoother: Optional[MaskSmoother] = None) -> List[np.ndarray]:
        """Blend masks in crop coordinates: feathered square, or ParseNet x feather when enabled."""
        base = feather_mask(self.size)
        if self.parser is None or not restored:
            return [base] * len(restored)
        parsed = self.parser(crops_to_tensor(restored, self.parser.device)).cpu().numpy()
        ids = list(track_ids) if track_ids is not None else [None] * len(restored)
        out = []
        for m, tid in zip(parsed, ids):
            m = np.minimum(m, base)  # the feather still hides the crop's border
            out.append(smoother(tid, m) if smoother is not None else m)
        return out

    def background_for(self, frame: np.ndarray) -> np.ndarray:
        """The frame at output scale (a new array): resized (Lanczos) or through the upsampler."""
        if self.upscale == 1:
            return frame.copy()
        if callable(self.background):
            out = self.background(frame)
        else:
            h, w = frame.shape[:2]
            out = cv2.resize(frame, (round(w * self.upscale), round(h * self.upscale)),
                             interpolation=cv2.INTER_LANCZOS4)
        return np.ascontiguousarray(out)

    def paste(self, frame: np.ndarray, restored: Sequence[np.ndarray],
              affines: Sequence[np.ndarray], masks: Optional[Sequence[np.ndarray]] = None
              ) -> np.ndarray:
        """Paste restored faces into a new output frame (the input is never modified).

        Args:
            frame: (H, W, 3) uint8 input frame.
            restored: (S, S, 3) uint8 restored crops.
            affines: the frame->crop matrices used to align them (input pixels).
            masks: (S, S) blend masks; feathered square when None.
        """
        out = self.background_for(frame)
        scale = out.shape[1] / frame.shape[1]
        for i, (face, m) in enumerate(zip(restored, affines)):
            paste_face(out, face, scale_affine(m, scale), None if masks is None else masks[i])
        return out


class FaceRestorer(FaceStages):
    """Restore faces in single images; arguments as in :class:`FaceStages`, plus ``aligned``."""

    def __init__(self, model, config: Optional[RestorerConfig] = None, *, aligned: bool = False,
                 **kwargs):
        super().__init__(model, config, **kwargs)
        self.aligned = aligned

    def restore(self, img: np.ndarray) -> RestoreResult:
        """Restore one RGB uint8 (H, W, 3) image.

        In aligned mode the image is taken as one face (resized to the model size) and
        ``restored_img`` is None. An image without faces comes back unchanged (resized to the
        output scale).
        """
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {img.shape} {img.dtype}")
        if self.aligned:
            s = self.size
            crop = img if img.shape[:2] == (s, s) else cv2.resize(
                img, (s, s), interpolation=cv2.INTER_AREA if img.shape[0] > s else cv2.INTER_CUBIC)
            return RestoreResult([crop], self.restore_batch([crop]), None, Detections())
        det = self.detect_batch([img])[0]
        crops, affines = self.align(img, det.landmarks)
        restored = self.restore_batch(crops)
        out = self.paste(img, restored, affines, self.face_masks(restored))
        return RestoreResult(crops, restored, out, det)


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


class VideoFaceRestorer(FaceStages):
    """Streaming face restoration of video frames with tracking and temporal stabilisation.

    A :class:`~gfpgan.inference.segments.SegmentProcessor`: the video job drives it segment by
    segment; it can equally restore any stream of frames with :meth:`process`.

    Args (besides :class:`FaceStages`'):
        config: a :class:`~gfpgan.inference.config.VideoRestorerConfig` (the face settings plus
            detect_every, stabilize, lookahead, past, mask_smoothing, detect_batch_size,
            overlap, paste_workers).
        sinks: :class:`~gfpgan.inference.sinks.FaceSink` objects that receive a
            :class:`~gfpgan.inference.sinks.FaceRecord` for every restored face (face database,
            crop saver, ...).
    """

    config_type = VideoRestorerConfig

    def __init__(self, model, config: Optional[VideoRestorerConfig] = None, *,
                 sinks: Sequence[FaceSink] = (), **kwargs):
        super().__init__(model, config, **kwargs)
        cfg = self.config
        self.sinks = list(sinks)
        self.lookahead = cfg.lookahead if cfg.stabilize else 0
        self._pool: Optional[ThreadPoolExecutor] = None
        self._keyframes: Optional[KeyframeDetector] = None
        self.reset()

    def reset(self, window: SegmentWindow = SegmentWindow()) -> None:
        """Forget all tracks and smoothing state; track ids of ``window`` are unique in its video."""
        cfg = self.config
        self.window = window
        self.tracker = IoUTracker(first_id=window.start * _TRACK_STRIDE)
        self.smoother = LandmarkSmoother(past=cfg.past, lookahead=self.lookahead,
                                         enabled=cfg.stabilize)
        self.mask_smoother = MaskSmoother() if cfg.mask_smoothing else None

    # -- the SegmentProcessor contract ----------------------------------------------------------
    def context(self) -> Tuple[int, int]:
        """Frames needed before a segment (back to a key frame, then the smoother's history) and
        after it (the look-ahead, and the held frames up to the next key frame)."""
        cfg = self.config
        return cfg.detect_every + cfg.past, self.lookahead + cfg.detect_every + 4

    def fingerprint(self) -> Dict[str, Any]:
        """The settings that change pixels, and the sha256 of every weight file used."""
        cfg = self.config.as_dict()
        for k in ("device", "batch_faces", "detect_batch_size", "overlap", "paste_workers"):
            del cfg[k]  # where and how the work is scheduled, not what it computes
        for k in ("temporal_reset", "gate_reset"):
            del cfg[k]  # settings of a temporal module, which this restorer has not
        cfg["device_type"] = self.device.type
        cfg["model"] = weights_digest(self.model_spec)
        cfg["detector_weights"] = weights_digest(self.detector_weights())
        cfg["parse_weights"] = weights_digest(self.config.parse_weights)
        if self._detector is not None and not isinstance(self.config.detector, str):
            cfg["detector"] = type(self._detector).__name__
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
                window: SegmentWindow = SegmentWindow()) -> Iterator[ProcessedFrame]:
        """Restore a stream of RGB uint8 (H, W, 3) frames from a clean state; yields one
        :class:`~gfpgan.inference.segments.ProcessedFrame` per frame, in order.

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

    def restore_faces(self, crops: Sequence[np.ndarray], affines: Sequence[np.ndarray],
                      keys: Sequence[Tuple[int, int]], landmarks: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Restore a group's aligned crops (a subclass may keep per-track state).

        Args:
            crops: (S, S, 3) uint8 aligned faces, in frame order.
            affines: their frame -> crop (2, 3) matrices.
            keys: ``(frame in the whole video, track id)`` of each crop.
            landmarks: the (5, 2) frame landmarks each crop was aligned with.
        """
        return self.restore_batch(crops)

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
        restored = self.restore_faces(crops, affines,
                                      [(group[gi].index + self.window.first, tid)
                                       for gi, _, tid, _ in faces], [f[3] for f in faces])
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

    def _paste_frame(self, *args) -> ProcessedFrame:
        with self.timer.stage("paste"):
            return ProcessedFrame(self.paste(*args), True)
