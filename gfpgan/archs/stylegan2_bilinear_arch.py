"""The reference's ``gfpgan.archs.stylegan2_bilinear_arch``: StyleGAN2GeneratorBilinear and its
layers.

A re-export of :mod:`gfpgan.compat.archs` (the reference's class over this project's
:mod:`gfpgan.archs.bilinear_net`, whose layers keep the reference's parameter names); this module
defines nothing.
"""

from gfpgan.compat.archs import BilinearConvLayer as ConvLayer
from gfpgan.compat.archs import BilinearModulatedConv2d as ModulatedConv2d
from gfpgan.compat.archs import BilinearStyleConv as StyleConv
from gfpgan.compat.archs import BilinearToRGB as ToRGB
from gfpgan.compat.archs import (
    EqualConv2d,
    EqualLinear,
    NormStyleCode,
    ResBlock,
    ScaledLeakyReLU,
    StyleGAN2GeneratorBilinear,
)

__all__ = ["StyleGAN2GeneratorBilinear", "ModulatedConv2d", "StyleConv", "ToRGB", "ConvLayer", "ResBlock",
           "EqualConv2d", "EqualLinear", "NormStyleCode", "ScaledLeakyReLU"]
