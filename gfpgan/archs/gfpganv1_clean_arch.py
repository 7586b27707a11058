"""The reference's ``gfpgan.archs.gfpganv1_clean_arch``: GFPGANv1Clean and StyleGAN2GeneratorCSFT.

Thin subclasses of this project's networks (:mod:`gfpgan.archs.gfpgan_arch`,
:mod:`gfpgan.archs.stylegan2_arch`) with the reference's constructor keywords, state-dict keys and
forward signatures (see :mod:`gfpgan.compat.archs`), so ``GFPGANv1Clean(**kwargs)`` built
as the reference builds it loads the v1.2/v1.3/v1.4 checkpoints with ``strict=True``.
"""

from gfpgan.archs import gfpgan_arch, stylegan2_arch
from gfpgan.compat.archs import ReferenceRestorer, ReferenceSFTGenerator

__all__ = ["GFPGANv1Clean", "StyleGAN2GeneratorCSFT"]


class StyleGAN2GeneratorCSFT(ReferenceSFTGenerator, stylegan2_arch.StyleGAN2GeneratorClean):
    """Clean StyleGAN2 generator with SFT conditions (the decoder of GFPGANv1Clean); arguments as
    :class:`gfpgan.archs.stylegan2_arch.StyleGAN2GeneratorClean`."""


class GFPGANv1Clean(ReferenceRestorer, gfpgan_arch.GFPGANv1Clean):
    """GFP-GAN without custom ops, called as the reference calls it; arguments as
    :class:`gfpgan.archs.gfpgan_arch.GFPGANv1Clean`."""
