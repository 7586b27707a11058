"""The reference's ``gfpgan.archs.gfpganv1_clean_arch``: GFPGANv1Clean and StyleGAN2GeneratorCSFT.

A re-export of :mod:`gfpgan.compat.archs` (where the reference's classes are defined, once): built
as the reference builds them they load the v1.2/v1.3/v1.4 checkpoints with ``strict=True`` and take
its forward signatures. This module defines nothing.
"""

from gfpgan.compat.archs import GFPGANv1Clean, StyleGAN2GeneratorCSFT

__all__ = ["GFPGANv1Clean", "StyleGAN2GeneratorCSFT"]
