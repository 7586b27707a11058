"""Image and video quality metrics for face restoration, registered in ``METRIC_REGISTRY``.

Full-reference: PSNR, SSIM (``psnr_ssim``), LPIPS (``lpips_metric``), Deg (``identity``),
LMD (``landmark``). Set-level: FID (``fid``). No-reference: NIQE (``niqe``). Video:
flow-warping error, landmark jitter and identity consistency (``temporal``). Metrics that need
weights raise :class:`~gfpgan.metrics.common.MissingWeightsError` when the file is absent, so the
evaluation skips exactly that metric. The modules are imported here by name (no folder scanning)
so that importing the package registers them; heavy dependencies (lpips, torchvision's Inception,
ArcFace, the detector) load only when a metric is built.
"""

from gfpgan.metrics import fid, identity, landmark, lpips_metric, niqe, psnr_ssim  # noqa: F401  (registers)
from gfpgan.metrics.common import MissingWeightsError
from gfpgan.metrics.fid import FIDMetric, frechet_distance
from gfpgan.metrics.identity import IdentityMetric, embedding_angle
from gfpgan.metrics.landmark import LandmarkMetric, landmark_distance
from gfpgan.metrics.lpips_metric import LPIPSMetric
from gfpgan.metrics.niqe import NIQE
from gfpgan.metrics.psnr_ssim import calculate_psnr, calculate_ssim

__all__ = ["MissingWeightsError", "FIDMetric", "frechet_distance", "IdentityMetric", "embedding_angle",
           "LandmarkMetric", "landmark_distance", "LPIPSMetric", "NIQE", "calculate_psnr", "calculate_ssim"]
