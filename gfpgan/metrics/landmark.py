"""LMD: landmark distance between restored and reference faces (GFP-GAN paper, Sec. 4).

Landmarks are detected independently on the restored image and on its ground truth with the
project's detector (:mod:`gfpgan.inference.faces.detection`, five points: eyes, nose, mouth corners;
MTCNN works offline), and LMD is the mean Euclidean distance between corresponding points, in
pixels of the evaluated image. When no face is found in either image the value is NaN, which
the evaluation reports as a count and leaves out of the mean.
"""

from typing import Optional

import numpy as np

from gfpgan.registry import METRIC_REGISTRY


def landmark_distance(lm1: np.ndarray, lm2: np.ndarray) -> float:
    """Mean L2 distance between corresponding landmarks.

    Args:
        lm1, lm2: (K, 2) landmark coordinates (x, y) in pixels, same order.
    """
    lm1, lm2 = np.asarray(lm1, np.float64), np.asarray(lm2, np.float64)
    if lm1.shape != lm2.shape or lm1.ndim != 2 or lm1.shape[1] != 2:
        raise ValueError(f"landmarks must both be (K, 2), got {lm1.shape} and {lm2.shape}")
    return float(np.linalg.norm(lm1 - lm2, axis=1).mean())


def main_face(dets, shape) -> Optional[np.ndarray]:
    """Landmarks (5, 2) of the face nearest the image centre among detections, or None."""
    if dets is None or len(dets) == 0:
        return None
    centre = np.array([shape[1], shape[0]], np.float64) / 2
    box_centres = (dets.boxes[:, :2] + dets.boxes[:, 2:]) / 2
    return np.asarray(dets.landmarks[int(np.argmin(np.linalg.norm(box_centres - centre, axis=1)))])


@METRIC_REGISTRY.register()
class LandmarkMetric:
    """LMD between restored and reference faces (lower is better).

    Args:
        detector: "mtcnn" (offline) or "retinaface", or a ready object with ``detect(images)``.
        device: Where the detector runs.
        weights: RetinaFace weights path (MTCNN ships its own).
        min_face: Smallest face side the detector looks for, in pixels.
    """

    def __init__(self, detector="mtcnn", device: str = "cpu", weights: Optional[str] = None,
                 min_face: int = 20):
        if isinstance(detector, str):
            from gfpgan.inference.faces.detection import build_detector

            detector = build_detector(detector, device=device, weights=weights, min_face=min_face,
                                      max_side=None)
        self.detector = detector

    def landmarks(self, imgs):
        """(5, 2) landmarks (or None) of the central face of each (H, W, 3) RGB uint8 image."""
        return [main_face(d, im.shape) for d, im in zip(self.detector.detect(list(imgs)), imgs)]

    def __call__(self, img: np.ndarray, ref: np.ndarray) -> float:
        """LMD of one restored image against its reference; NaN when a face is missing."""
        lm_img, lm_ref = self.landmarks([img, ref])
        if lm_img is None or lm_ref is None:
            return float("nan")
        return landmark_distance(lm_img, lm_ref)
