"""Temporal losses on restored clips: motion-compensated change and identity consistency.

* ``TemporalLoss``: ``|| (O_t - W O_t-1) - (G_t - W G_t-1) ||_1`` over the pixels of frame t that
  frame t-1 covers, with ``W`` the known warp of the relative similarity between consecutive crops
  (:func:`gfpgan.motion.warp_previous`). It penalises the change that the ground truth does not
  have (flicker, popping detail) and not the true motion; a plain ``||O_t - W O_t-1||`` would
  instead push towards a frozen, blurry output (the README's temporal section).
* ``TemporalIdentityLoss``: the same idea on ArcFace embeddings: the change of the output's
  embedding between consecutive frames minus the ground truth's change (L1).

Both take clips (B, T, 3, S, S) in [-1, 1] and (B, T, 2, 3) transforms crop t-1 -> crop t in
pixels of the S crop (entry 0 unused), as :class:`gfpgan.data.FFHQClipDataset` returns them.
"""

from typing import Optional

import torch
from torch import nn

from gfpgan.losses.identity import IdentityLoss, gray_resize
from gfpgan.motion import valid_mask, warp_previous
from gfpgan.registry import LOSS_REGISTRY


def _check_clip(output: torch.Tensor, gt: torch.Tensor, rel_affine: torch.Tensor) -> None:
    if output.ndim != 5 or output.shape != gt.shape or rel_affine.shape != output.shape[:2] + (2, 3):
        raise ValueError(f"temporal losses take clips (B, T, C, H, W) and transforms (B, T, 2, 3), got "
                         f"{tuple(output.shape)}, {tuple(gt.shape)} and {tuple(rel_affine.shape)}")
    if output.shape[1] < 2:
        raise ValueError(f"a temporal loss needs at least 2 frames, got T={output.shape[1]}")


@LOSS_REGISTRY.register()
class TemporalLoss(nn.Module):
    """Masked L1 of the motion-compensated change of the output minus that of the ground truth.

    Args:
        loss_weight: multiplier.
        threshold: a pixel of frame t counts when the previous crop covers at least this much of it.
    """

    def __init__(self, loss_weight: float = 1.0, threshold: float = 0.999):
        super().__init__()
        self.loss_weight, self.threshold = float(loss_weight), float(threshold)

    def forward(self, output: torch.Tensor, gt: torch.Tensor, rel_affine: torch.Tensor) -> torch.Tensor:
        """Loss of a batch of clips.

        Args:
            output: (B, T, C, S, S) restored clips; gradients flow.
            gt: (B, T, C, S, S) ground truth clips (constant).
            rel_affine: (B, T, 2, 3) crop t-1 -> crop t transforms in pixels of the S crop.
        Returns:
            Scalar: the mean over valid pixels, channels and the T-1 pairs, times ``loss_weight``.
        """
        _check_clip(output, gt, rel_affine)
        c, h, w = output.shape[2:]
        rel = rel_affine[:, 1:].reshape(-1, 2, 3)
        prev = torch.cat([output[:, :-1], gt[:, :-1].detach()], 2).reshape(-1, 2 * c, h, w)
        warped, cover = warp_previous(prev, rel, w)
        cur_o, cur_g = output[:, 1:].reshape(-1, c, h, w), gt[:, 1:].reshape(-1, c, h, w).detach()
        diff = (cur_o - warped[:, :c]) - (cur_g - warped[:, c:])
        mask = valid_mask(cover, self.threshold).to(diff.dtype)
        return (diff.abs() * mask).sum() / (mask.sum() * c).clamp_min(1.0) * self.loss_weight


@LOSS_REGISTRY.register()
class TemporalIdentityLoss(IdentityLoss):
    """Identity consistency between consecutive frames: ``|(e(O_t) - e(O_t-1)) - (e(G_t) - e(G_t-1))|_1``.

    Args:
        identity_net: frozen face-embedding network (N, 1, size, size) -> (N, D), e.g. ArcFace.
        loss_weight: multiplier.
        size: input side of the network.
    """

    def forward(self, output: torch.Tensor, gt: torch.Tensor,
                rel_affine: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Loss of a batch of clips (B, T, 3, S, S) in [-1, 1]; ``rel_affine`` is not needed.

        Returns:
            Scalar tensor.
        """
        if output.ndim != 5 or output.shape != gt.shape or output.shape[1] < 2:
            raise ValueError(f"TemporalIdentityLoss takes two clips (B, T >= 2, 3, H, W) of one shape, got "
                             f"{tuple(output.shape)} and {tuple(gt.shape)}")
        b, t = output.shape[:2]
        with torch.no_grad():
            emb_gt = self.net(gray_resize(gt.detach().flatten(0, 1), self.size)).float().view(b, t, -1)
        emb = self.net(gray_resize(output.flatten(0, 1), self.size)).float().view(b, t, -1)
        change = (emb[:, 1:] - emb[:, :-1]) - (emb_gt[:, 1:] - emb_gt[:, :-1])
        return change.abs().mean() * self.loss_weight
