"""Network architectures (pure PyTorch). Importing this package registers every class in
``gfpgan.registry.ARCH_REGISTRY`` under the reference implementation's names."""

from gfpgan.archs import (  # noqa: F401  (registration)
    arcface_arch, discriminator_arch, gfpgan_arch, stylegan2_arch, temporal_arch, vgg_arch)
from gfpgan.archs.arcface_arch import ResNetArcFace
from gfpgan.archs.discriminator_arch import FacialComponentDiscriminator, StyleGAN2Discriminator
from gfpgan.archs.gfpgan_arch import GFPGANv1, GFPGANv1Clean
from gfpgan.archs.stylegan2_arch import StyleGAN2Generator, StyleGAN2GeneratorClean
from gfpgan.archs.temporal_arch import TemporalGFPGAN, TemporalState, TemporalStep
from gfpgan.archs.vgg_arch import VGGFeatureExtractor

__all__ = ["GFPGANv1", "GFPGANv1Clean", "StyleGAN2Generator", "StyleGAN2GeneratorClean", "TemporalGFPGAN",
           "TemporalState", "TemporalStep", "StyleGAN2Discriminator", "FacialComponentDiscriminator",
           "ResNetArcFace", "VGGFeatureExtractor"]
