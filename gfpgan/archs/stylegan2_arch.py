"""StyleGAN2 generators (Karras et al., "Analyzing and Improving the Image Quality of StyleGAN",
CVPR 2020, arXiv:1912.04958): modulated convolution with weight demodulation, per-layer noise
injection, an 8-layer style MLP and to-RGB skip connections.

Two variants with the parameter names of the reference checkpoints:

* ``StyleGAN2GeneratorClean``: plain ``nn.Linear`` modulation, pre-scaled weights, bilinear
  resampling (the decoder of GFPGAN v1.2/v1.3/v1.4).
* ``StyleGAN2Generator``: equalized-LR layers, FIR (upfirdn2d) resampling and fused bias-leaky-ReLU,
  written in plain PyTorch (the decoder of the original GFPGANv1 and the official
  ``StyleGAN2_512_Cmul1`` prior).

Both take optional SFT conditions (for GFPGAN's CS-SFT) and, unlike the reference, use the stored
noise buffers in eval mode unless told otherwise, so video frames do not flicker from noise.
"""

import math
import random
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from gfpgan.archs.stylegan2_ops import (
    SQRT2,
    EqualLinear,
    FusedLeakyReLU,
    NormStyleCode,
    UpFirDnSmooth,
    UpFirDnUpsample,
    check_size,
    stylegan2_channels,
)
from gfpgan.registry import ARCH_REGISTRY


def modulated_conv(x: torch.Tensor, weight: torch.Tensor, s: torch.Tensor, demodulate: bool, eps: float,
                   gain: float = 1.0, bias: Optional[torch.Tensor] = None, padding: int = 0,
                   stride: int = 1, transpose: bool = False, fused: Optional[bool] = None) -> torch.Tensor:
    """StyleGAN2 modulated (and optionally demodulated) convolution.

    Args:
        x: (B, I, H, W) input features.
        weight: (O, I, k, k) already-scaled shared weight.
        s: (B, I) per-sample input-channel styles.
        demodulate: normalise each output channel of the modulated weight to unit norm.
        eps: added under the demodulation square root.
        gain: constant output gain (folded into the weight, free).
        bias: optional (O,) bias added to the output.
        padding: convolution padding.
        stride: convolution stride (ignored with ``transpose``, which is always stride 2).
        transpose: stride-2 transposed convolution (original StyleGAN2 upsampling).
        fused: per-sample weights with a grouped conv (True) or input scaling around one shared
            conv (False). None picks fused for batch 1 (cheapest) and shared otherwise, which lets
            cuDNN/oneDNN run one large convolution instead of B small ones.

    Returns:
        (B, O, H', W') output.
    """
    b, i, h, w = x.shape
    o = weight.shape[0]
    if fused is None:
        fused = b == 1
    if fused:
        wt = weight.unsqueeze(0) * s.view(b, 1, i, 1, 1)  # (B, O, I, k, k)
        if x.dtype == torch.float32:  # the reference's arithmetic, step for step
            if demodulate:
                wt = wt * torch.rsqrt(wt.pow(2).sum([2, 3, 4]) + eps).view(b, o, 1, 1, 1)
            if gain != 1.0:
                wt = wt * gain
        else:  # reduced precision: the demodulation's sum of squares in fp32 (see the shared path)
            wt = wt * _demodulation(weight, s, demodulate, eps, gain).to(wt.dtype).view(b, o, 1, 1, 1)
        k = weight.shape[-1]
        # batch 1 needs no folding; reshaping it anyway (a no-op view) leaves a degenerate batch
        # stride on channels_last tensors that sends later kernels (bilinear upsampling: 10x) down
        # their slow strided paths
        xg = x if b == 1 else x.reshape(1, b * i, h, w)
        gbias = None if bias is None else bias.repeat(b)
        if transpose:
            wt = wt.transpose(1, 2).reshape(b * i, o, k, k)
            out = F.conv_transpose2d(xg, wt, gbias, stride=2, groups=b)
        else:
            out = F.conv2d(xg, wt.reshape(b * o, i, k, k), gbias, stride=stride, padding=padding, groups=b)
        return out if b == 1 else out.view(b, o, out.shape[-2], out.shape[-1])
    x = x * s.view(b, i, 1, 1)
    if transpose:
        out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
    else:
        out = F.conv2d(x, weight, stride=stride, padding=padding)
    scale = _demodulation(weight, s, demodulate, eps, gain).to(out.dtype).view(-1, o, 1, 1)
    if bias is None:
        return out * scale
    return torch.addcmul(bias.to(out.dtype).view(1, o, 1, 1), out, scale)


def _demodulation(weight: torch.Tensor, s: torch.Tensor, demodulate: bool, eps: float,
                  gain: float) -> torch.Tensor:
    """The per-output-channel factor (B, O) (or (1, O) without demodulation) of the modulated
    weight, in fp32: ||W * s||^2 over (I, k, k) = sum_I s_I^2 * ||W_oI||^2 is one small matmul,
    kept out of autocast (a half-precision sum of squares loses the demodulation's accuracy)."""
    if not demodulate:
        return torch.full((1, weight.shape[0]), gain, dtype=torch.float32, device=weight.device)
    with torch.autocast(device_type=weight.device.type, enabled=False):
        return torch.rsqrt(s.float().pow(2) @ weight.float().pow(2).sum([2, 3]).t() + eps) * gain


def _weight_5d_in_state_dict(module: nn.Module) -> None:
    """Keep ``module.weight`` 4-D (O, I, k, k) in memory but (1, O, I, k, k) in state dicts.

    The released checkpoints store modulated-conv weights with a leading 1; as a 5-D parameter it
    would break ``Module.to(memory_format=torch.channels_last)``, so only the state dict has it.
    """

    def save(mod, state, prefix, meta):
        key = prefix + "weight"
        # keep_vars=True hands out the Parameter itself (ONNX export and tracing map parameters
        # that way): leave it untouched; plain state dicts get the released 5-D layout
        if key in state and state[key] is not mod.weight and state[key].ndim == 4:
            state[key] = state[key].unsqueeze(0)

    def load(mod, state, prefix, *args):
        key = prefix + "weight"
        if key in state and state[key].ndim == 5 and state[key].shape[0] == 1:
            state[key] = state[key][0]

    module.register_state_dict_post_hook(save)
    module.register_load_state_dict_pre_hook(load)


def _noise_like(out: torch.Tensor, noise: Optional[torch.Tensor]) -> torch.Tensor:
    if noise is None:  # fresh noise, one map per sample (training / explicit randomize_noise=True)
        b, _, h, w = out.shape
        return torch.randn(b, 1, h, w, dtype=out.dtype, device=out.device)
    return noise.to(out.dtype)


class ModulatedConv2d(nn.Module):
    """Clean modulated conv: ``modulation`` is an ``nn.Linear``; ``weight`` (O, I, k, k) is pre-scaled.

    Resampling is bilinear (x2 before the conv for 'upsample', x0.5 for 'downsample').
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool = True, sample_mode: Optional[str] = None, eps: float = 1e-8):
        super().__init__()
        if sample_mode not in ("upsample", "downsample", None):
            raise ValueError(f"sample_mode must be 'upsample', 'downsample' or None, got {sample_mode!r}")
        self.demodulate, self.sample_mode, self.eps = demodulate, sample_mode, eps
        self.padding = kernel_size // 2
        self.modulation = nn.Linear(num_style_feat, in_channels)
        nn.init.kaiming_normal_(self.modulation.weight, a=0, mode="fan_in", nonlinearity="linear")
        nn.init.constant_(self.modulation.bias, 1.0)  # styles start around 1: identity modulation
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size)
                                   / math.sqrt(in_channels * kernel_size ** 2))
        _weight_5d_in_state_dict(self)

    def forward(self, x, style, gain: float = 1.0, bias=None):
        """(B, I, H, W), style (B, num_style_feat) -> (B, O, H', W')."""
        if self.sample_mode is not None:
            x = F.interpolate(x, scale_factor=2 if self.sample_mode == "upsample" else 0.5, mode="bilinear",
                              align_corners=False)
        return modulated_conv(x, self.weight, self.modulation(style), self.demodulate, self.eps,
                              gain=gain, bias=bias, padding=self.padding)


class StyleConv(nn.Module):
    """Clean style conv: modulated conv x sqrt(2), noise ``weight`` (1,), ``bias`` (1, C, 1, 1), lrelu."""

    def __init__(self, in_channels, out_channels, kernel_size, num_style_feat, demodulate=True,
                 sample_mode=None):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, kernel_size, num_style_feat,
                                              demodulate=demodulate, sample_mode=sample_mode)
        self.weight = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x, style, noise=None):
        # the sqrt(2) "for conversion" and the bias are folded into the conv (bias commutes with the noise)
        out = self.modulated_conv(x, style, gain=SQRT2, bias=self.bias.view(-1))
        # in place on the fresh conv output (autograd-safe): saves two full-size temporaries
        out.add_(self.weight.to(out.dtype) * _noise_like(out, noise))  # stays in the autocast dtype
        return F.leaky_relu(out, 0.2, inplace=True)


class ToRGB(nn.Module):
    """Clean to-RGB: 1x1 modulated conv without demodulation + bias + bilinear-upsampled skip."""

    def __init__(self, in_channels, num_style_feat, upsample=True):
        super().__init__()
        self.upsample = upsample
        self.modulated_conv = ModulatedConv2d(in_channels, 3, 1, num_style_feat, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        # the RGB skip chain sums every scale into the image: kept in fp32 under reduced precision
        # (3 channels, free; 1 dB closer to the fp32 output with bf16)
        out = self.modulated_conv(x, style, bias=self.bias.view(-1)).float()
        if skip is not None:
            if self.upsample:
                skip = F.interpolate(skip, scale_factor=2, mode="bilinear", align_corners=False)
            out = out + skip
        return out


class ConstantInput(nn.Module):
    """Learned 4x4 constant that starts the synthesis: ``weight`` (1, C, 4, 4)."""

    def __init__(self, num_channel, size):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, num_channel, size, size))

    def forward(self, batch: int):
        return self.weight.expand(batch, -1, -1, -1)


class ModulatedConv2dOrig(nn.Module):
    """Original modulated conv: ``EqualLinear`` modulation (bias 1), run-time weight scale, FIR resampling."""

    def __init__(self, in_channels, out_channels, kernel_size, num_style_feat, demodulate=True,
                 sample_mode=None, resample_kernel=(1, 3, 3, 1), eps=1e-8):
        super().__init__()
        if sample_mode == "upsample":
            self.smooth = UpFirDnSmooth(resample_kernel, upsample_factor=2, kernel_size=kernel_size)
        elif sample_mode == "downsample":
            self.smooth = UpFirDnSmooth(resample_kernel, downsample_factor=2, kernel_size=kernel_size)
        elif sample_mode is not None:
            raise ValueError(f"sample_mode must be 'upsample', 'downsample' or None, got {sample_mode!r}")
        self.demodulate, self.sample_mode, self.eps = demodulate, sample_mode, eps
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.modulation = EqualLinear(num_style_feat, in_channels, bias=True, bias_init_val=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        _weight_5d_in_state_dict(self)

    def forward(self, x, style):
        w, s = self.weight * self.scale, self.modulation(style)
        if self.sample_mode == "upsample":
            return self.smooth(modulated_conv(x, w, s, self.demodulate, self.eps, transpose=True))
        if self.sample_mode == "downsample":
            x = self.smooth(x)
            return modulated_conv(x, w, s, self.demodulate, self.eps, stride=2)
        return modulated_conv(x, w, s, self.demodulate, self.eps, padding=self.padding)


class StyleConvOrig(nn.Module):
    """Original style conv: modulated conv, noise ``weight`` (1,), fused bias-lrelu ``activate.bias`` (C,)."""

    def __init__(self, in_channels, out_channels, kernel_size, num_style_feat, demodulate=True,
                 sample_mode=None, resample_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.modulated_conv = ModulatedConv2dOrig(in_channels, out_channels, kernel_size, num_style_feat,
                                                  demodulate, sample_mode, resample_kernel)
        self.weight = nn.Parameter(torch.zeros(1))
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x, style, noise=None):
        out = self.modulated_conv(x, style)
        return self.activate(out + self.weight.to(out.dtype) * _noise_like(out, noise))


class ToRGBOrig(nn.Module):
    """Original to-RGB: 1x1 modulated conv + bias + FIR-upsampled skip."""

    def __init__(self, in_channels, num_style_feat, upsample=True, resample_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.upsample = UpFirDnUpsample(resample_kernel, factor=2) if upsample else None
        self.modulated_conv = ModulatedConv2dOrig(in_channels, 3, 1, num_style_feat, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        out = self.modulated_conv(x, style).float() + self.bias  # fp32 skip chain, as in ToRGB
        if skip is not None:
            out = out + (self.upsample(skip) if self.upsample is not None else skip)
        return out


class _StyleGAN2Base(nn.Module):
    """Shared synthesis loop; subclasses build the layers with their own parameter layout."""

    def _build(self, out_size, num_style_feat, channel_multiplier, narrow, sft_half, style_conv, to_rgb):
        self.log_size = check_size(out_size)
        self.num_style_feat = num_style_feat
        self.sft_half = sft_half
        self.channels = channels = stylegan2_channels(channel_multiplier, narrow)
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.num_latent = self.log_size * 2 - 2
        self.constant_input = ConstantInput(channels["4"], size=4)
        self.style_conv1 = style_conv(channels["4"], channels["4"], None)
        self.to_rgb1 = to_rgb(channels["4"], False)
        self.style_convs, self.to_rgbs, self.noises = nn.ModuleList(), nn.ModuleList(), nn.Module()
        for idx in range(self.num_layers):
            res = 2 ** ((idx + 5) // 2)
            self.noises.register_buffer(f"noise{idx}", torch.randn(1, 1, res, res))
        in_ch = channels["4"]
        for i in range(3, self.log_size + 1):
            out_ch = channels[str(2 ** i)]
            self.style_convs.append(style_conv(in_ch, out_ch, "upsample"))
            self.style_convs.append(style_conv(out_ch, out_ch, None))
            self.to_rgbs.append(to_rgb(out_ch, True))
            in_ch = out_ch

    def make_noise(self) -> List[torch.Tensor]:
        """Fresh noise maps, one per style conv: [(1,1,4,4), (1,1,8,8) x2, ...]."""
        dev = self.constant_input.weight.device
        return [torch.randn(1, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2), device=dev)
                for i in range(self.num_layers)]

    def get_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Map z (B, num_style_feat) to w (B, num_style_feat) with the style MLP."""
        return self.style_mlp(z)

    def mean_latent(self, num_latent: int) -> torch.Tensor:
        """Average w of ``num_latent`` random z, (1, num_style_feat); the truncation centre."""
        z = torch.randn(num_latent, self.num_style_feat, device=self.constant_input.weight.device)
        return self.style_mlp(z).mean(0, keepdim=True)

    def forward(self, styles, input_is_latent: bool = False, noise: Optional[Sequence] = None,
                randomize_noise: Optional[bool] = None, truncation: float = 1, truncation_latent=None,
                inject_index: Optional[int] = None, return_latents: bool = False,
                conditions: Optional[Sequence[Tuple[torch.Tensor, torch.Tensor]]] = None):
        """Synthesise images.

        Args:
            styles: list of one or two codes, each (B, num_style_feat) (z, or w if
                ``input_is_latent``) or (B, num_latent, num_style_feat) (W+); a bare tensor is one code.
            input_is_latent: the styles are already w (skip the style MLP).
            noise: explicit noise maps, one per style conv, or None.
            randomize_noise: None = fresh noise in train mode, the stored buffers in eval mode;
                True/False force one or the other.
            truncation: truncation psi (1 = off), towards ``truncation_latent``.
            inject_index: style-mixing crossover layer for two codes (random if None).
            return_latents: also return the W+ latent (B, num_latent, num_style_feat).
            conditions: per-resolution (scale, shift) SFT pairs, starting at 8x8, applied after the
                first conv of each resolution to all channels, or the second half with ``sft_half``.

        Returns:
            (image (B, 3, S, S), latent or None).
        """
        if torch.is_tensor(styles):
            styles = [styles]
        if not input_is_latent:
            styles = [self.style_mlp(s) for s in styles]
        if noise is None:
            if randomize_noise is None:
                randomize_noise = self.training
            noise = ([None] * self.num_layers if randomize_noise
                     else [getattr(self.noises, f"noise{i}") for i in range(self.num_layers)])
        if truncation < 1:
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        if len(styles) == 1:
            latent = styles[0]
            if latent.ndim == 2:  # one w for every layer
                latent = latent.unsqueeze(1).expand(-1, self.num_latent, -1)
        else:
            if inject_index is None:
                inject_index = random.randint(1, self.num_latent - 1)
            latent = torch.cat([styles[0].unsqueeze(1).expand(-1, inject_index, -1),
                                styles[1].unsqueeze(1).expand(-1, self.num_latent - inject_index, -1)], 1)
        conditions = conditions or ()

        out = self.constant_input(latent.shape[0])
        out = self.style_conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        for j, to_rgb in enumerate(self.to_rgbs):
            i = 2 * j + 1
            out = self.style_convs[2 * j](out, latent[:, i], noise=noise[i])
            if j < len(conditions):  # the conditions may cover fewer levels
                scale, shift = conditions[j]
                if self.sft_half:
                    half = out.shape[1] // 2
                    if out.requires_grad:  # autograd needs the activation intact: build a new tensor
                        out = torch.cat([out[:, :half], torch.addcmul(shift, out[:, half:], scale)], 1)
                    else:  # inference: modulate the second half in place, no full-size copy
                        out[:, half:].mul_(scale).add_(shift)
                else:
                    out = torch.addcmul(shift, out, scale)
            out = self.style_convs[2 * j + 1](out, latent[:, i + 1], noise=noise[i + 1])
            skip = to_rgb(out, latent[:, i + 2], skip)
        return skip, (latent if return_latents else None)


@ARCH_REGISTRY.register()
class StyleGAN2GeneratorClean(_StyleGAN2Base):
    """StyleGAN2 generator without custom ops (GFPGAN v1.2-v1.4's decoder layout).

    Args:
        out_size: output size, a power of two in [8, 1024].
        num_style_feat: style (w) dimension.
        num_mlp: layers of the style MLP.
        channel_multiplier: widens the 64px+ layers (2 = config-f).
        narrow: scales every channel count (tests use 0.25-0.5).
        sft_half: apply SFT conditions to half of the channels (GFPGAN's CS-SFT).
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8,
                 channel_multiplier: float = 2, narrow: float = 1, sft_half: bool = False):
        super().__init__()
        layers = [NormStyleCode()]
        for _ in range(num_mlp):
            lin = nn.Linear(num_style_feat, num_style_feat)
            nn.init.kaiming_normal_(lin.weight, a=0.2, mode="fan_in", nonlinearity="leaky_relu")
            nn.init.zeros_(lin.bias)
            layers += [lin, nn.LeakyReLU(0.2)]
        self.style_mlp = nn.Sequential(*layers)
        self._build(out_size, num_style_feat, channel_multiplier, narrow, sft_half,
                    lambda i, o, mode: StyleConv(i, o, 3, num_style_feat, sample_mode=mode),
                    lambda i, up: ToRGB(i, num_style_feat, upsample=up))


@ARCH_REGISTRY.register()
class StyleGAN2Generator(_StyleGAN2Base):
    """Original StyleGAN2 generator (BasicSR layout: equalized LR, FIR resampling, fused bias-lrelu).

    Args:
        out_size: output size, a power of two in [8, 1024].
        num_style_feat: style (w) dimension.
        num_mlp: layers of the style MLP.
        channel_multiplier: widens the 64px+ layers.
        resample_kernel: 1-D FIR taps used for up/downsampling.
        lr_mlp: learning-rate multiplier of the style MLP.
        narrow: scales every channel count.
        sft_half: apply SFT conditions to half of the channels.
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8,
                 channel_multiplier: float = 2, resample_kernel=(1, 3, 3, 1), lr_mlp: float = 0.01,
                 narrow: float = 1, sft_half: bool = False):
        super().__init__()
        self.style_mlp = nn.Sequential(NormStyleCode(), *[
            EqualLinear(num_style_feat, num_style_feat, lr_mul=lr_mlp, activation="fused_lrelu")
            for _ in range(num_mlp)])
        rk = tuple(resample_kernel)
        self._build(out_size, num_style_feat, channel_multiplier, narrow, sft_half,
                    lambda i, o, mode: StyleConvOrig(i, o, 3, num_style_feat, sample_mode=mode,
                                                     resample_kernel=rk),
                    lambda i, up: ToRGBOrig(i, num_style_feat, upsample=up, resample_kernel=rk))
