"""Deg: the identity angle between restored and reference faces (GFP-GAN paper, Sec. 4).

Both faces are embedded by ArcFace (Deng et al., CVPR 2019, "ArcFace: Additive Angular Margin
Loss for Deep Face Recognition"; the ResNet-18 ``arcface_resnet18.pth`` that GFP-GAN trains with)
and the metric is the angle between the embeddings in degrees: 0 for the same identity direction,
90 for orthogonal embeddings. The same embedder gives the identity consistency between
consecutive video frames (see :mod:`gfpgan.metrics.temporal`).
"""

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gfpgan.metrics.common import find_weights
from gfpgan.registry import METRIC_REGISTRY

ARCFACE_FILE = "arcface_resnet18.pth"
ARCFACE_URL = "https://github.com/TencentARC/GFPGAN/releases/download/v0.1.0/arcface_resnet18.pth"


def embedding_angle(emb1: torch.Tensor, emb2: torch.Tensor) -> torch.Tensor:
    """Angle in degrees between embeddings, row by row.

    Args:
        emb1, emb2: (B, D) or (D,) embeddings (any scale).
    Returns:
        (B,) float64 angles in [0, 180].
    """
    a = torch.as_tensor(emb1, dtype=torch.float64).reshape(-1, np.shape(emb1)[-1])
    b = torch.as_tensor(emb2, dtype=torch.float64).reshape(-1, np.shape(emb2)[-1])
    cos = F.cosine_similarity(a, b, dim=1).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cos))


def to_arcface_input(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [-1, 1] -> (B, 1, 128, 128) gray in [-1, 1], as GFP-GAN's identity loss."""
    gray = (0.2989 * x[:, 0] + 0.5870 * x[:, 1] + 0.1140 * x[:, 2]).unsqueeze(1)
    return F.interpolate(gray, size=(128, 128), mode="bilinear", align_corners=False)


@METRIC_REGISTRY.register()
class IdentityMetric:
    """Deg: ArcFace angle between restored and reference faces (lower is better).

    Args:
        arcface_path: ``arcface_resnet18.pth`` (file or folder); default: the usual caches.
        device: Where ArcFace runs.
        net: A ready embedder (tests); skips loading.
    """

    def __init__(self, arcface_path: Optional[str] = None, device: str = "cpu",
                 net: Optional[torch.nn.Module] = None):
        self.device = torch.device(device)
        if net is None:
            from gfpgan.archs.arcface_arch import ResNetArcFace
            from gfpgan.legacy import load_state_dict

            path = find_weights(arcface_path, ARCFACE_FILE, "Deg (ArcFace identity)", ARCFACE_URL)
            net = ResNetArcFace(block="IRBlock", layers=(2, 2, 2, 2), use_se=False)
            net.load_state_dict(load_state_dict(path))
        self.net = net.eval().to(self.device)

    @torch.no_grad()
    def embed(self, imgs: Sequence[np.ndarray]) -> torch.Tensor:
        """(N, 512) float64 embeddings of (H, W, 3) RGB uint8 faces."""
        if len(imgs) == 0:
            return torch.zeros(0, 512, dtype=torch.float64)
        x = torch.from_numpy(np.stack([np.asarray(i) for i in imgs])).permute(0, 3, 1, 2)
        x = x.float().div(127.5).sub(1).to(self.device)
        return self.net(to_arcface_input(x)).double().cpu()

    def __call__(self, img: np.ndarray, ref: np.ndarray) -> float:
        """Deg of one restored (H, W, 3) RGB uint8 face against its reference."""
        emb = self.embed([img, ref])
        return float(embedding_angle(emb[:1], emb[1:])[0])
