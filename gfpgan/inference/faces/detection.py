"""Face detection with five landmarks: MTCNN (offline default) or RetinaFace.

MTCNN (Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional
Networks", 2016) comes from facenet-pytorch, whose wheel ships its weights, so it works offline.
RetinaFace (Deng et al., CVPR 2020; ResNet-50, the detector GFPGAN uses) comes from facexlib and needs
``detection_Resnet50_Final.pth`` from a path or cache: nothing is downloaded here.

Both detectors take lists of RGB uint8 frames and return one :class:`Detections` per frame, with the
landmarks ordered left eye, right eye, nose, left mouth corner, right mouth corner (left = smaller x).
Large frames are detected on a downscaled copy (``max_side``) and mapped back, which keeps detection
cost bounded at 1080p and beyond.

Both also ``track`` known faces into a new frame far more cheaply than a detection (MTCNN: its
O-Net alone on each predicted box; RetinaFace: detection in a window around it), which
:mod:`gfpgan.inference.tracks.keyframes` uses between key frames.
"""

import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import cv2
import numpy as np
import torch

from gfpgan.errors import UserError

RETINAFACE_FILE = "detection_Resnet50_Final.pth"
RETINAFACE_URL = ("https://github.com/xinntao/facexlib/releases/download/v0.1.0/"
                  "detection_Resnet50_Final.pth")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes.

    Args:
        a: (N, 4) x1, y1, x2, y2.
        b: (M, 4) x1, y1, x2, y2.

    Returns:
        (N, M) float64 IoU in [0, 1].
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


@dataclass
class Detections:
    """Faces found in one frame, sorted by score (highest first).

    Attributes:
        boxes: (N, 4) float32 x1, y1, x2, y2 in frame pixels.
        scores: (N,) float32 confidences in [0, 1].
        landmarks: (N, 5, 2) float32 five-point landmarks in frame pixels.
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, idx) -> "Detections":
        """A copy with only the faces at ``idx`` (indices or a boolean mask)."""
        return Detections(self.boxes[idx], self.scores[idx], self.landmarks[idx])

    def filter(self, min_face: float = 0.0, threshold: float = 0.0) -> "Detections":
        """Drop faces whose eye distance is below ``min_face`` px or whose score is below ``threshold``."""
        eye_dist = np.linalg.norm(self.landmarks[:, 0] - self.landmarks[:, 1], axis=1)
        keep = (eye_dist >= min_face) & (self.scores >= threshold)
        return self.select(np.nonzero(keep)[0])


@dataclass
class Tracked:
    """Known faces followed into a new frame (:meth:`MTCNNDetector.track`).

    Attributes:
        det: one entry per input box, in the input's order (not sorted by score).
        found: (N,) bool, False where the face was lost.
    """

    det: Detections
    found: np.ndarray


def _downscale(images: Sequence[np.ndarray], max_side: Optional[int]):
    """Resize frames so that their longer side is at most ``max_side``; return frames and scales."""
    out, scales = [], []
    for img in images:
        h, w = img.shape[:2]
        s = 1.0 if not max_side or max(h, w) <= max_side else max_side / max(h, w)
        out.append(img if s == 1.0 else cv2.resize(img, (round(w * s), round(h * s)),
                                                   interpolation=cv2.INTER_AREA))
        scales.append(s)
    return out, scales


def _sorted(boxes, scores, landmarks, scale: float) -> Detections:
    order = np.argsort(-scores, kind="stable")
    return Detections((boxes[order] / scale).astype(np.float32), scores[order].astype(np.float32),
                      (landmarks[order] / scale).astype(np.float32))


class MTCNNDetector:
    """facenet-pytorch's MTCNN, batched over frames of the same size.

    Args:
        device: torch device for the three cascade networks.
        min_face: smallest face side (pixels, in the detection image) the image pyramid looks for.
        threshold: minimum final confidence kept.
        max_side: frames larger than this are detected on a downscaled copy (None: never).
    """

    def __init__(self, device="cpu", min_face: int = 20, threshold: float = 0.9,
                 max_side: Optional[int] = 1280):
        from facenet_pytorch import MTCNN  # heavy import only when a detector is built

        self.net = MTCNN(keep_all=True, device=torch.device(device), min_face_size=min_face,
                         post_process=False, select_largest=False)
        self.threshold = threshold
        self.max_side = max_side

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray]) -> List[Detections]:
        """Detect faces in RGB uint8 (H, W, 3) frames; returns one Detections per frame."""
        small, scales = _downscale(images, self.max_side)
        results: List[Optional[Detections]] = [None] * len(small)
        # smaller than the pyramid's first window (facenet-pytorch would fail in torch.cat)
        tiny = {i for i, im in enumerate(small) if min(im.shape[:2]) < self.net.min_face_size}
        for i in tiny:
            results[i] = Detections()
        todo = [i for i in range(len(small)) if i not in tiny]
        same = len({small[i].shape for i in todo}) == 1
        groups = ([todo] if same else [[i] for i in todo]) if todo else []
        for idx in groups:
            batch = np.stack([small[i] for i in idx]) if same else [small[idx[0]]]
            boxes, probs, points = self.net.detect(batch, landmarks=True)
            for j, i in enumerate(idx):
                if boxes[j] is None:
                    results[i] = Detections()
                    continue
                det = _sorted(np.asarray(boxes[j], np.float64), np.asarray(probs[j], np.float64),
                              np.asarray(points[j], np.float64), scales[i])
                results[i] = det.filter(threshold=self.threshold)
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def track(self, image: np.ndarray, boxes: np.ndarray, passes: int = 3) -> Tracked:
        """Follow known faces into a new frame with MTCNN's last stage alone.

        Each box (the face's predicted position) is squared, cropped with zero padding, resized
        to 48x48 and given to the O-Net, whose box regression re-centres it; ``passes`` rounds
        let the box settle, and the last one gives the landmarks and the score. A face the
        O-Net scores below the threshold is lost. Costs about 2 ms per face (three rounds, one
        core) instead of the whole image pyramid.

        Args:
            image: RGB uint8 (H, W, 3) frame.
            boxes: (N, 4) x1, y1, x2, y2 predicted boxes in frame pixels.
            passes: O-Net rounds.
        Returns:
            A :class:`Tracked` in the order of ``boxes``.
        """
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return Tracked(Detections(), np.zeros(0, bool))
        onet, dev = self.net.onet, self.net.device
        for _ in range(passes):
            crops, origins = [], []
            for b in boxes:
                side = max(2, int(round(max(b[2] - b[0], b[3] - b[1]))))
                x0 = int(np.floor((b[0] + b[2] - side) / 2))
                y0 = int(np.floor((b[1] + b[3] - side) / 2))
                crops.append(cv2.resize(_crop_padded(image, x0, y0, side), (48, 48),
                                        interpolation=cv2.INTER_AREA))
                origins.append((x0, y0, side))
            x = torch.from_numpy(np.stack(crops)).to(dev).permute(0, 3, 1, 2).float()
            reg, pts, prob = onet((x - 127.5) * 0.0078125)
            reg, pts, prob = (t.float().cpu().numpy().astype(np.float64) for t in (reg, pts, prob))
            o = np.asarray(origins, np.float64)  # (N, 3) x0, y0, side
            xy = np.concatenate([o[:, :2], o[:, :2] + o[:, 2:]], 1)
            boxes = xy + reg * o[:, 2:]
        landmarks = np.stack([o[:, :1] + pts[:, :5] * o[:, 2:], o[:, 1:2] + pts[:, 5:] * o[:, 2:]],
                             -1)
        scores = prob[:, 1]
        det = Detections(boxes.astype(np.float32), scores.astype(np.float32),
                         landmarks.astype(np.float32))
        return Tracked(det, scores >= self.threshold)


def _crop_padded(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """The square [x0, x0+side) x [y0, y0+side) of ``image``, zeros outside it."""
    h, w = image.shape[:2]
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    if xa == x0 and ya == y0 and xb == x0 + side and yb == y0 + side:
        return image[ya:yb, xa:xb]
    out = np.zeros((side, side, 3), image.dtype)
    if xb > xa and yb > ya:
        out[ya - y0:yb - y0, xa - x0:xb - x0] = image[ya:yb, xa:xb]
    return out


class RetinaFaceDetector:
    """facexlib's RetinaFace-ResNet50 loaded from a local weights file.

    Args:
        weights: path to ``detection_Resnet50_Final.pth``.
        device: torch device.
        threshold: minimum confidence kept.
        max_side: frames larger than this are detected on a downscaled copy (None: never).
    """

    def __init__(self, weights: str, device="cpu", threshold: float = 0.97,
                 max_side: Optional[int] = 1280):
        if not weights or not os.path.isfile(weights):
            raise UserError(
                f"RetinaFace weights {weights or RETINAFACE_FILE!r} not found; download "
                f"{RETINAFACE_FILE} from {RETINAFACE_URL} and pass its path, or use --detector mtcnn.")
        from facexlib.detection.retinaface import RetinaFace

        dev = torch.device(device)
        net = RetinaFace(network_name="resnet50", half=False, device=dev)
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt or not a checkpoint
            raise UserError(f"cannot read RetinaFace weights {weights!r} ({exc.__class__.__name__}); "
                            f"download {RETINAFACE_FILE} again from {RETINAFACE_URL}.") from None
        state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError:
            raise UserError(f"{weights!r} is not a RetinaFace-ResNet50 checkpoint; download "
                            f"{RETINAFACE_FILE} from {RETINAFACE_URL}.") from None
        self.net = net.to(dev).eval()
        self.threshold = threshold
        self.max_side = max_side

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray]) -> List[Detections]:
        """Detect faces in RGB uint8 (H, W, 3) frames; returns one Detections per frame."""
        small, scales = _downscale(images, self.max_side)
        results = []
        for img, s in zip(small, scales):
            out = self.net.detect_faces(np.ascontiguousarray(img[:, :, ::-1]),
                                        conf_threshold=self.threshold)
            if len(out) == 0:
                results.append(Detections())
                continue
            out = np.asarray(out, np.float64)
            results.append(_sorted(out[:, :4], out[:, 4], out[:, 5:15].reshape(-1, 5, 2), s))
        return results

    def track(self, image: np.ndarray, boxes: np.ndarray) -> Tracked:
        """Follow known faces into a new frame: detection inside a window twice each box's size.

        Args:
            image: RGB uint8 (H, W, 3) frame.
            boxes: (N, 4) predicted boxes in frame pixels.
        Returns:
            A :class:`Tracked` in the order of ``boxes`` (the detection overlapping each box
            most, IoU >= 0.3; lost otherwise).
        """
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        out = Detections(boxes.astype(np.float32), np.zeros(len(boxes), np.float32),
                         np.zeros((len(boxes), 5, 2), np.float32))
        found = np.zeros(len(boxes), bool)
        for i, b in enumerate(boxes):
            side = max(16, int(round(2 * max(b[2] - b[0], b[3] - b[1]))))
            x0, y0 = int(round((b[0] + b[2] - side) / 2)), int(round((b[1] + b[3] - side) / 2))
            det = self.detect([_crop_padded(image, x0, y0, side)])[0]
            if len(det) == 0:
                continue
            shift = np.array([x0, y0], np.float32)
            cand = det.boxes + np.tile(shift, 2)
            iou = box_iou(cand, b[None])[:, 0]
            j = int(np.argmax(iou))
            if iou[j] >= 0.3:
                found[i] = True
                out.boxes[i], out.scores[i] = cand[j], det.scores[j]
                out.landmarks[i] = det.landmarks[j] + shift
        return Tracked(out, found)


def build_detector(name: str = "mtcnn", device="cpu", weights: Optional[str] = None,
                   min_face: int = 20, threshold: Optional[float] = None,
                   max_side: Optional[int] = 1280):
    """Build a face detector by name.

    Args:
        name: "mtcnn" (offline default) or "retinaface" (needs ``weights``).
        device: torch device.
        weights: RetinaFace weights path (ignored by MTCNN, whose weights ship in its wheel).
        min_face: MTCNN's smallest face side in pixels.
        threshold: minimum confidence (default 0.9 for MTCNN, 0.97 for RetinaFace).
        max_side: frames larger than this are detected on a downscaled copy.
    Returns:
        An object with ``detect(images) -> list[Detections]``.
    """
    if name == "mtcnn":
        return MTCNNDetector(device, min_face, 0.9 if threshold is None else threshold, max_side)
    if name == "retinaface":
        return RetinaFaceDetector(weights, device, 0.97 if threshold is None else threshold, max_side)
    raise UserError(f"unknown face detector {name!r}; use 'mtcnn' or 'retinaface'.")
