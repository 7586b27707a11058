"""StyleGAN2's generator regulariser: path-length regularisation (Karras et al., CVPR 2020, sec. 3.2).

For images ``g(w)`` and a random image-space direction ``y ~ N(0, I) / sqrt(H * W)``, the path
length is ``a = || J_w^T y ||_2`` (the Jacobian of the image w.r.t. the W+ latent, averaged over
its layers). The penalty ``E[(a - mu)^2]`` pulls every ``a`` towards ``mu``, the running mean of
the path lengths (decay 0.01): a fixed step in W changes the image by a fixed amount, wherever it
is taken. The non-saturating logistic GAN loss that goes with it is ``GANLoss(gan_type=
'wgan_softplus')`` (:mod:`gfpgan.losses.gan`).

Differences from BasicSR's ``g_path_regularize`` (which the released StyleGAN2 prior used):

* the running mean is a buffer of the module (saved with the training state, so a resumed run
  is exact), and its update may use the mean over every rank (``reduce``), so all ranks keep the
  same value;
* the target ``mu`` of the penalty is the updated running mean, detached: BasicSR lets a
  ``decay``-scaled gradient flow through it (a 1 % correction of the same sign).
"""

import math
from typing import Callable, Optional, Tuple

import torch
from torch import autograd, nn


class PathLengthPenalty(nn.Module):
    """Path-length penalty with a running mean of the path lengths.

    Args:
        decay: Weight of the new batch mean in the running mean (StyleGAN2: 0.01).
    """

    def __init__(self, decay: float = 0.01):
        super().__init__()
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"path-length decay must be in (0, 1], got {decay}")
        self.decay = float(decay)
        self.register_buffer("mean", torch.zeros((), dtype=torch.float64))

    def forward(self, images: torch.Tensor, latents: torch.Tensor,
                reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Penalty of a batch and its path lengths; updates the running mean.

        Args:
            images: (B, 3, H, W) generated images, in the graph of ``latents``.
            latents: (B, L, F) the W+ latents that made them (any tensor of that graph).
            reduce: Maps the batch mean path length (a 0-d tensor) to the mean over every rank
                (None: this process only).
        Returns:
            (penalty: scalar, differentiable w.r.t. the generator's parameters; path lengths (B,),
            detached).
        """
        h, w = images.shape[-2:]
        direction = torch.randn_like(images) / math.sqrt(h * w)
        (grad,) = autograd.grad((images * direction).float().sum(), latents, create_graph=True)
        lengths = grad.float().pow(2).sum(2).mean(1).sqrt()
        batch_mean = lengths.detach().mean()
        if reduce is not None:
            batch_mean = reduce(batch_mean)
        with torch.no_grad():
            self.mean.lerp_(batch_mean.to(self.mean), self.decay)
        penalty = (lengths - self.mean.to(lengths.dtype)).pow(2).mean()
        return penalty, lengths.detach()
