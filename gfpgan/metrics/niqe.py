"""NIQE: the Natural Image Quality Evaluator (Mittal, Soundararajan and Bovik, IEEE SPL 2013).

A no-reference score (lower is better): the distance between a multivariate Gaussian fitted to
natural-scene-statistics features of the image's 96x96 blocks (at full and half scale) and the
Gaussian of pristine images. The pristine model is the MATLAB release's, as shipped by BasicSR in
``niqe_pris_params.npz`` (found inside the installed ``basicsr`` package without importing it,
or given as a path). Conventions follow BasicSR's ``calculate_niqe``: Y channel, rounded, blocks
that do not fit are dropped, MATLAB bicubic antialiased halving for the second scale.

This implementation is vectorised over blocks (no Python loop per block), so it is independent of
BasicSR's loop-based code, which the tests use as the check.
"""

import importlib.util
import math
import os
from typing import Optional

import numpy as np
from scipy.ndimage import convolve
from scipy.special import gamma

from gfpgan.errors import UserError
from gfpgan.metrics.common import MissingWeightsError, crop, rgb_to_y
from gfpgan.registry import METRIC_REGISTRY

_GAM = np.arange(0.2, 10.001, 0.001)
_R_GAM = gamma(2 / _GAM) ** 2 / (gamma(1 / _GAM) * gamma(3 / _GAM))


def _matlab_cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return ((1.5 * ax ** 3 - 2.5 * ax ** 2 + 1) * (ax <= 1)
            + (-0.5 * ax ** 3 + 2.5 * ax ** 2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def _resize_matrix(n_in: int, scale: float) -> np.ndarray:
    """(n_out, n_in) matrix of MATLAB's antialiased bicubic ``imresize`` along one axis."""
    n_out = math.ceil(n_in * scale)
    width = 4.0 / scale if scale < 1 else 4.0
    u = np.arange(1, n_out + 1) / scale + 0.5 * (1 - 1 / scale)
    taps = np.floor(u - width / 2)[:, None] + np.arange(math.ceil(width) + 2)[None]
    dist = u[:, None] - taps
    w = scale * _matlab_cubic(dist * scale) if scale < 1 else _matlab_cubic(dist)
    w = w / w.sum(1, keepdims=True)
    # symmetric boundary (edge sample repeated), on 1-based indices as MATLAB does
    idx = taps.astype(np.int64)
    idx = np.where(idx < 1, -idx, np.where(idx > n_in, 2 * n_in - idx, idx - 1))
    mat = np.zeros((n_out, n_in))
    np.add.at(mat, (np.repeat(np.arange(n_out), idx.shape[1]), idx.ravel()), w.ravel())
    return mat


def imresize_matlab(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB-compatible bicubic resize (antialiased when shrinking) of a 2-D float array."""
    return _resize_matrix(img.shape[0], scale) @ img @ _resize_matrix(img.shape[1], scale).T


def _aggd(x: np.ndarray):
    """Asymmetric generalised Gaussian fit per row of ``x`` (n, m) -> alpha, beta_l, beta_r (n,)."""
    neg, pos = x < 0, x > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.sqrt((np.where(neg, x, 0) ** 2).sum(1) / neg.sum(1))
        right = np.sqrt((np.where(pos, x, 0) ** 2).sum(1) / pos.sum(1))
        g = left / right
        r = np.mean(np.abs(x), 1) ** 2 / np.mean(x ** 2, 1)
        rnorm = r * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
    # nan rows give argmin 0 here; their betas stay nan and the row is dropped like in MATLAB
    alpha = _GAM[np.argmin((_R_GAM[None] - rnorm[:, None]) ** 2, axis=1)]
    k = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left * k, right * k


def _block_features(blocks: np.ndarray) -> np.ndarray:
    """18 NSS features per block: (n, h, w) normalised blocks -> (n, 18)."""
    n = blocks.shape[0]
    alpha, bl, br = _aggd(blocks.reshape(n, -1))
    feats = [alpha, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        # products with the block rolled by one pixel (wrapping inside the block, as the reference)
        prod = (blocks * np.roll(blocks, shift, axis=(1, 2))).reshape(n, -1)
        a, l_, r_ = _aggd(prod)
        feats += [a, (r_ - l_) * gamma(2 / a) / gamma(1 / a), l_, r_]
    return np.stack(feats, 1)


def _normalise(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    mu = convolve(img, window, mode="nearest")
    sigma = np.sqrt(np.abs(convolve(img * img, window, mode="nearest") - mu * mu))
    return (img - mu) / (sigma + 1)


def _blocks(img: np.ndarray, bh: int, bw: int, nh: int, nw: int) -> np.ndarray:
    img = img[:nh * bh, :nw * bw]
    return img.reshape(nh, bh, nw, bw).transpose(0, 2, 1, 3).reshape(nh * nw, bh, bw)


def niqe_gray(img: np.ndarray, mu_pris: np.ndarray, cov_pris: np.ndarray, window: np.ndarray,
              block: int = 96) -> float:
    """NIQE of a 2-D float image on the 0-255 scale (at least one ``block`` x ``block`` block)."""
    h, w = img.shape
    nh, nw = h // block, w // block
    if nh == 0 or nw == 0:
        raise UserError(f"NIQE needs images of at least {block}x{block} pixels, got {h}x{w}; disable "
                        f"metrics.niqe for smaller faces")
    img = img[:nh * block, :nw * block].astype(np.float64)
    feats = [_block_features(_blocks(_normalise(img, window), block, block, nh, nw))]
    half = imresize_matlab(img / 255.0, 0.5) * 255.0
    feats.append(_block_features(_blocks(_normalise(half, window), block // 2, block // 2, nh, nw)))
    dist = np.concatenate(feats, 1)
    mu = np.nanmean(dist, 0)
    cov = np.cov(dist[~np.isnan(dist).any(1)], rowvar=False)
    diff = (mu_pris - mu).reshape(1, -1)
    return float(np.sqrt((diff @ np.linalg.pinv((cov_pris + cov) / 2) @ diff.T).squeeze()))


def default_params_path() -> Optional[str]:
    """``niqe_pris_params.npz`` inside the installed basicsr package (located, not imported)."""
    spec = importlib.util.find_spec("basicsr")
    for root in (spec.submodule_search_locations or []) if spec else []:
        cand = os.path.join(root, "metrics", "niqe_pris_params.npz")
        if os.path.isfile(cand):
            return cand
    return None


@METRIC_REGISTRY.register()
class NIQE:
    """NIQE of RGB images (no reference needed); lower is better.

    Args:
        crop_border: Pixels removed on each side first.
        convert_to: "y" (BT.601 luma, the usual convention) or "gray" (0.299/0.587/0.114).
        params_path: ``niqe_pris_params.npz``; default: the copy inside the basicsr package.
    """

    def __init__(self, crop_border: int = 0, convert_to: str = "y", params_path: Optional[str] = None):
        path = params_path or default_params_path()
        if not path or not os.path.isfile(path):
            raise MissingWeightsError(
                f"NIQE skipped: parameter file {params_path or 'niqe_pris_params.npz'} is missing; it ships "
                "with basicsr (pip install basicsr-fixed) or set metrics.niqe.params_path")
        params = np.load(path)
        self.mu, self.cov = params["mu_pris_param"], params["cov_pris_param"]
        self.window = params["gaussian_window"]
        self.crop_border, self.convert_to = crop_border, convert_to

    def __call__(self, img: np.ndarray) -> float:
        """NIQE of one (H, W, 3) RGB uint8 image (H, W >= 96 after cropping)."""
        img = np.asarray(img, dtype=np.float64)
        if self.convert_to == "y":
            gray = rgb_to_y(img)
        else:
            gray = img @ np.array([0.299, 0.587, 0.114])
        gray = crop(gray, self.crop_border).round()
        return niqe_gray(gray, self.mu, self.cov, self.window)
