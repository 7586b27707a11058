"""Training losses, registered in ``LOSS_REGISTRY`` under BasicSR's type names.

Modules are imported by name so that they register (no folder scanning):

* ``pixel``: ``L1Loss``, ``MSELoss``, ``CharbonnierLoss``.
* ``gan``: ``GANLoss`` (vanilla / lsgan / wgan / wgan_softplus / hinge) and ``r1_penalty``.
* ``perceptual``: ``PerceptualLoss`` (VGG perceptual + Gram style) and ``gram_matrix``.
* ``identity``: ``IdentityLoss`` (ArcFace on gray 128x128 crops) and ``gray_resize``.
* ``stylegan2``: ``PathLengthPenalty`` (StyleGAN2's path-length regularisation, with its running mean).
* ``temporal``: ``TemporalLoss`` (motion-compensated change vs the ground truth's, on clips) and
  ``TemporalIdentityLoss`` (ArcFace change between consecutive frames vs the ground truth's).

Training-only: nothing on the inference path imports this package.
"""

from gfpgan.losses import gan, identity, perceptual, pixel, stylegan2, temporal  # noqa: F401  (registration)
from gfpgan.losses.gan import GANLoss, r1_penalty
from gfpgan.losses.identity import IdentityLoss, gray_resize
from gfpgan.losses.perceptual import PerceptualLoss, gram_matrix
from gfpgan.losses.pixel import CharbonnierLoss, L1Loss, MSELoss
from gfpgan.losses.stylegan2 import PathLengthPenalty
from gfpgan.losses.temporal import TemporalIdentityLoss, TemporalLoss
from gfpgan.registry import LOSS_REGISTRY


def build_loss(cfg: dict, **extra):
    """Build a loss from an options block such as ``{'type': 'L1Loss', 'loss_weight': 0.1}``.

    The block is copied, never mutated. ``extra`` kwargs (e.g. ``identity_net``) are added.
    """
    return LOSS_REGISTRY.build(cfg, **extra)


__all__ = ["CharbonnierLoss", "GANLoss", "IdentityLoss", "L1Loss", "MSELoss", "PathLengthPenalty",
           "PerceptualLoss", "TemporalIdentityLoss", "TemporalLoss", "build_loss", "gram_matrix",
           "gray_resize", "r1_penalty"]
