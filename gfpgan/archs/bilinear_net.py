"""GFP-GAN and StyleGAN2 with bilinear resampling (the layout of the reference's GFPGANBilinear).

The original StyleGAN2 layout (equalized-LR layers, ``EqualLinear`` modulation, fused bias-leaky
ReLU, the parameter names of ``StyleGAN2Generator``) with every FIR resampling step replaced by
bilinear interpolation: upsampling style convs interpolate x2 and then convolve (no transposed
convolution), to-RGB skips are interpolated, and the encoder's downsampling convs interpolate x0.5
before a stride-1 convolution. The reference calls it deployment-friendly; its state dicts have
the same keys as the original architecture's. Pure PyTorch here, like every arch of this project.

:class:`GFPGANBilinear` is the U-Net, CS-SFT and StyleGAN2 decoder of
:class:`gfpgan.archs.gfpgan_arch.GFPGANv1` with the encoder's residual blocks and the decoder taken
from here; its state-dict keys are those of the reference's GFPGANBilinear (and of GFPGANv1). Both
classes have this project's calling conventions (see :class:`gfpgan.archs.gfpgan_arch.GFPGANv1`);
the reference's (``gfpgan.archs.gfpgan_bilinear_arch``, ``gfpgan.archs.stylegan2_bilinear_arch``)
are in :mod:`gfpgan.compat.archs`.
"""

from typing import Optional

import torch
from torch import nn

from gfpgan.archs.gfpgan_arch import GFPGANv1
from gfpgan.archs.stylegan2_arch import (
    ModulatedConv2dOrig,
    StyleConvOrig,
    ToRGBOrig,
    _StyleGAN2Base,
    modulated_conv,
)
from gfpgan.archs.stylegan2_ops import (
    EqualConv2d,
    EqualLinear,
    FusedLeakyReLU,
    NormStyleCode,
    ResBlock,
    ScaledLeakyReLU,
)
from gfpgan.registry import ARCH_REGISTRY

__all__ = ["GFPGANBilinear", "StyleGAN2GeneratorBilinear", "ModulatedConv2d", "StyleConv", "ToRGB",
           "ConvLayer", "ResBlockBilinear"]


def _resampler(scale: float, mode: str) -> nn.Upsample:
    return nn.Upsample(scale_factor=scale, mode=mode, align_corners=None if mode == "nearest" else False)


class ModulatedConv2d(ModulatedConv2dOrig):
    """Modulated conv (``EqualLinear`` modulation, run-time weight scale) that resamples its input
    by interpolation: x2 for ``sample_mode='upsample'``, x0.5 for ``'downsample'``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool = True, sample_mode: Optional[str] = None, eps: float = 1e-8,
                 interpolation_mode: str = "bilinear"):
        if sample_mode not in ("upsample", "downsample", None):
            raise ValueError(f"sample_mode must be 'upsample', 'downsample' or None, got {sample_mode!r}")
        super().__init__(in_channels, out_channels, kernel_size, num_style_feat, demodulate, None, eps=eps)
        self.sample_mode = sample_mode
        self.resample = None if sample_mode is None else _resampler(
            2 if sample_mode == "upsample" else 0.5, interpolation_mode)

    def forward(self, x, style):
        if self.resample is not None:
            x = self.resample(x)
        return modulated_conv(x, self.weight * self.scale, self.modulation(style), self.demodulate, self.eps,
                              padding=self.padding)


class StyleConv(StyleConvOrig):
    """Style conv of the bilinear generator: same parameters and forward as ``StyleConvOrig``."""

    def __init__(self, in_channels, out_channels, kernel_size, num_style_feat, demodulate=True,
                 sample_mode=None, interpolation_mode="bilinear"):
        nn.Module.__init__(self)  # StyleConvOrig's three members, with the interpolating conv
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, kernel_size, num_style_feat,
                                              demodulate, sample_mode, interpolation_mode=interpolation_mode)
        self.weight = nn.Parameter(torch.zeros(1))
        self.activate = FusedLeakyReLU(out_channels)


class ToRGB(ToRGBOrig):
    """To-RGB of the bilinear generator: the skip image is interpolated x2 instead of FIR-upsampled."""

    def __init__(self, in_channels, num_style_feat, upsample=True, interpolation_mode="bilinear"):
        super().__init__(in_channels, num_style_feat, upsample=False)
        self.upsample = _resampler(2, interpolation_mode) if upsample else None


class ConvLayer(nn.Sequential):
    """[interpolate x0.5] + EqualConv2d (stride 1, same padding) + [bias-lrelu]; keys ``1.weight``
    after a resampler, ``0.weight`` without, as in the original ``ConvLayer``."""

    def __init__(self, in_channels, out_channels, kernel_size, downsample=False, bias=True, activate=True,
                 interpolation_mode="bilinear"):
        layers = [_resampler(0.5, interpolation_mode)] if downsample else []
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU(0.2))
        super().__init__(*layers)


class ResBlockBilinear(ResBlock):
    """The encoder's residual downsampling block with interpolating convs (keys as ``ResBlock``)."""

    def __init__(self, in_channels, out_channels, interpolation_mode="bilinear"):
        nn.Module.__init__(self)  # ResBlock's members and forward, resampling by interpolation
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True,
                               interpolation_mode=interpolation_mode)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, bias=False, activate=False,
                              interpolation_mode=interpolation_mode)


@ARCH_REGISTRY.register()
class StyleGAN2GeneratorBilinear(_StyleGAN2Base):
    """The bilinear StyleGAN2 generator with this project's forward (fixed noise in eval mode,
    conditions as (scale, shift) pairs); GFPGANBilinear's decoder.

    Args:
        out_size: output size, a power of two in [8, 1024].
        num_style_feat: style (w) dimension.
        num_mlp: layers of the style MLP.
        channel_multiplier: widens the 64px+ layers.
        lr_mlp: learning-rate multiplier of the style MLP.
        narrow: scales every channel count.
        sft_half: apply SFT conditions to half of the channels.
        interpolation_mode: 'bilinear' (the released setting) or 'nearest'.
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8,
                 channel_multiplier: float = 2, lr_mlp: float = 0.01, narrow: float = 1,
                 sft_half: bool = False, interpolation_mode: str = "bilinear"):
        super().__init__()
        self.style_mlp = nn.Sequential(NormStyleCode(), *[
            EqualLinear(num_style_feat, num_style_feat, lr_mul=lr_mlp, activation="fused_lrelu")
            for _ in range(num_mlp)])
        mode = interpolation_mode
        self._build(out_size, num_style_feat, channel_multiplier, narrow, sft_half,
                    lambda i, o, sample: StyleConv(i, o, 3, num_style_feat, sample_mode=sample,
                                                   interpolation_mode=mode),
                    lambda i, up: ToRGB(i, num_style_feat, upsample=up, interpolation_mode=mode))


@ARCH_REGISTRY.register()
class GFPGANBilinear(GFPGANv1):
    """GFP-GAN with bilinear resampling.

    Args: those of :class:`gfpgan.archs.gfpgan_arch.GFPGANv1` except ``resample_kernel`` (there is
    no FIR filter).
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
        return StyleGAN2GeneratorBilinear(out_size, **kwargs)
