"""The face pipeline: detect, align, restore many faces per forward pass, paste back.

Two front ends share the same stages (:class:`FaceStages`), exposed so a caller can overlap
them in threads:

* :class:`FaceRestorer` restores single images (``restore(img) -> RestoreResult``), including
  already-aligned faces;
* :class:`VideoFaceRestorer` restores a stream of frames (``process(frames) -> iterator``): faces
  of several frames are detected and restored in one batch, tracked across frames, their landmarks
  smoothed per track (a short look-ahead delays the output by ``lookahead`` frames), and frames
  without a face come back as the very same array. Detection runs in a thread of its own, ahead
  of the generator, and paste-back on a small pool (:mod:`gfpgan.inference.job.threads`), with
  every frame still returned in order.

Stages: ``detect_batch`` (detector + face selection), ``align`` (FFHQ 5-point similarity warp at
the model's size), ``restore_batch`` (batched network + strength blend), ``face_masks`` (feather or
ParseNet, smoothed per track) and ``paste`` (inverse affine limited to each face's box).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Union

import cv2
import numpy as np

from gfpgan.errors import UserError
from gfpgan.inference.faces.alignment import estimate_affine, warp_face
from gfpgan.inference.faces.batch import FaceBatchRestorer, crops_to_tensor
from gfpgan.inference.faces.detection import Detections, build_detector
from gfpgan.inference.faces.evidence import detail_beyond_crop, model_trust
from gfpgan.inference.faces.model import load_face_model, resolve_device
from gfpgan.inference.faces.paste import MaskSmoother, ParseMasker, feather_mask, paste_face, scale_affine
from gfpgan.inference.settings import RestorerConfig, batch_faces_for
from gfpgan.inference.timing import NO_TIMER, StageTimer

__all__ = ["RestoreResult", "FaceStages", "FaceRestorer", "select_faces", "select_indices"]


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


def _personalized(model, personal: str, gate_db: float):
    """The base ``model`` (a spec or a module, not changed) with a personal file, gated
    (:func:`gfpgan.personal_file.personal_generator`)."""
    from torch import nn

    from gfpgan.inference.faces.model import build_from_spec
    from gfpgan.personal_file import personal_generator

    if isinstance(model, nn.Module):
        net = model
    elif isinstance(model, (str, os.PathLike)):
        net = build_from_spec(os.fspath(model))
    else:
        raise UserError("--personal applies to a PyTorch generator (a model card, a .safetensors/.pth "
                        "file or a module); drop it or give such a --model.")
    return personal_generator(personal, net, gate_db)


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
        config: a :class:`~gfpgan.inference.settings.RestorerConfig` (device, backend, precision,
            strength, only, min_face, detector, weights, batch_faces, upscale, fixed_noise).
        detector: a detector object (``detect(list of frames)``, optionally ``track``) that
            replaces the one the config names.
        background: "resize" or a callable ``img -> img * upscale`` (e.g. ``BackgroundUpsampler``).
        timer: a :class:`~gfpgan.inference.timing.StageTimer` that sees every stage run.
        **settings: config fields to override, e.g. ``device="cpu"``.
    """

    config_type = RestorerConfig

    def __init__(self, model, config: Optional[RestorerConfig] = None, *,
                 detector: Union[str, object, None] = None,
                 background: Union[str, Callable] = "resize", timer: StageTimer = NO_TIMER,
                 **settings):
        self.config, self._detector = _settings(self.config_type, config, detector, settings)
        self.own_detector = self._detector is not None  # the caller's object, not the config's name
        self.timer = timer
        cfg = self.config
        self.model_spec = model
        self.device = resolve_device(cfg.device)
        if cfg.personal:
            model = _personalized(model, cfg.personal, cfg.personal_gate)
        self.model = load_face_model(model, device=self.device, backend=cfg.backend,
                                     precision=cfg.precision, fixed_noise=cfg.fixed_noise)
        self.size = int(self.model.size)
        self.restorer = FaceBatchRestorer(self.model, strength=cfg.strength,
                                          batch_faces=cfg.batch_faces or batch_faces_for(self.device))
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

    def restore_batch(self, crops: Sequence[np.ndarray],
                      strength: Optional[float] = None) -> List[np.ndarray]:
        """Restore aligned crops, ``batch_faces`` per forward pass; ``strength`` overrides the
        configured one for this call only (the stages stay shareable between threads)."""
        restorer = self.restorer if strength is None else FaceBatchRestorer(
            self.model, batch_faces=self.restorer.batch_faces, strength=strength)
        with self.timer.stage("generator"):
            return restorer.restore(crops)

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

    def trust(self, frame: np.ndarray, affines: Sequence[np.ndarray]) -> List[float]:
        """The weight of the model's output for each face of ``frame`` (``--keep-detail``): 0
        where the face holds detail the model's crop cannot (see :mod:`~.evidence`)."""
        if self.config.keep_detail <= 0:
            return [1.0] * len(affines)
        return [model_trust(detail_beyond_crop(frame, a, self.size), self.config.keep_detail)
                for a in affines]

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
              affines: Sequence[np.ndarray], masks: Optional[Sequence[np.ndarray]] = None,
              trust: Optional[Sequence[float]] = None,
              background: Optional[np.ndarray] = None) -> np.ndarray:
        """Paste restored faces into a new output frame (the input is never modified).

        Args:
            frame: (H, W, 3) uint8 input frame.
            restored: (S, S, 3) uint8 restored crops.
            affines: the frame->crop matrices used to align them (input pixels).
            masks: (S, S) blend masks; feathered square when None.
            trust: each face's weight of the model's output (:meth:`trust`); 1 when None.
            background: the output frame to paste into, (H', W', 3) uint8, modified in place;
                :meth:`background_for` of ``frame`` when None. The faces follow its scale.
        """
        out = self.background_for(frame) if background is None else background
        scale = out.shape[1] / frame.shape[1]
        for i, (face, m) in enumerate(zip(restored, affines)):
            mask = None if masks is None else masks[i]
            w = 1.0 if trust is None else float(trust[i])
            if w <= 0.0:
                continue  # the face keeps its own pixels (resized with the frame)
            if w < 1.0:
                mask = (feather_mask(self.size) if mask is None else mask) * w
            paste_face(out, face, scale_affine(m, scale), mask)
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
        out = self.paste(img, restored, affines, self.face_masks(restored), self.trust(img, affines))
        return RestoreResult(crops, restored, out, det)
