"""Network architectures (pure PyTorch). Importing this package registers this project's classes in
``gfpgan.registry.ARCH_REGISTRY`` under the reference implementation's names (so the reference's
option files build them), and the names below are those classes.

This project's networks live in ``gfpgan_arch``, ``stylegan2_arch`` (+ ``stylegan2_ops``),
``bilinear_net``, ``restoreformer_net``, ``temporal_arch``, ``discriminator_arch``,
``arcface_arch`` and ``vgg_arch``. The reference's module paths (``gfpganv1_clean_arch``,
``gfpganv1_arch``, ``stylegan2_clean_arch``, ``gfpgan_bilinear_arch``, ``stylegan2_bilinear_arch``,
``restoreformer_arch``) are re-exports of :mod:`gfpgan.compat.archs`, where the reference's classes
(its forward signatures and defaults, subclasses of the project's) are defined; they load on first
use (``import gfpgan.archs.gfpganv1_clean_arch``, or ``gfpgan.archs.gfpganv1_clean_arch``), so that
registering the architectures never imports the reference's API.
"""

import importlib

from gfpgan.archs import (  # noqa: F401  (registration)
    arcface_arch,
    bilinear_net,
    discriminator_arch,
    gfpgan_arch,
    restoreformer_net,
    stylegan2_arch,
    temporal_arch,
    vgg_arch,
)
from gfpgan.archs.arcface_arch import ResNetArcFace
from gfpgan.archs.bilinear_net import GFPGANBilinear, StyleGAN2GeneratorBilinear
from gfpgan.archs.discriminator_arch import FacialComponentDiscriminator, StyleGAN2Discriminator
from gfpgan.archs.gfpgan_arch import GFPGANv1, GFPGANv1Clean
from gfpgan.archs.restoreformer_net import RestoreFormer
from gfpgan.archs.stylegan2_arch import StyleGAN2Generator, StyleGAN2GeneratorClean
from gfpgan.archs.temporal_arch import TemporalGFPGAN, TemporalState, TemporalStep
from gfpgan.archs.vgg_arch import VGGFeatureExtractor

__all__ = ["GFPGANv1", "GFPGANv1Clean", "GFPGANBilinear", "RestoreFormer", "StyleGAN2Generator",
           "StyleGAN2GeneratorClean", "StyleGAN2GeneratorBilinear", "TemporalGFPGAN",
           "TemporalState", "TemporalStep", "StyleGAN2Discriminator", "FacialComponentDiscriminator",
           "ResNetArcFace", "VGGFeatureExtractor"]

# the reference's module paths, imported when first asked for
REFERENCE_MODULES = ("gfpganv1_clean_arch", "gfpganv1_arch", "stylegan2_clean_arch", "gfpgan_bilinear_arch",
                     "stylegan2_bilinear_arch", "restoreformer_arch")


def __getattr__(name: str):
    if name in REFERENCE_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
