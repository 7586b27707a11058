"""Adversarial losses (vanilla, LSGAN, WGAN, WGAN-softplus, hinge) and the R1 gradient penalty.

``GANLoss`` keeps BasicSR's type name and arguments, so ``gan_opt: {type: GANLoss, gan_type:
wgan_softplus, loss_weight: 0.1}`` builds unchanged. ``loss_weight`` applies to the generator side
only: a discriminator loss is never scaled (BasicSR's convention, which the GFPGAN recipe relies
on).

``wgan_softplus`` is StyleGAN2's logistic loss: softplus(-D(real)) for "real" targets and
softplus(D(fake)) for "fake" ones (non-saturating for G). ``vanilla`` with labels 1/0 is the same
function written as BCE-with-logits; both are kept because the reference recipe names both.

R1 (Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?", eq. 9):
E[||grad_x D(x)||^2] on real images only.
"""

import torch
import torch.nn.functional as F
from torch import autograd, nn

from gfpgan.registry import LOSS_REGISTRY

GAN_TYPES = ("vanilla", "lsgan", "wgan", "wgan_softplus", "hinge")


@LOSS_REGISTRY.register()
class GANLoss(nn.Module):
    """GAN loss on discriminator logits.

    Args:
        gan_type: One of ``vanilla`` (BCE with logits), ``lsgan`` (MSE to the label), ``wgan``,
            ``wgan_softplus`` (logistic), ``hinge``.
        real_label_val: Target of "real" for vanilla / lsgan.
        fake_label_val: Target of "fake" for vanilla / lsgan.
        loss_weight: Multiplier applied to the generator-side loss only.
    """

    def __init__(self, gan_type: str, real_label_val: float = 1.0, fake_label_val: float = 0.0,
                 loss_weight: float = 1.0):
        super().__init__()
        if gan_type not in GAN_TYPES:
            raise ValueError(f"gan_type must be one of {GAN_TYPES}, got {gan_type!r}")
        self.gan_type = gan_type
        self.real_label_val = float(real_label_val)
        self.fake_label_val = float(fake_label_val)
        self.loss_weight = float(loss_weight)

    def _raw(self, pred: torch.Tensor, target_is_real: bool, is_disc: bool) -> torch.Tensor:
        if self.gan_type == "wgan":
            return -pred.mean() if target_is_real else pred.mean()
        if self.gan_type == "wgan_softplus":
            return F.softplus(-pred).mean() if target_is_real else F.softplus(pred).mean()
        if self.gan_type == "hinge":
            if not is_disc:  # the generator maximises D(fake) without a margin
                return -pred.mean()
            return F.relu(1.0 - pred).mean() if target_is_real else F.relu(1.0 + pred).mean()
        label = self.real_label_val if target_is_real else self.fake_label_val
        target = torch.full_like(pred, label)
        if self.gan_type == "vanilla":
            return F.binary_cross_entropy_with_logits(pred, target)
        return F.mse_loss(pred, target)  # lsgan

    def forward(self, pred: torch.Tensor, target_is_real: bool, is_disc: bool = False) -> torch.Tensor:
        """Loss of discriminator logits ``pred`` against the real or fake target.

        Args:
            pred: Logits of any shape, e.g. (N, 1) for StyleGAN2's D or (N, 1, h, w) for the
                patch-style component discriminators.
            target_is_real: Whether the target is "real".
            is_disc: True for the discriminator's own loss (never weighted).
        Returns:
            Scalar tensor.
        """
        loss = self._raw(pred.float(), target_is_real, is_disc)
        return loss if is_disc else loss * self.loss_weight

    def extra_repr(self) -> str:
        return f"gan_type={self.gan_type}, loss_weight={self.loss_weight}"


def r1_penalty(real_pred: torch.Tensor, real_img: torch.Tensor, grad_scale: float = 1.0) -> torch.Tensor:
    """R1 penalty: mean over the batch of the squared gradient norm of D at real images.

    Args:
        real_pred: D logits for ``real_img``, any shape with batch first.
        real_img: (N, C, H, W) real images with ``requires_grad=True``.
        grad_scale: When the graph was scaled by a GradScaler (fp16), the scale used, so the
            gradient is unscaled before squaring; 1.0 otherwise.
    Returns:
        Scalar tensor, differentiable w.r.t. D's parameters (``create_graph=True``).
    """
    outputs = real_pred.float().sum() * grad_scale
    (grad,) = autograd.grad(outputs=outputs, inputs=real_img, create_graph=True)
    grad = grad.float() / grad_scale
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()
