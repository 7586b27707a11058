"""What a face in its source holds compared with the model's crop: the evidence that decides how far
the model is trusted with it, and whether it can teach the model (a personalization target).

* :func:`source_scale`: source pixels per crop pixel of an alignment (> 1: the face is larger in
  its frame than the model's crop, so the crop was made by shrinking it).
* :func:`detail_beyond_crop`: how much of the face the crop's resolution cannot hold: the PSNR (dB)
  between the face at its source resolution and the same face shrunk to the crop and grown back.
  A face no larger than the crop, or a large but blurred one, loses nothing (high dB): the model
  can only add to it. A large sharp face loses its fine detail (low dB), which the model's output,
  pasted back at the crop's resolution, would throw away.
* :func:`model_trust`: the weight of the model's output in the paste, from that figure: 1 above
  ``keep_detail + 3`` dB, 0 below ``keep_detail - 3`` dB (the face keeps its own pixels), linear
  between. ``keep_detail`` is ``--keep-detail`` (0: always trust the model).
* :func:`sharpness` and :func:`frontal`: the figures a personalization target is ranked by.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from gfpgan.inference.faces.alignment import warp_face

__all__ = ["source_scale", "detail_beyond_crop", "model_trust", "sharpness", "frontal", "RAMP_DB"]

RAMP_DB = 3.0  # half-width of the trust ramp around --keep-detail
_MAX_DB = 99.0  # what "nothing lost" is reported as


def source_scale(affine: np.ndarray) -> float:
    """Source pixels per crop pixel of a frame -> crop similarity ``affine`` (2, 3)."""
    return 1.0 / math.sqrt(abs(float(np.linalg.det(np.asarray(affine, np.float64)[:, :2]))))


def detail_beyond_crop(frame: np.ndarray, affine: np.ndarray, size: int) -> float:
    """PSNR (dB) between the face at source resolution and the face through the ``size`` crop.

    Only the central half of the crop (the face, not its surroundings) is compared. A face no
    larger than the crop gives :data:`_MAX_DB`.
    """
    scale = source_scale(affine)
    if scale <= 1.0:
        return _MAX_DB
    big = int(round(size * scale))
    hr_affine = np.asarray(affine, np.float64) * (big / size)
    hr = warp_face(frame, hr_affine, big).astype(np.float32)
    lr = cv2.resize(hr, (size, size), interpolation=cv2.INTER_AREA)
    up = cv2.resize(lr, (big, big), interpolation=cv2.INTER_CUBIC)
    q = big // 4
    mse = float(np.mean((hr[q:big - q, q:big - q] - up[q:big - q, q:big - q]) ** 2))
    return _MAX_DB if mse <= 1e-10 else min(_MAX_DB, 10.0 * math.log10(255.0 ** 2 / mse))


def model_trust(detail_db: float, keep_detail: float) -> float:
    """The weight of the model's output for a face whose crop loses ``detail_db`` (see above)."""
    if keep_detail <= 0:
        return 1.0
    return float(np.clip((detail_db - (keep_detail - RAMP_DB)) / (2 * RAMP_DB), 0.0, 1.0))


def sharpness(img: np.ndarray) -> float:
    """Variance of the Laplacian of an RGB uint8 image's gray version (higher = sharper)."""
    gray = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def frontal(landmarks: np.ndarray) -> float:
    """How frontal a face is from its 5 landmarks, in [0, 1] (1: the nose midway between the eyes
    and the eye line level)."""
    lm = np.asarray(landmarks, np.float64).reshape(5, 2)
    eye_l, eye_r, nose = lm[0], lm[1], lm[2]
    span = np.linalg.norm(eye_r - eye_l)
    if span < 1e-6:
        return 0.0
    offset = abs(np.dot(nose - (eye_l + eye_r) / 2, (eye_r - eye_l) / span)) / span  # 0: centred
    roll = abs(math.atan2(eye_r[1] - eye_l[1], eye_r[0] - eye_l[0]))
    return float(max(0.0, 1.0 - 2.0 * offset) * max(0.0, math.cos(roll)))
