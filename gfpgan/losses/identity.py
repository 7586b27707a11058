"""Identity-preserving loss: L1 distance between ArcFace embeddings of output and ground truth.

GFP-GAN (Wang et al., CVPR 2021, "Towards Real-World Blind Face Restoration with Generative
Facial Prior", eq. 7) keeps the restored face's identity close to the ground truth's with a
frozen face-recognition network (ArcFace, Deng et al. 2019). The recipe's ArcFace takes one gray
128x128 channel: images are converted with ITU-R 601 weights (0.2989 R + 0.587 G + 0.114 B) and
bilinearly resized. The ground-truth embedding is a constant (detached); only the output's
embedding carries gradients back to the generator.
"""

import torch
import torch.nn.functional as F
from torch import nn

from gfpgan.registry import LOSS_REGISTRY

GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


def gray_resize(x: torch.Tensor, size: int = 128) -> torch.Tensor:
    """RGB -> one gray channel, resized for ArcFace.

    Args:
        x: (N, 3, H, W) RGB images (any range; the weights are linear).
        size: Output side.
    Returns:
        (N, 1, size, size) tensor.
    """
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    gray = GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b
    if gray.shape[-2:] != (size, size):
        gray = F.interpolate(gray, size=(size, size), mode="bilinear", align_corners=False)
    return gray


@LOSS_REGISTRY.register()
class IdentityLoss(nn.Module):
    """ArcFace identity loss.

    Args:
        identity_net: A frozen face-embedding network mapping (N, 1, size, size) to (N, D), e.g.
            ``ResNetArcFace``. It is put in eval mode and gets ``requires_grad=False`` here, so it
            gets no gradients and no optimizer state.
        loss_weight: Multiplier (the recipe's ``identity_weight``, 10).
        size: Input side of the network (128 for the recipe's ArcFace).
    """

    def __init__(self, identity_net: nn.Module, loss_weight: float = 1.0, size: int = 128):
        super().__init__()
        self.net = identity_net
        self.net.requires_grad_(False)
        self.net.eval()
        self.loss_weight = float(loss_weight)
        self.size = int(size)

    def train(self, mode: bool = True):
        """Keep ArcFace in eval mode (its BatchNorm statistics are fixed)."""
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, output: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """Weighted L1 distance of the embeddings.

        Args:
            output: (N, 3, H, W) restored images in [-1, 1]; gradients flow.
            gt: (N, 3, H, W) ground truth in [-1, 1]; treated as a constant.
        Returns:
            Scalar tensor.
        """
        with torch.no_grad():
            emb_gt = self.net(gray_resize(gt.detach(), self.size))
        emb_out = self.net(gray_resize(output, self.size))
        return (emb_out.float() - emb_gt.float()).abs().mean() * self.loss_weight
