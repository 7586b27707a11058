"""Pure-PyTorch building blocks of StyleGAN2 (Karras et al., "Analyzing and Improving the Image
Quality of StyleGAN", CVPR 2020, arXiv:1912.04958).

The official StyleGAN2 code and BasicSR use two compiled CUDA kernels, ``upfirdn2d`` (upsample,
FIR filter, downsample) and ``fused_bias_act`` (bias + leaky ReLU + gain). Both are written here
with ordinary PyTorch ops so the same weights run on CPU and GPU, under autocast and under
``torch.compile``. The equalized-learning-rate layers keep BasicSR's parameter names so official
checkpoints load with ``strict=True``.
"""

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

SQRT2 = math.sqrt(2.0)


def make_resample_kernel(k: Sequence[int]) -> torch.Tensor:
    """Build a normalised 2-D FIR kernel from its 1-D taps (outer product), e.g. (1, 3, 3, 1)."""
    k = torch.tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


class _DepthwiseFIR(torch.autograd.Function):
    """``conv2d(x, weight, stride, groups=C)`` for a constant FIR ``weight``, with an explicit
    backward (the transposed convolution) that autograd can differentiate again.

    PyTorch's own double backward of a grouped convolution loops over the groups (a slice and a
    convolution per channel: ~3 ops x 512 channels for one blur of the discriminator), which
    made every lazy-R1 step of the recipe several times the cost of the others. Here the second
    derivative is the first derivative of a transposed convolution: one convolution.
    """

    @staticmethod
    def forward(ctx, x, weight, stride: int):
        ctx.save_for_backward(weight)
        ctx.stride, ctx.in_hw = stride, x.shape[-2:]
        return F.conv2d(x, weight, stride=stride, groups=weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        s, (h, w) = ctx.stride, ctx.in_hw
        kh, kw = weight.shape[-2:]
        extra = (h - ((grad.shape[-2] - 1) * s + kh), w - ((grad.shape[-1] - 1) * s + kw))
        gx = F.conv_transpose2d(grad, weight.to(grad.dtype), stride=s, groups=weight.shape[0],
                                output_padding=extra)
        return gx, None, None


def fir_weight(kernel: torch.Tensor, channels: int, dtype: torch.dtype, device) -> torch.Tensor:
    """The depthwise (C, 1, kh, kw) weight that applies ``kernel`` as a true convolution."""
    kh, kw = kernel.shape
    weight = torch.flip(kernel, [0, 1]).to(dtype=dtype, device=device)
    return weight.view(1, 1, kh, kw).expand(channels, 1, kh, kw).contiguous()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: Tuple[int, int] = (0, 0), weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Zero-insert upsample, pad, FIR-filter and subsample each channel (StyleGAN2's upfirdn2d).

    Args:
        x: (B, C, H, W) features.
        kernel: (kh, kw) FIR kernel (it is flipped, i.e. applied as a true convolution).
        up: integer upsampling factor (zeros inserted between samples).
        down: integer downsampling factor (stride of the filter).
        pad: (before, after) padding applied to both spatial axes; negative values crop.
        weight: ``fir_weight(kernel, C, x.dtype, x.device)`` if the caller keeps it (saves
            rebuilding it on every call).

    Returns:
        (B, C, (H*up + pad0 + pad1 - kh) // down + 1, same for W).
    """
    b, c, h, w = x.shape
    if up > 1:
        # zero insertion: each sample followed by up-1 zeros along both axes
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    if p0 or p1:
        x = F.pad(x, [p0, p1, p0, p1])  # negative values crop, as in the reference kernel
    if weight is None:
        weight = fir_weight(kernel, c, x.dtype, x.device)
    if x.requires_grad and torch.is_grad_enabled() and not torch.jit.is_tracing():
        return _DepthwiseFIR.apply(x, weight, down)  # tracing (export) keeps the plain conv
    return F.conv2d(x, weight, stride=down, groups=c)


class _FIRFilter(nn.Module):
    """Base of the FIR resampling modules: keeps the depthwise weight per (C, dtype, device)."""

    def _weight(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        if torch.compiler.is_compiling():
            return None  # a compiled graph folds the weight's construction anyway
        key = (x.shape[1], x.dtype, x.device)
        cache = self.__dict__.setdefault("_fir_weights", {})
        if key not in cache:
            cache[key] = fir_weight(self.kernel, x.shape[1], x.dtype, x.device)
        return cache[key]


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2,
                     scale: float = SQRT2) -> torch.Tensor:
    """``leaky_relu(x + bias) * scale`` with ``bias`` broadcast over dim 1 (BasicSR's fused op)."""
    if bias is not None:
        shape = [1, -1] + [1] * (x.ndim - 2)
        x = x + bias.view(shape).to(x.dtype)
    return F.leaky_relu(x, negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """Bias + leaky ReLU + gain; its parameter is ``bias`` (C,), as in BasicSR."""

    def __init__(self, channels: int, negative_slope: float = 0.2, scale: float = SQRT2):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x):
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


class ScaledLeakyReLU(nn.Module):
    """Leaky ReLU followed by a sqrt(2) gain (keeps the activation variance, no bias)."""

    def __init__(self, negative_slope: float = 0.2):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope) * SQRT2


class NormStyleCode(nn.Module):
    """Pixel-norm of the style code z: (B, C) -> (B, C) with unit mean square."""

    def forward(self, x):
        return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


class UpFirDnSmooth(_FIRFilter):
    """The blur applied around a strided (transposed) convolution; no parameters.

    Args:
        resample_kernel: 1-D taps of the FIR filter.
        upsample_factor: 2 when it follows a stride-2 transposed conv, else 1.
        downsample_factor: 2 when it precedes a stride-2 conv, else 1.
        kernel_size: size of the convolution it accompanies (sets the padding).
    """

    def __init__(self, resample_kernel, upsample_factor: int = 1, downsample_factor: int = 1,
                 kernel_size: int = 1):
        super().__init__()
        kernel = make_resample_kernel(resample_kernel)
        if upsample_factor > 1:
            kernel = kernel * upsample_factor ** 2
            pad = kernel.shape[0] - upsample_factor - (kernel_size - 1)
            self.pad = ((pad + 1) // 2 + upsample_factor - 1, pad // 2 + 1)
        elif downsample_factor > 1:
            pad = kernel.shape[0] - downsample_factor + (kernel_size - 1)
            self.pad = ((pad + 1) // 2, pad // 2)
        else:
            raise ValueError("UpFirDnSmooth needs upsample_factor > 1 or downsample_factor > 1")
        # a plain attribute, not a buffer: official checkpoints have no key for it
        self.kernel = kernel

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad, weight=self._weight(x))


class UpFirDnUpsample(_FIRFilter):
    """x2 (or ``factor``) FIR upsampling of an RGB skip image; no parameters."""

    def __init__(self, resample_kernel, factor: int = 2):
        super().__init__()
        self.kernel = make_resample_kernel(resample_kernel) * factor ** 2
        self.factor = factor
        pad = self.kernel.shape[0] - factor
        self.pad = ((pad + 1) // 2 + factor - 1, pad // 2)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad, weight=self._weight(x))


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate (weights scaled at run time by 1/sqrt(fan_in)).

    Args:
        in_channels, out_channels: feature sizes.
        bias: learn an additive bias.
        bias_init_val: initial bias value.
        lr_mul: learning-rate multiplier (the style MLP uses 0.01).
        activation: None or 'fused_lrelu' (bias + leaky ReLU + sqrt(2) gain).
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, bias_init_val: float = 0.0,
                 lr_mul: float = 1.0, activation=None):
        super().__init__()
        if activation not in ("fused_lrelu", None):
            raise ValueError(f"EqualLinear activation must be 'fused_lrelu' or None, got {activation!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.lr_mul = lr_mul
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_channels)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels).div_(lr_mul))
        if bias:
            self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init_val)))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation == "fused_lrelu":
            # the bias goes on the last (feature) axis, so W+ codes (B, N, C) map per code too
            return F.leaky_relu(F.linear(x, self.weight * self.scale, bias), 0.2) * SQRT2
        return F.linear(x, self.weight * self.scale, bias)


class EqualConv2d(nn.Module):
    """Conv2d with equalized learning rate (weight scaled by 1/sqrt(fan_in) at run time)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True, bias_init_val: float = 0.0):
        super().__init__()
        self.stride, self.padding = stride, padding
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        if bias:
            self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init_val)))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class ConvLayer(nn.Sequential):
    """[blur] + EqualConv2d + [bias-lrelu], a Sequential so its keys are ``0.weight``, ``1.bias``...

    Args:
        in_channels, out_channels, kernel_size: the convolution.
        downsample: blur then stride-2 conv (halves H and W).
        resample_kernel: FIR taps of the blur.
        bias: learn a bias (inside the activation when ``activate``).
        activate: append a fused leaky ReLU (or a scaled one when ``bias`` is False).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 resample_kernel=(1, 3, 3, 1), bias: bool = True, activate: bool = True):
        layers = []
        if downsample:
            layers.append(UpFirDnSmooth(resample_kernel, downsample_factor=2, kernel_size=kernel_size))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU(0.2))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual downsampling block of the StyleGAN2 discriminator (and GFPGANv1's encoder)."""

    def __init__(self, in_channels: int, out_channels: int, resample_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, resample_kernel=resample_kernel)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, resample_kernel=resample_kernel,
                              bias=False, activate=False)

    def forward(self, x):
        """(B, Cin, H, W) -> (B, Cout, H/2, W/2)."""
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


def stylegan2_channels(channel_multiplier: float, narrow: float) -> dict:
    """Channels per resolution (keys '4'..'1024'), as in StyleGAN2 config-f scaled by ``narrow``."""
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
            256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    return {str(k): int(v * narrow) for k, v in base.items()}


def check_size(out_size: int, low: int = 8, high: int = 1024) -> int:
    """Return log2(out_size), raising ValueError unless it is a power of two in [low, high]."""
    log = int(math.log2(out_size)) if out_size > 0 else 0
    if out_size < low or out_size > high or 2 ** log != out_size:
        raise ValueError(f"out_size must be a power of two between {low} and {high}, got {out_size}")
    return log
