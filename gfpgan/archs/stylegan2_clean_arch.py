"""The reference's ``gfpgan.archs.stylegan2_clean_arch``: StyleGAN2GeneratorClean.

This project's clean StyleGAN2 generator (:mod:`gfpgan.archs.stylegan2_arch`) with the reference's
forward signature, ``randomize_noise=True`` by default (see :mod:`gfpgan.compat.archs`).
"""

from gfpgan.archs import stylegan2_arch
from gfpgan.compat.archs import ReferenceGenerator

__all__ = ["StyleGAN2GeneratorClean"]


class StyleGAN2GeneratorClean(ReferenceGenerator, stylegan2_arch.StyleGAN2GeneratorClean):
    """StyleGAN2 generator without custom ops; arguments as
    :class:`gfpgan.archs.stylegan2_arch.StyleGAN2GeneratorClean`."""
