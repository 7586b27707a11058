"""GFPGANBilinear (the reference's ``gfpgan.archs.gfpgan_bilinear_arch``): GFP-GAN's original
layout (Wang et al., CVPR 2021, arXiv:2101.04061) with bilinear instead of FIR resampling.

The U-Net, CS-SFT and StyleGAN2 decoder of :class:`gfpgan.archs.gfpgan_arch.GFPGANv1`, with the
encoder's residual blocks and the decoder taken from :mod:`gfpgan.archs.stylegan2_bilinear_arch`;
the state-dict keys are those of the reference's GFPGANBilinear (and of GFPGANv1). Unlike the
reference, ``forward`` accepts ``weight=`` and other keywords, so ``arch='bilinear'`` works in
``GFPGANer.enhance`` (the reference raises a TypeError there).
"""

from typing import Optional

from torch import nn

from gfpgan.archs.gfpgan_arch import GFPGANv1 as _GFPGANv1
from gfpgan.archs.stylegan2_bilinear_arch import (
    BilinearSynthesis,
    ResBlockBilinear,
    StyleGAN2GeneratorBilinearSFT,
)
from gfpgan.compat.archs import ReferenceRestorer
from gfpgan.registry import ARCH_REGISTRY

__all__ = ["GFPGANBilinear", "StyleGAN2GeneratorBilinearSFT"]


@ARCH_REGISTRY.register()
class GFPGANBilinear(ReferenceRestorer, _GFPGANv1):
    """GFP-GAN with bilinear resampling, the reference's constructor and forward.

    Args: those of :class:`gfpgan.archs.gfpgan_arch.GFPGANv1` except ``resample_kernel`` (there is
    no FIR filter); GFPGANer builds it with ``channel_multiplier=2``.
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, channel_multiplier: float = 1,
                 decoder_load_path: Optional[str] = None, fix_decoder: bool = True, num_mlp: int = 8,
                 lr_mlp: float = 0.01, input_is_latent: bool = False, different_w: bool = False,
                 narrow: float = 1, sft_half: bool = False):
        super().__init__(out_size, num_style_feat=num_style_feat, channel_multiplier=channel_multiplier,
                         decoder_load_path=decoder_load_path, fix_decoder=fix_decoder, num_mlp=num_mlp,
                         lr_mlp=lr_mlp, input_is_latent=input_is_latent, different_w=different_w,
                         narrow=narrow, sft_half=sft_half)

    def _down_block(self, in_channels: int, out_channels: int, resample_kernel) -> nn.Module:
        return ResBlockBilinear(in_channels, out_channels)

    def _decoder(self, out_size: int, resample_kernel=None, **kwargs) -> nn.Module:
        return BilinearSynthesis(out_size, **kwargs)
