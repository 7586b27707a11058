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

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Union

import cv2
import numpy as np

from gfpgan.errors import UserError
from gfpgan.inference.alignment import estimate_affine, warp_face
from gfpgan.inference.detection import Detections, build_detector
from gfpgan.inference.face_model import load_face_model, resolve_device
from gfpgan.inference.keyframes import KeyframeDetector
from gfpgan.inference.overlap import in_order, prefetch
from gfpgan.inference.paste import MaskSmoother, ParseMasker, feather_mask, paste_face, scale_affine
from gfpgan.inference.restorer import FaceBatchRestorer, crops_to_tensor
from gfpgan.inference.tracking import IoUTracker, LandmarkSmoother

__all__ = ["RestoreResult", "FaceStages", "FaceRestorer", "VideoFaceRestorer", "select_faces",
           "select_indices"]

ONLY_CHOICES = ("all", "center", "largest")


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


class FaceStages:
    """The shared stages; see the module docstring. All options are keyword arguments.

    Args:
        model: a FaceModel, an ``nn.Module`` or a spec for :func:`load_face_model` (card name,
            .safetensors/.pth/.onnx path).
        device: "auto", "cpu", "cuda", "cuda:N" (model, detector and parsing).
        backend: "torch" or "onnxruntime".
        half: fp16/bf16 on CUDA.
        fixed_noise: fixed StyleGAN2 noise (stable video) instead of fresh noise per call.
        detector: "mtcnn", "retinaface" or an object with ``detect(list of frames)``.
        detector_weights: RetinaFace weights file.
        only: "all", "center" or "largest".
        min_face: minimum face box side in pixels.
        strength: 0..1 blend of restored and input crop.
        batch_faces: faces per forward pass.
        upscale: output scale of the whole image (the background is resized or upsampled).
        background: "resize" or a callable ``img -> img * upscale`` (e.g. ``BackgroundUpsampler``).
        parse_weights: facexlib ParseNet weights for face-shaped masks (None: feathered square).
    """

    def __init__(self, model, *, device="auto", backend: str = "torch", half=False,
                 fixed_noise: bool = True, detector: Union[str, object] = "mtcnn",
                 detector_weights: Optional[str] = None, only: str = "all", min_face: float = 0.0,
                 strength: float = 1.0, batch_faces: int = 8, upscale: float = 1,
                 background: Union[str, Callable] = "resize", parse_weights: Optional[str] = None):
        if only not in ONLY_CHOICES:
            raise UserError(f"--only {only!r} is not one of {', '.join(ONLY_CHOICES)}.")
        if not upscale or upscale <= 0:
            raise UserError(f"--upscale {upscale} must be positive.")
        self.device = resolve_device(device)
        self.model = load_face_model(model, device=self.device, backend=backend, half=half,
                                     fixed_noise=fixed_noise)
        self.size = int(self.model.size)
        self.restorer = FaceBatchRestorer(self.model, batch_faces=batch_faces, strength=strength)
        self._detector_spec = (detector, detector_weights)
        self._detector = None if isinstance(detector, str) else detector
        if isinstance(detector, str) and detector not in ("mtcnn", "retinaface"):
            raise UserError(f"unknown face detector {detector!r}; use 'mtcnn' or 'retinaface'.")
        self.only = only
        self.min_face = float(min_face)
        self.upscale = float(upscale)
        if not (background == "resize" or callable(background)):
            raise UserError(f"background {background!r} must be 'resize' or an upsampler.")
        self.background = background
        self.parser = ParseMasker(parse_weights, self.device) if parse_weights else None

    @property
    def detector(self):
        """The face detector, built on first use (MTCNN's import is not free)."""
        if self._detector is None:
            name, weights = self._detector_spec
            if name == "retinaface" and not weights:
                # not given: look in the weights cache (experiments/pretrained_models, ~/.cache)
                from gfpgan.model_cards import resolve_weights

                weights = str(resolve_weights("detection_Resnet50_Final"))
            # MTCNN's image pyramid need not look for faces that select_faces would drop anyway:
            # its cost falls steeply with the smallest face size (~2.7x from 20 to 40 px)
            self._detector = build_detector(name, device=self.device, weights=weights,
                                            min_face=max(20, int(self.min_face)))
        return self._detector

    # -- stages -------------------------------------------------------------------------------
    def detect_batch(self, frames: Sequence[np.ndarray]) -> List[Detections]:
        """Detect and select faces in RGB uint8 frames; one Detections per frame."""
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
    """Restore faces in single images; options as in :class:`FaceStages`, plus ``aligned``."""

    def __init__(self, model, *, aligned: bool = False, **kwargs):
        super().__init__(model, **kwargs)
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

    Args (besides :class:`FaceStages`'):
        stabilize: track faces and smooth their landmarks (False: raw per-frame alignment).
        lookahead: frames of look-ahead for the smoother (output delay, in frames).
        past: frames of history for the smoother.
        mask_smoothing: average parse masks over time per track.
        detect_every: run the full detector on every this many frames and track faces in
            between (:class:`~gfpgan.inference.keyframes.KeyframeDetector`); 1 detects every
            frame. Detectors without a ``track`` method detect every frame.
        detect_batch_size: frames per detector call.
        collector: optional :class:`gfpgan.inference.collect.FaceCollector` fed with every face.
        overlap: run detection in a thread of its own, ahead of the generator, and paste-back
            on ``paste_workers`` threads, so that the generator (on a GPU: the device) does not
            wait for them. The frames are the same either way.
        paste_workers: paste-back threads when overlapping.
    """

    def __init__(self, model, *, stabilize: bool = True, lookahead: int = 2, past: int = 8,
                 mask_smoothing: bool = True, detect_every: int = 8, detect_batch_size: int = 4,
                 collector=None, overlap: bool = True, paste_workers: int = 2,
                 **kwargs):
        super().__init__(model, **kwargs)
        self.overlap = bool(overlap)
        self.paste_workers = max(1, int(paste_workers))
        self._pool: Optional[ThreadPoolExecutor] = None
        self.stabilize = bool(stabilize)
        self.lookahead = int(lookahead) if stabilize else 0
        self.tracker = IoUTracker()
        self.smoother = LandmarkSmoother(past=past, lookahead=self.lookahead, enabled=stabilize)
        self.mask_smoother = MaskSmoother() if mask_smoothing else None
        if int(detect_every) < 1:
            raise UserError(f"--detect-every {detect_every} must be >= 1.")
        self.detect_every = int(detect_every)
        self._keyframes: Optional[KeyframeDetector] = None
        self.detect_batch_size = max(1, int(detect_batch_size))
        self.collector = collector
        self.used_landmarks: List[tuple] = []  # (frame, track, (5,2)) when record_landmarks
        self.record_landmarks = False

    def reset(self) -> None:
        """Forget all tracks and smoothing state (call between independent videos/segments)."""
        self.tracker = IoUTracker()
        self.smoother = LandmarkSmoother(past=self.smoother.past, lookahead=self.lookahead,
                                         sigma=self.smoother.sigma, enabled=self.smoother.enabled)
        if self.mask_smoother is not None:
            self.mask_smoother = MaskSmoother(alpha=self.mask_smoother.alpha)
        self.used_landmarks = []

    @property
    def keyframes(self) -> KeyframeDetector:
        """The key-frame detector (built with the detector, on first use)."""
        if self._keyframes is None:
            det = self.detector
            self._keyframes = KeyframeDetector(
                self.detect_batch, getattr(det, "track", None),
                lambda d, shape: select_indices(d, shape, self.only, self.min_face),
                self.detect_every)
        return self._keyframes

    def process(self, frames: Iterable[np.ndarray], first_index: int = 0) -> Iterator[np.ndarray]:
        """Restore a stream of RGB uint8 (H, W, 3) frames; yields restored frames in order.

        Output lags the input by ``lookahead`` frames, a detection batch and, with
        ``detect_every`` > 1, up to that many frames (held until the next full detection);
        memory is bounded by a few frames. Frames without faces are yielded as the same array
        object (when ``upscale`` is 1), so they pass through bit-identical.

        Args:
            frames: the frames, in order.
            first_index: the video frame number of the first frame (key frames are counted
                from the video's start, so a segment sees the same schedule as a whole pass).
        """
        self.keyframes.start(first_index)  # builds the detector here, before any thread
        detected = self._detected(frames)
        if not self.overlap:
            yield from self._restored(detected)
        else:
            if self.device.type == "cuda":
                detected = _on_own_stream(detected, self.device)
            self._pool = ThreadPoolExecutor(self.paste_workers, thread_name_prefix="gfpgan-paste")
            try:
                yield from in_order(self._restored(prefetch(detected, 2, "gfpgan-detect")),
                                    window=2 * self.paste_workers)
            finally:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
        if self.collector is not None and hasattr(self.collector, "end_video"):
            self.collector.end_video()

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
            if len(chunk) >= self.detect_batch_size:
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

    def _drain(self, pending, ready_upto: int, final: bool = False) -> Iterator[np.ndarray]:
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
        if self.collector is not None and hasattr(self.collector, "retire"):
            self.collector.retire(live)

    def _restore_group(self, group: List[_Pending]) -> Iterator[np.ndarray]:
        crops, affines, owners, tids = [], [], [], []
        for gi, p in enumerate(group):
            for j, tid in enumerate(p.track_ids.tolist()):
                lm = self.smoother.smoothed(p.index, tid, raw=p.det.landmarks[j])
                if self.record_landmarks:
                    self.used_landmarks.append((p.index, tid, lm.copy()))
                c, a = self.align(p.frame, lm[None])
                crops += c
                affines += a
                owners.append((gi, j))
                tids.append(tid)
        restored = self.restore_batch(crops)
        masks = self.face_masks(restored, tids, self.mask_smoother)
        per_frame: List[List[int]] = [[] for _ in group]
        for k, (gi, j) in enumerate(owners):
            per_frame[gi].append(k)
            if self.collector is not None:
                p = group[gi]
                self.collector.add(frame=p.index, track=tids[k], crop=crops[k],
                                   box=p.det.boxes[j], landmarks=p.det.landmarks[j],
                                   score=float(p.det.scores[j]), affine=affines[k])
        for gi, p in enumerate(group):
            ks = per_frame[gi]
            if not ks and self.upscale == 1:
                yield p.frame
                continue
            args = (p.frame, [restored[k] for k in ks], [affines[k] for k in ks],
                    [masks[k] for k in ks])
            yield self.paste(*args) if self._pool is None else self._pool.submit(self.paste, *args)
