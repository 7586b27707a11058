"""The reference's ``gfpgan.archs.stylegan2_clean_arch``: StyleGAN2GeneratorClean with the
reference's forward signature (``randomize_noise=True`` by default).

A re-export of :mod:`gfpgan.compat.archs`; this module defines nothing.
"""

from gfpgan.compat.archs import StyleGAN2GeneratorClean

__all__ = ["StyleGAN2GeneratorClean"]
