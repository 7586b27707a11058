"""Pixel-wise reconstruction losses: L1, L2 (MSE) and Charbonnier, each with a ``loss_weight``.

Same type names and arguments as BasicSR's ``basic_loss`` so official option files build
unchanged (``pixel_opt: {type: L1Loss, loss_weight: 0.1, reduction: mean}``). Written here rather
than imported so that a loss costs no ``import basicsr`` (2.4 s and every submodule).
"""

from typing import Optional

import torch
from torch import nn

from gfpgan.registry import LOSS_REGISTRY

_REDUCTIONS = ("none", "mean", "sum")


def _reduce(loss: torch.Tensor, weight: Optional[torch.Tensor], reduction: str) -> torch.Tensor:
    """Apply an optional element-wise weight, then reduce.

    With a weight and ``mean``, the sum is divided by the total weight (over channels), as BasicSR
    does, so a binary mask gives the mean over the masked region.
    """
    if weight is not None:
        if weight.dim() != loss.dim() or weight.size(1) not in (1, loss.size(1)):
            raise ValueError(f"weight of shape {tuple(weight.shape)} does not fit loss {tuple(loss.shape)}")
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if weight is None:
        return loss.mean()
    denom = weight.sum() if weight.size(1) > 1 else weight.sum() * loss.size(1)
    return loss.sum() / denom.clamp_min(1e-12)


class _PixelLoss(nn.Module):
    """Shared constructor of the pixel losses."""

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.loss_weight = float(loss_weight)
        self.reduction = reduction

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                weight: Optional[torch.Tensor] = None, **kwargs) -> torch.Tensor:
        """Weighted loss between ``pred`` and ``target``.

        Args:
            pred: (N, C, H, W) prediction, any range.
            target: (N, C, H, W) target, same range.
            weight: optional (N, 1 or C, H, W) element-wise weight.
        Returns:
            Scalar tensor (a (N, C, H, W) tensor with ``reduction='none'``) times ``loss_weight``.
        """
        return self.loss_weight * _reduce(self.elementwise(pred, target), weight, self.reduction)


@LOSS_REGISTRY.register()
class L1Loss(_PixelLoss):
    """Mean absolute error times ``loss_weight``."""

    def elementwise(self, pred, target):
        return (pred - target).abs()


@LOSS_REGISTRY.register()
class MSELoss(_PixelLoss):
    """Mean squared error (L2) times ``loss_weight``."""

    def elementwise(self, pred, target):
        return (pred - target).pow(2)


@LOSS_REGISTRY.register()
class CharbonnierLoss(_PixelLoss):
    """Charbonnier loss sqrt((x - y)^2 + eps), a differentiable L1 (LapSRN).

    Args:
        loss_weight: Multiplier of the loss.
        reduction: ``none`` | ``mean`` | ``sum``.
        eps: Smoothing term under the square root.
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean", eps: float = 1e-12):
        super().__init__(loss_weight, reduction)
        self.eps = float(eps)

    def elementwise(self, pred, target):
        return torch.sqrt((pred - target).pow(2) + self.eps)
