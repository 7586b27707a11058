"""The reference's ``gfpgan.archs.gfpganv1_arch``: GFPGANv1, StyleGAN2GeneratorSFT and the layers
callers import from it (FacialComponentDiscriminator, ConvUpLayer, ResUpBlock).

Thin subclasses and re-exports of this project's pure-PyTorch networks: the original architecture
runs without BasicSR's compiled ops, on CPU too, and loads ``GFPGANv1.pth`` with ``strict=True``.
"""

from gfpgan.archs import gfpgan_arch, stylegan2_arch
from gfpgan.archs.discriminator_arch import FacialComponentDiscriminator
from gfpgan.archs.gfpgan_arch import ConvUpLayer, ResUpBlock
from gfpgan.compat.archs import ReferenceRestorer, ReferenceSFTGenerator

__all__ = ["GFPGANv1", "StyleGAN2GeneratorSFT", "FacialComponentDiscriminator", "ConvUpLayer", "ResUpBlock"]


class StyleGAN2GeneratorSFT(ReferenceSFTGenerator, stylegan2_arch.StyleGAN2Generator):
    """Original StyleGAN2 generator with SFT conditions (the decoder of GFPGANv1); arguments as
    :class:`gfpgan.archs.stylegan2_arch.StyleGAN2Generator`."""


class GFPGANv1(ReferenceRestorer, gfpgan_arch.GFPGANv1):
    """GFP-GAN as in the paper, called as the reference calls it; arguments as
    :class:`gfpgan.archs.gfpgan_arch.GFPGANv1`."""
