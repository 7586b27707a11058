"""Network architectures (pure PyTorch). Importing this package registers every class in
``gfpgan.registry.ARCH_REGISTRY`` under the reference implementation's names.

The modules named as the reference's (``gfpganv1_clean_arch``, ``gfpganv1_arch``,
``stylegan2_clean_arch``, ``gfpgan_bilinear_arch``, ``stylegan2_bilinear_arch``,
``restoreformer_arch``, ``arcface_arch``) give programs written for TencentARC/GFPGAN its classes,
constructor keywords and forward signatures (see :mod:`gfpgan.compat.archs`).
"""

from gfpgan.archs import (  # noqa: F401  (registration; the reference's module paths too)
    arcface_arch,
    discriminator_arch,
    gfpgan_arch,
    gfpgan_bilinear_arch,
    gfpganv1_arch,
    gfpganv1_clean_arch,
    restoreformer_arch,
    stylegan2_arch,
    stylegan2_bilinear_arch,
    stylegan2_clean_arch,
    temporal_arch,
    vgg_arch,
)
from gfpgan.archs.arcface_arch import ResNetArcFace
from gfpgan.archs.discriminator_arch import FacialComponentDiscriminator, StyleGAN2Discriminator
from gfpgan.archs.gfpgan_arch import GFPGANv1, GFPGANv1Clean
from gfpgan.archs.gfpgan_bilinear_arch import GFPGANBilinear
from gfpgan.archs.restoreformer_arch import RestoreFormer
from gfpgan.archs.stylegan2_arch import StyleGAN2Generator, StyleGAN2GeneratorClean
from gfpgan.archs.stylegan2_bilinear_arch import StyleGAN2GeneratorBilinear
from gfpgan.archs.temporal_arch import TemporalGFPGAN, TemporalState, TemporalStep
from gfpgan.archs.vgg_arch import VGGFeatureExtractor

__all__ = ["GFPGANv1", "GFPGANv1Clean", "GFPGANBilinear", "RestoreFormer", "StyleGAN2Generator",
           "StyleGAN2GeneratorClean", "StyleGAN2GeneratorBilinear", "TemporalGFPGAN",
           "TemporalState", "TemporalStep", "StyleGAN2Discriminator", "FacialComponentDiscriminator",
           "ResNetArcFace", "VGGFeatureExtractor"]
