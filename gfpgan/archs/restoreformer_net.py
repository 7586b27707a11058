"""RestoreFormer (Wang et al., "RestoreFormer: High-Quality Blind Face Restoration from Undegraded
Key-Value Pairs", CVPR 2022, arXiv:2201.06374), as published in GFPGAN release v1.3.4.

A VQGAN-style encoder maps the degraded face to a 32x32 latent (at 512 px) that is snapped to the
nearest entries of a learned codebook of high-quality face parts. The decoder rebuilds the face
from the quantised latent, and at its lowest resolution its attention blocks are *cross*
attention: the queries come from the degraded face's encoder features, the keys and values from
the decoder's own (high-quality) features. Residual blocks use GroupNorm(32) and swish.

The module layout and parameter names are the reference's (``encoder.down.0.block.0.norm1.weight``,
``quantize.embedding.weight`` ...), so ``RestoreFormer.pth`` loads with ``strict=True``.
Attention uses ``scaled_dot_product_attention``. The reference's class (``weight=`` blending, at
``gfpgan.archs.restoreformer_arch``) is in :mod:`gfpgan.compat.archs`.
"""

from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from gfpgan.registry import ARCH_REGISTRY

__all__ = ["RestoreFormer", "VectorQuantizer"]


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


def _conv3(cin: int, cout: int, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, padding)


class VectorQuantizer(nn.Module):
    """Nearest-codebook-entry quantisation; ``embedding.weight`` (n_e, e_dim).

    Args:
        n_e: codebook entries.
        e_dim: entry dimension (the latent's channels).
        beta: commitment cost (training only; kept for the reference's signature).
    """

    def __init__(self, n_e: int, e_dim: int, beta: float = 0.25):
        super().__init__()
        self.n_e, self.e_dim, self.beta = n_e, e_dim, beta
        self.embedding = nn.Embedding(n_e, e_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_e, 1.0 / n_e)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) latent -> (B*H*W,) index of the nearest entry (squared L2)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.e_dim)
        e = self.embedding.weight
        # ||z||^2 + ||e||^2 - 2 z.e: the reference's expansion, so near-ties resolve the same way
        dist = flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * flat @ e.t()
        return dist.argmin(1)

    def forward(self, z: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Quantise (B, C, H, W) -> (quantised latent with straight-through gradient, VQ loss or
        None when autograd is off)."""
        b, c, h, w = z.shape
        zq = self.embedding(self.indices(z)).view(b, h, w, c).permute(0, 3, 1, 2)
        if not torch.is_grad_enabled():  # inference: no loss, no straight-through arithmetic
            return zq, None
        loss = F.mse_loss(zq.detach(), z) + self.beta * F.mse_loss(zq, z.detach())
        return z + (zq - z).detach(), loss


class ResnetBlock(nn.Module):
    """GroupNorm-swish-conv3x3 twice, plus the input (a 1x1 ``nin_shortcut`` when channels change)."""

    def __init__(self, in_channels: int, out_channels: Optional[int] = None, dropout: float = 0.0):
        super().__init__()
        out_channels = out_channels or in_channels
        self.norm1, self.conv1 = _norm(in_channels), _conv3(in_channels, out_channels)
        self.norm2, self.conv2 = _norm(out_channels), _conv3(out_channels, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class MultiHeadAttnBlock(nn.Module):
    """Multi-head attention over positions; keys and values from ``x``, queries from ``y`` (cross
    attention) or from ``x`` itself. ``head_size`` is the number of heads."""

    def __init__(self, in_channels: int, head_size: int = 1):
        super().__init__()
        if in_channels % head_size:
            raise ValueError(f"{in_channels} channels do not split into {head_size} heads")
        self.heads = head_size
        self.norm1, self.norm2 = _norm(in_channels), _norm(in_channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(in_channels, in_channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        hx = self.norm1(x)
        q = self.q(hx if y is None else self.norm2(y))
        b, c, h, w = q.shape

        def heads(t):  # (B, C, H, W) -> (B, heads, H*W, C/heads), channel = head * (C/heads) + i
            return t.reshape(b, self.heads, c // self.heads, h * w).transpose(2, 3)

        out = F.scaled_dot_product_attention(heads(q), heads(self.k(hx)), heads(self.v(hx)))
        return x + self.proj_out(out.transpose(2, 3).reshape(b, c, h, w))


def _stage(block_in: int, block_out: int, n_blocks: int, attn: bool, head_size: int, dropout: float):
    stage = nn.Module()
    stage.block = nn.ModuleList()
    stage.attn = nn.ModuleList()
    for _ in range(n_blocks):
        stage.block.append(ResnetBlock(block_in, block_out, dropout))
        block_in = block_out
        if attn:
            stage.attn.append(MultiHeadAttnBlock(block_in, head_size))
    return stage


def _middle(channels: int, head_size: int, dropout: float) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, dropout)
    mid.attn_1 = MultiHeadAttnBlock(channels, head_size)
    mid.block_2 = ResnetBlock(channels, channels, dropout)
    return mid


class Encoder(nn.Module):
    """Downsampling half; returns the latent and the features the decoder attends to."""

    def __init__(self, ch, ch_mult, num_res_blocks, attn_resolutions, dropout, in_channels, resolution,
                 z_channels, head_size):
        super().__init__()
        self.conv_in = _conv3(in_channels, ch)
        self.down = nn.ModuleList()
        res, block_in = resolution, ch
        for level, mult in enumerate(ch_mult):
            stage = _stage(block_in, ch * mult, num_res_blocks, res in attn_resolutions, head_size, dropout)
            block_in = ch * mult
            if level != len(ch_mult) - 1:
                # the reference pads right and bottom by one, then a stride-2 valid conv
                stage.downsample = nn.Module()
                stage.downsample.conv = _conv3(block_in, block_in, stride=2, padding=0)
                res //= 2
            self.down.append(stage)
        self.mid = _middle(block_in, head_size, dropout)
        self.norm_out = _norm(block_in)
        self.conv_out = _conv3(block_in, z_channels)

    def forward(self, x) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        h = self.conv_in(x)
        for stage in self.down:
            for i, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn):
                    h = stage.attn[i](h)
            if hasattr(stage, "downsample"):
                h = stage.downsample.conv(F.pad(h, (0, 1, 0, 1)))
        h = self.mid.block_1(h)
        feats = {"low": h}  # what the decoder's lowest-resolution attention queries with
        h = self.mid.block_2(self.mid.attn_1(h))
        feats["mid"] = h
        return self.conv_out(F.silu(self.norm_out(h))), feats


class Decoder(nn.Module):
    """Upsampling half with cross attention to the encoder's features at the lowest resolution."""

    def __init__(self, ch, out_ch, ch_mult, num_res_blocks, attn_resolutions, dropout, resolution,
                 z_channels, head_size):
        super().__init__()
        levels = len(ch_mult)
        block_in = ch * ch_mult[-1]
        res = resolution // 2 ** (levels - 1)
        for level in range(levels - 1):
            if resolution // 2 ** level in attn_resolutions:
                # the reference looks its keys up in the encoder's features, which exist for the
                # lowest resolution only (it fails with a KeyError for any other)
                raise ValueError(f"RestoreFormer supports attention at the lowest resolution ({res}) only, "
                                 f"not at {resolution // 2 ** level}")
        self.conv_in = _conv3(z_channels, block_in)
        self.mid = _middle(block_in, head_size, dropout)
        self.up = nn.ModuleList()
        for level in reversed(range(levels)):
            stage = _stage(block_in, ch * ch_mult[level], num_res_blocks + 1, res in attn_resolutions,
                           head_size, dropout)
            block_in = ch * ch_mult[level]
            if level != 0:
                stage.upsample = nn.Module()
                stage.upsample.conv = _conv3(block_in, block_in)
                res *= 2
            self.up.insert(0, stage)
        self.norm_out = _norm(block_in)
        self.conv_out = _conv3(block_in, out_ch)

    def forward(self, z: torch.Tensor, feats: Dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h), feats["mid"]))
        for level in reversed(range(len(self.up))):
            stage = self.up[level]
            for i, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn):
                    h = stage.attn[i](h, feats["low"])
            if hasattr(stage, "upsample"):
                h = stage.upsample.conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


@ARCH_REGISTRY.register()
class RestoreFormer(nn.Module):
    """RestoreFormer with the reference's constructor (defaults = the released model at 512 px).

    Args:
        n_embed: codebook entries.
        embed_dim: codebook entry dimension.
        ch: base channel count (a multiple of 32: GroupNorm uses 32 groups).
        out_ch: output channels.
        ch_mult: channel multiplier per resolution level (len = levels; 512 / 2**(len-1) = latent side).
        num_res_blocks: residual blocks per encoder level (decoder: one more).
        attn_resolutions: resolutions with attention (the lowest level only in the decoder).
        dropout: dropout in the residual blocks.
        in_channels: input channels.
        resolution: face size S.
        z_channels: latent channels.
        double_z, enable_mid: accepted for the reference's signature (only False / True are built).
        fix_decoder, fix_codebook, fix_encoder: freeze those parts (training).
        head_size: attention heads.
    """

    def __init__(self, n_embed: int = 1024, embed_dim: int = 256, ch: int = 64, out_ch: int = 3,
                 ch_mult: Sequence[int] = (1, 2, 2, 4, 4, 8), num_res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (16,), dropout: float = 0.0, in_channels: int = 3,
                 resolution: int = 512, z_channels: int = 256, double_z: bool = False,
                 enable_mid: bool = True, fix_decoder: bool = False, fix_codebook: bool = True,
                 fix_encoder: bool = False, head_size: int = 8):
        super().__init__()
        if double_z or not enable_mid:
            raise ValueError("RestoreFormer is built with double_z=False and enable_mid=True only "
                             "(the reference's decoder needs the middle block's features)")
        self.out_size = resolution
        common = dict(ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=num_res_blocks,
                      attn_resolutions=tuple(attn_resolutions), dropout=dropout, resolution=resolution,
                      z_channels=z_channels, head_size=head_size)
        self.encoder = Encoder(in_channels=in_channels, **common)
        self.decoder = Decoder(out_ch=out_ch, **common)
        self.quantize = VectorQuantizer(n_embed, embed_dim, beta=0.25)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        frozen = [self.encoder] if fix_encoder else []
        if fix_decoder:
            frozen += [self.decoder, self.post_quant_conv, self.quantize]
        elif fix_codebook:
            frozen.append(self.quantize)
        for module in frozen:
            module.requires_grad_(False)

    def forward(self, x: torch.Tensor, **kwargs) -> Tuple[torch.Tensor, None]:
        """Restore aligned faces.

        Args:
            x: (B, 3, S, S) faces in [-1, 1], RGB.
            **kwargs: the restorers' other keywords (``return_rgb``, ``randomize_noise``) are
                accepted and have no effect (RestoreFormer has no noise and no RGB pyramid).

        Returns:
            (restored (B, 3, S, S), None).
        """
        z, feats = self.encoder(x)
        zq, _ = self.quantize(self.quant_conv(z))
        return self.decoder(self.post_quant_conv(zq), feats), None
