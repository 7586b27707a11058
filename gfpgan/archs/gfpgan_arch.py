"""GFP-GAN generator (Wang et al., "Towards Real-World Blind Face Restoration with Generative Facial
Prior", CVPR 2021, arXiv:2101.04061).

A U-Net degradation-removal module encodes the degraded face into a W+ latent (one 512-d code per
StyleGAN2 layer) and a pyramid of spatial features; a pretrained StyleGAN2 generator decodes the
latent, and Channel-Split Spatial Feature Transform (CS-SFT) layers modulate half of its channels
with per-pixel (scale, shift) maps predicted from the U-Net features (the other half stays free for
the prior's realism). The U-Net decoder also emits an RGB image at every scale, trained with the
multi-scale "pyramid" restoration loss.

* ``GFPGANv1Clean``: plain conv/linear layers and bilinear resampling (v1.2/v1.3/v1.4 checkpoints).
* ``GFPGANv1``: the paper's original layout with equalized-LR layers and FIR resampling
  (``GFPGANv1.pth``), in pure PyTorch.
"""

import math
import os
from typing import Callable, List, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from gfpgan.archs.stylegan2_arch import StyleGAN2Generator, StyleGAN2GeneratorClean
from gfpgan.archs.stylegan2_ops import (
    SQRT2,
    ConvLayer,
    EqualConv2d,
    EqualLinear,
    FusedLeakyReLU,
    ResBlock,
    ScaledLeakyReLU,
    check_size,
    stylegan2_channels,
)
from gfpgan.errors import UserError
from gfpgan.registry import ARCH_REGISTRY


def load_decoder_weights(decoder: nn.Module, path: str) -> None:
    """Load a StyleGAN2 prior (``params_ema``, else ``params``, else a raw state dict) strictly."""
    if not os.path.isfile(path):
        raise UserError(f"StyleGAN2 prior {path} (decoder_load_path) not found: download "
                        f"StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth from the GFPGAN v0.1.0 release "
                        f"or fix the path.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("params_ema", "params"):
        if isinstance(state, dict) and key in state:
            state = state[key]
            break
    try:
        decoder.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UserError(f"StyleGAN2 prior {path} does not fit the decoder (check out_size, "
                        f"channel_multiplier, narrow and the arch variant): {str(exc).splitlines()[0]}"
                        ) from exc


class _GFPGANBase(nn.Module):
    """The forward pass shared by both variants (they differ only in their layers)."""

    def _setup(self, out_size, num_style_feat, different_w, input_is_latent):
        self.log_size = check_size(out_size)
        self.num_style_feat = num_style_feat
        self.different_w = different_w
        self.input_is_latent = input_is_latent
        n_codes = (2 * self.log_size - 2) if different_w else 1
        return n_codes * num_style_feat

    def _finish(self, decoder_load_path, fix_decoder):
        if decoder_load_path:
            load_decoder_weights(self.stylegan_decoder, decoder_load_path)
        if fix_decoder:
            for p in self.stylegan_decoder.parameters():
                p.requires_grad_(False)
        if self.input_is_latent:
            # the U-Net predicts w itself, so the decoder's style MLP never runs: frozen, it neither
            # trips DDP's unused-parameter check nor gets optimizer state (the weights still load)
            self.stylegan_decoder.style_mlp.requires_grad_(False)

    def forward(self, x: torch.Tensor, return_latents: bool = False, return_rgb: bool = True,
                randomize_noise: Optional[bool] = None, **kwargs) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Restore aligned faces.

        Args:
            x: (B, 3, S, S) degraded faces in [-1, 1].
            return_latents: accepted for compatibility (the reference also drops the latent).
            return_rgb: compute the U-Net's multi-scale RGB outputs (training's pyramid loss); False
                skips them (faster inference).
            randomize_noise: None = fresh StyleGAN noise in train mode and the fixed noise buffers in
                eval mode (deterministic, flicker-free video); True/False force either.
            **kwargs: ignored (e.g. the reference CLI's ``weight``).

        Returns:
            (image (B, 3, S, S) roughly in [-1, 1], out_rgbs: list of (B, 3, 8*2^i, 8*2^i) or []).
        """
        feat, skips, style = self.encode(x)
        return self.decode(feat, skips, style, return_rgb=return_rgb, randomize_noise=randomize_noise)

    def encode(self, x: torch.Tensor, adapt: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
               ) -> Tuple[torch.Tensor, List[torch.Tensor], torch.Tensor]:
        """U-Net encoder: (deepest feature (B, C, 4, 4), skips from fine to coarse, style code).

        Args:
            x: (B, 3, S, S) faces in [-1, 1].
            adapt: optional ``adapt(feature) -> feature`` applied to the first (full-size) feature
                (the temporal fusion's entry point).
        """
        feat = self._encode_first(x)
        if adapt is not None:
            feat = adapt(feat)
        skips = []
        for down in self.conv_body_down:
            feat = down(feat)
            skips.append(feat)
        feat = self._encode_final(feat)
        style = self.final_linear(feat.flatten(1))
        if self.different_w:
            style = style.view(style.shape[0], -1, self.num_style_feat)
        return feat, skips, style

    def decode(self, feat: torch.Tensor, skips: List[torch.Tensor], style: torch.Tensor,
               return_rgb: bool = True, randomize_noise: Optional[bool] = None,
               adapt: Optional[Callable[[int, torch.Tensor], torch.Tensor]] = None
               ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """U-Net decoder, CS-SFT conditions and the StyleGAN2 decoder (see :meth:`forward`).

        Args:
            feat, skips, style: :meth:`encode`'s outputs.
            return_rgb, randomize_noise: as in :meth:`forward`.
            adapt: optional ``adapt(level, feature) -> feature`` applied to each U-Net decoder level
                (8 px first) before its conditions are computed (the temporal adapter's entry point).
        """
        conditions, out_rgbs = [], []
        for i, up in enumerate(self.conv_body_up):
            feat = up(feat + skips[-1 - i])
            if adapt is not None:
                feat = adapt(i, feat)
            conditions.append((self.condition_scale[i](feat), self.condition_shift[i](feat)))
            if return_rgb:
                out_rgbs.append(self.toRGB[i](feat))
        image, _ = self.stylegan_decoder([style], conditions=conditions, input_is_latent=self.input_is_latent,
                                         randomize_noise=randomize_noise)
        return image, out_rgbs


class ResBlockClean(nn.Module):
    """conv3x3-lrelu, bilinear x2 / x0.5, conv3x3-lrelu, plus a resampled 1x1 skip.

    Args:
        in_channels, out_channels: channel counts.
        mode: 'down' or 'up'.
    """

    def __init__(self, in_channels: int, out_channels: int, mode: str = "down"):
        super().__init__()
        if mode not in ("down", "up"):
            raise ValueError(f"mode must be 'down' or 'up', got {mode!r}")
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.scale_factor = 0.5 if mode == "down" else 2
        # bilinear resampling and a bias-free 1x1 conv commute: run the conv at the lower resolution
        # (before upsampling; identical result up to rounding, 4x fewer conv pixels)
        self._skip_first = mode == "up"

    def _resample(self, x):
        return F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)

    def forward(self, x):
        out = self._resample(F.leaky_relu(self.conv1(x), 0.2, inplace=True))
        out = F.leaky_relu(self.conv2(out), 0.2, inplace=True)
        skip = self._resample(self.skip(x)) if self._skip_first else self.skip(self._resample(x))
        return out + skip


@ARCH_REGISTRY.register()
class GFPGANv1Clean(_GFPGANBase):
    """GFP-GAN without custom ops: U-Net + CS-SFT + ``StyleGAN2GeneratorClean`` decoder.

    Args:
        out_size: face size, a power of two in [8, 1024] (512 for the released models).
        num_style_feat: style code size.
        channel_multiplier: 2 for v1.2-v1.4.
        decoder_load_path: StyleGAN2 prior to load into ``stylegan_decoder`` (training).
        fix_decoder: freeze the decoder (requires_grad False).
        num_mlp: style MLP depth (unused at inference when ``input_is_latent``).
        input_is_latent: the U-Net outputs w directly (True for the releases).
        different_w: one code per decoder layer (W+), (2*log2(S)-2) x num_style_feat.
        narrow: scales every channel count (tests use 0.25-0.5).
        sft_half: CS-SFT on half of the decoder channels (True for the releases).
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, channel_multiplier: float = 1,
                 decoder_load_path: Optional[str] = None, fix_decoder: bool = True, num_mlp: int = 8,
                 input_is_latent: bool = False, different_w: bool = False, narrow: float = 1,
                 sft_half: bool = False):
        super().__init__()
        linear_out = self._setup(out_size, num_style_feat, different_w, input_is_latent)
        ch = stylegan2_channels(channel_multiplier, narrow * 0.5)  # the U-Net is half as wide
        self.conv_body_first = nn.Conv2d(3, ch[str(out_size)], 1)
        self.conv_body_down = nn.ModuleList()
        in_ch = ch[str(out_size)]
        for i in range(self.log_size, 2, -1):
            self.conv_body_down.append(ResBlockClean(in_ch, ch[str(2 ** (i - 1))], mode="down"))
            in_ch = ch[str(2 ** (i - 1))]
        self.final_conv = nn.Conv2d(in_ch, ch["4"], 3, 1, 1)
        self.conv_body_up = nn.ModuleList()
        self.toRGB = nn.ModuleList()
        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        in_ch = ch["4"]
        for i in range(3, self.log_size + 1):
            c = ch[str(2 ** i)]
            self.conv_body_up.append(ResBlockClean(in_ch, c, mode="up"))
            self.toRGB.append(nn.Conv2d(c, 3, 1))
            sft_c = c if sft_half else 2 * c
            for seq in (self.condition_scale, self.condition_shift):
                seq.append(nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.LeakyReLU(0.2),
                                         nn.Conv2d(c, sft_c, 3, 1, 1)))
            in_ch = c
        self.final_linear = nn.Linear(ch["4"] * 16, linear_out)
        self.stylegan_decoder = StyleGAN2GeneratorClean(
            out_size, num_style_feat=num_style_feat, num_mlp=num_mlp, channel_multiplier=channel_multiplier,
            narrow=narrow, sft_half=sft_half)
        self._finish(decoder_load_path, fix_decoder)

    def _encode_first(self, x):
        return F.leaky_relu(self.conv_body_first(x), 0.2, inplace=True)

    def _encode_final(self, feat):
        return F.leaky_relu(self.final_conv(feat), 0.2, inplace=True)


class ConvUpLayer(nn.Module):
    """Bilinear x2 then an equalized conv; optional bias or fused bias-lrelu (``activation.bias``)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 bias_init_val=0, activate=True):
        super().__init__()
        self.stride, self.padding = stride, padding
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        if bias and not activate:
            self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init_val)))
        else:
            self.register_parameter("bias", None)
        if activate:
            self.activation = FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU(0.2)
        else:
            self.activation = None

    def forward(self, x):
        out = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        out = F.conv2d(out, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)
        return out if self.activation is None else self.activation(out)


class ResUpBlock(nn.Module):
    """Original GFPGANv1 upsampling residual block: (conv, up-conv) + up-1x1 skip, / sqrt(2)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvUpLayer(in_channels, out_channels, 3, padding=1)
        self.skip = ConvUpLayer(in_channels, out_channels, 1, bias=False, activate=False)

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


@ARCH_REGISTRY.register()
class GFPGANv1(_GFPGANBase):
    """GFP-GAN as in the paper (``GFPGANv1.pth``): equalized-LR U-Net + ``StyleGAN2Generator`` decoder.

    Args:
        out_size: face size, a power of two in [8, 1024].
        num_style_feat: style code size.
        channel_multiplier: 1 for the paper model and its StyleGAN2 prior.
        resample_kernel: 1-D FIR taps of the blur used for resampling.
        decoder_load_path: StyleGAN2 prior (``params_ema`` is loaded into ``stylegan_decoder``).
        fix_decoder: freeze the decoder.
        num_mlp: style MLP depth.
        lr_mlp: learning-rate multiplier of the style MLP.
        input_is_latent: the U-Net outputs w directly.
        different_w: one code per decoder layer (W+).
        narrow: scales every channel count.
        sft_half: CS-SFT on half of the decoder channels.
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, channel_multiplier: float = 1,
                 resample_kernel=(1, 3, 3, 1), decoder_load_path: Optional[str] = None,
                 fix_decoder: bool = True, num_mlp: int = 8, lr_mlp: float = 0.01,
                 input_is_latent: bool = False, different_w: bool = False, narrow: float = 1,
                 sft_half: bool = False):
        super().__init__()
        linear_out = self._setup(out_size, num_style_feat, different_w, input_is_latent)
        rk = tuple(resample_kernel)
        ch = stylegan2_channels(channel_multiplier, narrow * 0.5)
        self.conv_body_first = ConvLayer(3, ch[str(out_size)], 1)
        self.conv_body_down = nn.ModuleList()
        in_ch = ch[str(out_size)]
        for i in range(self.log_size, 2, -1):
            self.conv_body_down.append(self._down_block(in_ch, ch[str(2 ** (i - 1))], rk))
            in_ch = ch[str(2 ** (i - 1))]
        self.final_conv = ConvLayer(in_ch, ch["4"], 3)
        self.conv_body_up = nn.ModuleList()
        self.toRGB = nn.ModuleList()
        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        in_ch = ch["4"]
        for i in range(3, self.log_size + 1):
            c = ch[str(2 ** i)]
            self.conv_body_up.append(ResUpBlock(in_ch, c))
            self.toRGB.append(EqualConv2d(c, 3, 1))
            sft_c = c if sft_half else 2 * c
            for seq, bias0 in ((self.condition_scale, 1.0), (self.condition_shift, 0.0)):
                # scale starts at 1 and shift at 0: SFT begins as the identity
                seq.append(nn.Sequential(EqualConv2d(c, c, 3, padding=1), ScaledLeakyReLU(0.2),
                                         EqualConv2d(c, sft_c, 3, padding=1, bias_init_val=bias0)))
            in_ch = c
        self.final_linear = EqualLinear(ch["4"] * 16, linear_out)
        self.stylegan_decoder = self._decoder(out_size, num_style_feat=num_style_feat, num_mlp=num_mlp,
                                              channel_multiplier=channel_multiplier, resample_kernel=rk,
                                              lr_mlp=lr_mlp, narrow=narrow, sft_half=sft_half)
        self._finish(decoder_load_path, fix_decoder)

    # the two layers that differ in GFPGANBilinear (gfpgan_bilinear_arch), which overrides them
    def _down_block(self, in_channels: int, out_channels: int, resample_kernel) -> nn.Module:
        return ResBlock(in_channels, out_channels, resample_kernel)

    def _decoder(self, out_size: int, **kwargs) -> nn.Module:
        return StyleGAN2Generator(out_size, **kwargs)

    def _encode_first(self, x):
        return self.conv_body_first(x)

    def _encode_final(self, feat):
        return self.final_conv(feat)
