"""Face alignment to the FFHQ 5-point template, and its inverse.

GFPGAN (and every FFHQ-trained face model) expects faces warped by a similarity transform that maps
five landmarks (eye centres, nose tip, mouth corners) onto a fixed template. The reference uses
OpenCV's LMEDS estimator, which samples point subsets at random: the same landmarks can give a
slightly different crop on each call, a source of jitter in video. Here the transform is the
closed-form least-squares similarity (Umeyama, 1991), deterministic and smooth in its input.
"""

from typing import Tuple

import cv2
import numpy as np

# Left eye, right eye, nose tip, left mouth corner, right mouth corner ("left" = smaller x in the
# image), in pixels of a 512x512 FFHQ-aligned crop (the template facexlib and GFPGAN use).
FFHQ_TEMPLATE_512 = np.array(
    [[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
     [201.26117, 371.41043], [313.08905, 371.15118]], dtype=np.float64)

# The grey the reference fills outside the image with; a neutral value keeps the network calm.
BORDER_VALUE = (135, 133, 132)


def face_template(size: int = 512) -> np.ndarray:
    """The 5-point template scaled to a ``size`` x ``size`` crop. Returns (5, 2) float64."""
    return FFHQ_TEMPLATE_512 * (size / 512.0)


def similarity_lstsq(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) mapping src to dst.

    Args:
        src: (N, 2) points, N >= 2.
        dst: (N, 2) points.
    Returns:
        (2, 3) float64 matrix M with dst ~= M[:, :2] @ src + M[:, 2].
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s ** 2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError("landmarks are degenerate (all points coincide)")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / var_s
    m = np.empty((2, 3), np.float64)
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def estimate_affine(landmarks5: np.ndarray, size: int = 512) -> np.ndarray:
    """The image -> crop transform that aligns ``landmarks5`` (5, 2) to the template at ``size``."""
    return similarity_lstsq(np.asarray(landmarks5).reshape(5, 2), face_template(size))


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix, as a (2, 3) matrix."""
    return cv2.invertAffineTransform(np.asarray(m, np.float64))


def transform_points(pts: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (N, 2) points."""
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    return pts @ np.asarray(m)[:, :2].T + np.asarray(m)[:, 2]


def warp_face(img: np.ndarray, m: np.ndarray, size: int, border: str = "constant") -> np.ndarray:
    """Warp an image with the image -> crop matrix ``m`` into a ``size`` x ``size`` aligned face.

    Args:
        img: (H, W, 3) uint8 image.
        m: (2, 3) image -> crop matrix from :func:`estimate_affine`.
        size: output side in pixels.
        border: "constant" (the reference's grey) or "reflect".
    Returns:
        (size, size, 3) uint8 crop.
    """
    mode = cv2.BORDER_REFLECT101 if border == "reflect" else cv2.BORDER_CONSTANT
    return cv2.warpAffine(img, np.asarray(m, np.float64), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=mode, borderValue=BORDER_VALUE)


def crop_box(m: np.ndarray, size: int) -> Tuple[float, float, float, float]:
    """The image-space bounding box (x1, y1, x2, y2) of the crop square of an image -> crop matrix."""
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    pts = transform_points(corners, invert_affine(m))
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())
