"""The reference's ``gfpgan.archs.gfpgan_bilinear_arch``: GFPGANBilinear and
StyleGAN2GeneratorBilinearSFT.

A re-export of :mod:`gfpgan.compat.archs` (the reference's classes over this project's
:mod:`gfpgan.archs.bilinear_net`); this module defines nothing.
"""

from gfpgan.compat.archs import GFPGANBilinear, StyleGAN2GeneratorBilinearSFT

__all__ = ["GFPGANBilinear", "StyleGAN2GeneratorBilinearSFT"]
