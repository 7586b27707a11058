"""Similarity motion between consecutive aligned face crops: relative affines, warps and flows.

Conventions (one place for the temporal module, its training clips, loss and metrics):

* An *alignment* ``A`` is a 2x3 affine in OpenCV's ``warpAffine`` sense: it maps a pixel of the
  source frame to a pixel of the crop (pixel centres at integer coordinates).
* The *relative transform* between consecutive crops is ``R_t = A_t A_{t-1}^-1`` (2x3): it maps a
  pixel of crop t-1 to the pixel of crop t that shows the same point of the face. With rigid
  motion, ``cv2.warpAffine(crop_{t-1}, R_t, size)`` reproduces crop t.
* Where the alignments are known (synthetic training clips), :func:`relative_affine` gives ``R_t``
  exactly; where only the crops' landmarks are (a video), :func:`landmark_motion` fits it to the
  landmarks of the two crops. Both the temporal module's training and its inference take their
  motion from here.
* :func:`warp_previous` moves a (B, C, h, w) map of frame t-1 into frame t with ``R_t`` at any
  resolution h (the transform is given in pixels of a ``size`` x ``size`` crop), and says which
  pixels of frame t saw frame t-1 (inside the previous crop).

Importing this module is cheap: numpy and torch only.
"""

from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch.nn import functional as F


def _homogeneous(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    bottom = np.zeros(a.shape[:-2] + (1, 3))
    bottom[..., 0, 2] = 1.0
    return np.concatenate([a, bottom], axis=-2)


def invert_affine(a: np.ndarray) -> np.ndarray:
    """Inverse of (..., 2, 3) affines, float64 (..., 2, 3)."""
    return np.linalg.inv(_homogeneous(a))[..., :2, :]


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``outer o inner`` of (..., 2, 3) affines (apply ``inner`` first), float64 (..., 2, 3)."""
    return (_homogeneous(outer) @ _homogeneous(inner))[..., :2, :]


def relative_affine(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """The transform from crop t-1 to crop t given both alignments.

    Args:
        prev, cur: (..., 2, 3) alignments (frame pixels -> crop pixels) of frames t-1 and t.
    Returns:
        float32 (..., 2, 3) ``cur o prev^-1`` (crop t-1 pixels -> crop t pixels).
    """
    return compose_affine(cur, invert_affine(prev)).astype(np.float32)


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


def transform_points(pts: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (N, 2) points."""
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    return pts @ np.asarray(m)[:, :2].T + np.asarray(m)[:, 2]


def landmark_motion(prev_points: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The transform from crop t-1 to crop t fitted to the face's landmarks in both crops.

    What a video gives: the (5, 2) landmarks each crop was aligned with, in that crop's pixels.
    Each crop is aligned on its own face, so this is near the identity (what remains is the
    change of the landmarks' fit residual), unlike ``A_t A_{t-1}^-1`` of the two frame -> crop
    matrices, which moves the *background* by the opposite of the face's motion.

    Returns:
        float32 (2, 3), crop t-1 pixels -> crop t pixels.
    """
    return similarity_lstsq(prev_points, points).astype(np.float32)


def identity_affine(batch: int = 0) -> np.ndarray:
    """float32 identity (2, 3), or (batch, 2, 3) when ``batch`` > 0."""
    eye = np.eye(2, 3, dtype=np.float32)
    return np.repeat(eye[None], batch, 0) if batch else eye


def similarity(angle_deg: float, scale: float, tx: float, ty: float, size: int) -> np.ndarray:
    """A similarity about the centre of a ``size`` crop: rotate/scale, then shift by (tx, ty) pixels.

    Returns:
        float64 (2, 3) affine in pixel coordinates.
    """
    c = (size - 1) / 2.0
    th = np.deg2rad(angle_deg)
    lin = scale * np.array([[np.cos(th), np.sin(th)], [-np.sin(th), np.cos(th)]])
    t = np.array([c, c]) - lin @ np.array([c, c]) + np.array([tx, ty])
    return np.concatenate([lin, t[:, None]], axis=1)


def affine_to_theta(rel: torch.Tensor, size: int) -> torch.Tensor:
    """``affine_grid``'s theta that samples frame t-1 at the points of frame t.

    Args:
        rel: (B, 2, 3) relative transforms in pixels of a ``size`` crop (crop t-1 -> crop t).
        size: the crop side the transforms are expressed in.
    Returns:
        (B, 2, 3) theta in normalised coordinates (``align_corners=False``), valid at any resolution.
    """
    b = rel.shape[0]
    # the inverse in closed form (no linalg.inv, which ONNX has no operator for)
    a, bb, c, d = rel[:, 0, 0], rel[:, 0, 1], rel[:, 1, 0], rel[:, 1, 1]
    det = a * d - bb * c
    lin = torch.stack([torch.stack([d, -bb], -1), torch.stack([-c, a], -1)], 1) / det.view(b, 1, 1)
    shift = -(lin @ rel[:, :, 2:])
    bottom = rel.new_tensor([0.0, 0.0, 1.0]).expand(b, 1, 3)
    inv = torch.cat([torch.cat([lin, shift], 2), bottom], 1)
    # normalised u = (2x + 1) / S - 1  <=>  x = ((u + 1) S - 1) / 2
    n = rel.new_tensor([[2.0 / size, 0.0, 1.0 / size - 1.0], [0.0, 2.0 / size, 1.0 / size - 1.0],
                        [0.0, 0.0, 1.0]])
    n_inv = rel.new_tensor([[size / 2.0, 0.0, (size - 1) / 2.0], [0.0, size / 2.0, (size - 1) / 2.0],
                            [0.0, 0.0, 1.0]])
    return (n @ inv @ n_inv)[:, :2, :]


def warp_previous(prev: torch.Tensor, rel: torch.Tensor, size: int, mode: str = "bilinear",
                  coverage: bool = True) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Move a map of frame t-1 into frame t's crop.

    Args:
        prev: (B, C, h, w) features or image of frame t-1 (any resolution of the crop).
        rel: (B, 2, 3) relative transforms (crop t-1 -> crop t) in pixels of a ``size`` crop.
        size: the crop side of ``rel``.
        mode: ``grid_sample`` interpolation.
        coverage: also compute the coverage (else None is returned in its place).
    Returns:
        (warped (B, C, h, w), coverage (B, 1, h, w) in [0, 1]: 1 where frame t's pixel lies
        inside crop t-1, falling to 0 across the border; zeros padding outside).
    """
    # the sampling grid is computed in fp32 (a bf16 translation of tens of pixels is off by a
    # quarter of one) and only then cast to the features' dtype
    theta = affine_to_theta(rel.float(), size)
    grid = F.affine_grid(theta, list(prev.shape), align_corners=False).to(prev.dtype)
    warped = F.grid_sample(prev, grid, mode=mode, padding_mode="zeros", align_corners=False)
    if not coverage:
        return warped, None
    ones = prev.new_ones(prev.shape[0], 1, prev.shape[2], prev.shape[3])
    coverage = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped, coverage


def valid_mask(coverage: torch.Tensor, threshold: float = 0.999) -> torch.Tensor:
    """Bool mask of the pixels fully covered by the previous crop (see :func:`warp_previous`)."""
    return coverage >= threshold


def affine_flow(rel: Union[np.ndarray, torch.Tensor], height: int, width: int
                ) -> Tuple[np.ndarray, np.ndarray]:
    """Exact flows of a relative transform, in the convention of :mod:`gfpgan.metrics.temporal`.

    Args:
        rel: (2, 3) transform crop t-1 -> crop t, in pixels of this (height, width) frame.
        height, width: frame size.
    Returns:
        (flow_bw, flow_fw), each float32 (H, W, 2) (dx, dy): ``cur(x) ~ prev(x + flow_bw(x))``
        and ``prev(x) ~ cur(x + flow_fw(x))``.
    """
    rel = np.asarray(rel, np.float64)
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pts = np.stack([gx, gy, np.ones_like(gx)], -1)  # (H, W, 3)
    back = pts @ invert_affine(rel).T
    fwd = pts @ rel.T
    base = pts[..., :2]
    return (back - base).astype(np.float32), (fwd - base).astype(np.float32)
