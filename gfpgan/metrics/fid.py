"""FID (Heusel et al., NeurIPS 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a
Local Nash Equilibrium"): the Frechet distance between Gaussians fitted to Inception features.

The feature network is the TensorFlow FID Inception (2015-12-05 graph) as ported by pytorch-fid:
torchvision's Inception-v3 topology with 1008 classes, average pools that exclude padding and a
max pool in the last block. Its weights, ``pt_inception-2015-12-05-6726825d.pth``, are read from
a path or the torch cache (never downloaded). Statistics files are ``.npz`` with ``mu`` (2048,)
and ``sigma`` (2048, 2048); ``python -m gfpgan.tools.fid_stats`` makes them for a folder.
"""

from typing import Iterable, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from gfpgan.metrics.common import MissingWeightsError, find_weights
from gfpgan.registry import METRIC_REGISTRY

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                 "pt_inception-2015-12-05-6726825d.pth")


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``d = |mu1 - mu2|^2 + tr(s1) + tr(s2) - 2 tr((s1 s2)^1/2)``. The trace of the matrix square
    root is computed as the sum of square roots of the eigenvalues of the symmetric PSD matrix
    ``s1^1/2 s2 s1^1/2`` (same spectrum as ``s1 s2``), which avoids the complex round-off of a
    general ``sqrtm`` and is exactly 0 for identical inputs up to float precision.

    Args:
        mu1, mu2: (D,) means.
        sigma1, sigma2: (D, D) covariances.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(f"statistics have different shapes: {mu1.shape}/{s1.shape} vs "
                         f"{mu2.shape}/{s2.shape}")
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root1 @ s2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean, 0.0))


def frechet_distance_features(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """Frechet distance between the Gaussians of two feature sets, without D x D matrices.

    With centred features X1 (n1, D), X2 (n2, D) and unbiased covariances, the non-zero
    eigenvalues of s1 s2 are the squared singular values of M = X1 X2^T / sqrt((n1-1)(n2-1)), so
    ``tr((s1 s2)^1/2)`` is the nuclear norm of the small (n1, n2) matrix M. Exact, and much cheaper
    than two 2048 x 2048 eigendecompositions when the sets are smaller than the feature size.

    Args:
        feats1: (n1, D) features, n1 >= 2.
        feats2: (n2, D) features, n2 >= 2.
    """
    a, b = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("FID needs at least 2 images on each side")
    mu1, mu2 = a.mean(0), b.mean(0)
    xa, xb = a - mu1, b - mu2
    na, nb = a.shape[0] - 1, b.shape[0] - 1
    cross = np.linalg.svd(xa @ xb.T / np.sqrt(na * nb), compute_uv=False).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + (xa * xa).sum() / na + (xb * xb).sum() / nb - 2 * cross, 0.0))


def frechet_distance_to_stats(feats: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between a feature set (n < D) and reference statistics.

    The non-zero spectrum of s1 s2 equals that of the symmetric (n, n) matrix X s2 X^T / (n-1) for
    centred features X, so only an n x n eigendecomposition is needed.
    """
    a = np.asarray(feats, np.float64)
    if a.shape[0] < 2:
        raise ValueError("FID needs at least 2 images")
    mu1 = a.mean(0)
    x = a - mu1
    n = a.shape[0] - 1
    k = x @ np.asarray(sigma2, np.float64) @ x.T / n
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((k + k.T) / 2), 0, None)).sum()
    diff = mu1 - np.asarray(mu2, np.float64)
    return float(max(diff @ diff + (x * x).sum() / n + np.trace(sigma2) - 2 * tr_covmean, 0.0))


def feature_stats(feats: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features, in float64."""
    feats = np.asarray(feats, np.float64)
    if feats.shape[0] < 2:
        raise ValueError("FID needs at least 2 images")
    return feats.mean(0), np.cov(feats, rowvar=False)


def build_fid_inception() -> torch.nn.Module:
    """The FID Inception-v3 (random weights); load ``pt_inception-...pth`` into it."""
    from torchvision.models import inception as tv

    class _A(tv.InceptionA):
        def _forward(self, x):
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            pool = self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
            return [self.branch1x1(x), b5, b3, pool]

    class _C(tv.InceptionC):
        def _forward(self, x):
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            d = x
            for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                          self.branch7x7dbl_4, self.branch7x7dbl_5):
                d = layer(d)
            pool = self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
            return [self.branch1x1(x), b7, d, pool]

    class _E(tv.InceptionE):
        use_max_pool = False  # the TF graph's last block pools with max, the one before with avg

        def _forward(self, x):
            b3 = self.branch3x3_1(x)
            b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
            d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
            if self.use_max_pool:
                pooled = F.max_pool2d(x, 3, 1, 1)
            else:
                pooled = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
            return [self.branch1x1(x), b3, d, self.branch_pool(pooled)]

    class _EMax(_E):
        use_max_pool = True

    net = tv.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = _A(192, 32), _A(256, 64), _A(288, 64)
    net.Mixed_6b, net.Mixed_6c = _C(768, 128), _C(768, 160)
    net.Mixed_6d, net.Mixed_6e = _C(768, 160), _C(768, 192)
    net.Mixed_7b, net.Mixed_7c = _E(1280), _EMax(2048)
    return net


class FIDInceptionFeatures(torch.nn.Module):
    """2048-d pool features of the FID Inception.

    Args:
        net: A network from :func:`build_fid_inception` (weights loaded by the caller).
    """

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [-1, 1] -> (B, 2048) features."""
        n = self.net
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        for layer in (n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, n.maxpool1, n.Conv2d_3b_1x1,
                      n.Conv2d_4a_3x3, n.maxpool2, n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a,
                      n.Mixed_6b, n.Mixed_6c, n.Mixed_6d, n.Mixed_6e, n.Mixed_7a, n.Mixed_7b, n.Mixed_7c):
            x = layer(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


@METRIC_REGISTRY.register()
class FIDMetric:
    """Extracts Inception features of images and scores sets against reference statistics.

    Args:
        inception_path: ``pt_inception-2015-12-05-6726825d.pth`` (file or folder); default: torch cache.
        stats_path: Reference ``.npz`` (mu, sigma); None to compare against features given later.
        device: Where the network runs.
        batch_size: Images per forward pass.
    """

    def __init__(self, inception_path: Optional[str] = None, stats_path: Optional[str] = None,
                 device: str = "cpu", batch_size: int = 16):
        path = find_weights(inception_path, INCEPTION_FILE, "FID", INCEPTION_URL)
        self.ref = None
        if stats_path:
            self.ref = load_stats(stats_path)
        net = build_fid_inception()
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.device = torch.device(device)
        self.model = FIDInceptionFeatures(net).eval().to(self.device)
        self.batch_size = batch_size

    @torch.no_grad()
    def features(self, imgs: Iterable[np.ndarray]) -> np.ndarray:
        """(N, 2048) float64 features of (H, W, 3) RGB uint8 images."""
        imgs, out = list(imgs), []
        for i in range(0, len(imgs), self.batch_size):
            batch = np.stack([np.asarray(im) for im in imgs[i:i + self.batch_size]])
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(self.device)
            out.append(self.model(x).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 2048))

    def score(self, feats: np.ndarray, ref_feats: Optional[np.ndarray] = None) -> float:
        """FID of features (N, 2048) against ``ref_feats`` or the reference statistics file."""
        if ref_feats is not None:
            if len(feats) * len(ref_feats) <= feats.shape[1] ** 2:
                return frechet_distance_features(feats, ref_feats)
            mu2, s2 = feature_stats(ref_feats)
        elif self.ref is not None:
            mu2, s2 = self.ref
        else:
            raise MissingWeightsError("FID skipped: no reference statistics; set metrics.fid.stats_path "
                                      "(make one with python -m gfpgan.tools.fid_stats)")
        if len(feats) < feats.shape[1]:
            return frechet_distance_to_stats(feats, mu2, s2)
        mu1, s1 = feature_stats(feats)
        return frechet_distance(mu1, s1, mu2, s2)


def load_stats(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """Read ``mu``/``sigma`` from an ``.npz`` statistics file (MissingWeightsError if absent)."""
    import os

    if not os.path.isfile(path):
        raise MissingWeightsError(f"FID skipped: reference statistics {path} are missing; make them with "
                                  "python -m gfpgan.tools.fid_stats --input <folder> --out <file.npz>")
    with np.load(path) as data:
        return data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
