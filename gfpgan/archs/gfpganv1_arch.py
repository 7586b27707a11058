"""The reference's ``gfpgan.archs.gfpganv1_arch``: GFPGANv1, StyleGAN2GeneratorSFT and the layers
callers import from it (FacialComponentDiscriminator, ConvUpLayer, ResUpBlock).

A re-export of :mod:`gfpgan.compat.archs`: the original architecture runs without BasicSR's
compiled ops, on CPU too, and loads ``GFPGANv1.pth`` with ``strict=True``. This module defines
nothing.
"""

from gfpgan.compat.archs import (
    ConvUpLayer,
    FacialComponentDiscriminator,
    GFPGANv1,
    ResUpBlock,
    StyleGAN2GeneratorSFT,
)

__all__ = ["GFPGANv1", "StyleGAN2GeneratorSFT", "FacialComponentDiscriminator", "ConvUpLayer", "ResUpBlock"]
