"""The reference's ``gfpgan.archs.gfpganv1_arch``: GFPGANv1, StyleGAN2GeneratorSFT and the layers
callers import from it (FacialComponentDiscriminator, ConvUpLayer, ResUpBlock).

Thin subclasses and re-exports of this project's pure-PyTorch networks: the original architecture
runs without BasicSR's compiled ops, on CPU too, and loads ``GFPGANv1.pth`` with ``strict=True``.
"""

from gfpgan.archs import gfpgan_arch, stylegan2_arch
from gfpgan.archs.discriminator_arch import FacialComponentDiscriminator
from gfpgan.archs.gfpgan_arch import ConvUpLayer, ResUpBlock
from gfpgan.archs.reference_api import ReferenceRestorer, ReferenceSFTGenerator

__all__ = ["GFPGANv1", "StyleGAN2GeneratorSFT", "FacialComponentDiscriminator", "ConvUpLayer", "ResUpBlock"]


class StyleGAN2GeneratorSFT(ReferenceSFTGenerator, stylegan2_arch.StyleGAN2Generator):
    """Original StyleGAN2 generator with SFT conditions (the decoder of GFPGANv1).

    Args:
        out_size: output size, a power of two.
        num_style_feat: style (w) dimension.
        num_mlp: layers of the style MLP.
        channel_multiplier: widens the 64px+ layers.
        resample_kernel: 1-D FIR taps used for up/downsampling.
        lr_mlp: learning-rate multiplier of the style MLP.
        narrow: scales every channel count.
        sft_half: apply SFT to half of the channels.
    """


class GFPGANv1(ReferenceRestorer, gfpgan_arch.GFPGANv1):
    """GFP-GAN as in the paper, called as the reference calls it; arguments as
    :class:`gfpgan.archs.gfpgan_arch.GFPGANv1`."""
