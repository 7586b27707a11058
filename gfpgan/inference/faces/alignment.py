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

from gfpgan.motion import invert_affine, similarity_lstsq, transform_points

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


def estimate_affine(landmarks5: np.ndarray, size: int = 512) -> np.ndarray:
    """The image -> crop transform that aligns ``landmarks5`` (5, 2) to the template at ``size``."""
    return similarity_lstsq(np.asarray(landmarks5).reshape(5, 2), face_template(size))


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
