"""Discriminators of GFP-GAN (Wang et al., "Towards Real-World Blind Face Restoration with Generative
Facial Prior", CVPR 2021, arXiv:2101.04061).

* ``StyleGAN2Discriminator``: the residual discriminator of StyleGAN2 (Karras et al., CVPR 2020,
  arXiv:1912.04958) with a minibatch-stddev feature, in BasicSR's parameter layout.
* ``FacialComponentDiscriminator``: the small VGG-style patch discriminator GFP-GAN applies to the
  left eye, right eye and mouth crops; it can also return two intermediate feature maps for the
  component style (Gram-matrix) loss.
"""

from typing import List, Optional, Tuple

import torch
from torch import nn

from gfpgan.archs.stylegan2_ops import ConvLayer, EqualLinear, ResBlock, check_size, stylegan2_channels
from gfpgan.registry import ARCH_REGISTRY


@ARCH_REGISTRY.register()
class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2 discriminator: from-RGB, residual downsampling blocks, minibatch stddev, 2 linears.

    Args:
        out_size: input image size, a power of two in [8, 1024].
        channel_multiplier: widens the 64px+ layers.
        resample_kernel: 1-D FIR taps of the downsampling blur.
        stddev_group: group size of the minibatch-stddev statistic.
        narrow: scales every channel count.
    """

    def __init__(self, out_size: int, channel_multiplier: float = 2, resample_kernel=(1, 3, 3, 1),
                 stddev_group: int = 4, narrow: float = 1):
        super().__init__()
        log_size = check_size(out_size)
        ch = stylegan2_channels(channel_multiplier, narrow)
        rk = tuple(resample_kernel)
        body = [ConvLayer(3, ch[str(out_size)], 1)]
        in_ch = ch[str(out_size)]
        for i in range(log_size, 2, -1):
            out_ch = ch[str(2 ** (i - 1))]
            body.append(ResBlock(in_ch, out_ch, rk))
            in_ch = out_ch
        self.conv_body = nn.Sequential(*body)
        self.final_conv = ConvLayer(in_ch + 1, ch["4"], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(ch["4"] * 4 * 4, ch["4"], activation="fused_lrelu"),
            EqualLinear(ch["4"], 1),
        )
        self.stddev_group = stddev_group
        self.stddev_feat = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score images.

        Args:
            x: (B, 3, S, S) images in [-1, 1]; B must be divisible by ``stddev_group`` when larger.

        Returns:
            (B, 1) realness logits.
        """
        out = self.conv_body(x)
        b, c, h, w = out.shape
        group = min(b, self.stddev_group)
        if b % group:
            raise ValueError(f"batch size {b} must be divisible by stddev_group {group} (or smaller than it)")
        # std over each group of samples, averaged over features: one extra feature map
        # reshape, not view: channels_last features are not contiguous in NCHW order. The statistic
        # is computed in fp32: under fp16 autocast the 1e-8 under the root underflows (inf gradients)
        stddev = out.float().reshape(group, -1, self.stddev_feat, c // self.stddev_feat, h, w)
        stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8)
        stddev = stddev.mean([2, 3, 4], keepdim=True).squeeze(2)
        stddev = stddev.repeat(group, 1, h, w).to(out.dtype)
        out = self.final_conv(torch.cat([out, stddev], 1))
        return self.final_linear(out.reshape(b, -1))


@ARCH_REGISTRY.register()
class FacialComponentDiscriminator(nn.Module):
    """VGG-style component discriminator: 3->64, 64->128 (down), 128->128, 128->256 (down), 256->256, ->1.

    Takes no arguments (the reference's size is fixed).
    """

    def __init__(self):
        super().__init__()
        rk = (1, 3, 3, 1)
        self.conv1 = ConvLayer(3, 64, 3, resample_kernel=rk)
        self.conv2 = ConvLayer(64, 128, 3, downsample=True, resample_kernel=rk)
        self.conv3 = ConvLayer(128, 128, 3, resample_kernel=rk)
        self.conv4 = ConvLayer(128, 256, 3, downsample=True, resample_kernel=rk)
        self.conv5 = ConvLayer(256, 256, 3, resample_kernel=rk)
        self.final_conv = ConvLayer(256, 1, 3, bias=True, activate=False)

    def forward(self, x: torch.Tensor, return_feats: bool = False,
                **kwargs) -> Tuple[torch.Tensor, Optional[List[torch.Tensor]]]:
        """Score a component crop.

        Args:
            x: (B, 3, H, W) crop in [-1, 1] (80x80 eyes, 120x120 mouth at 512).
            return_feats: also return the features after conv3 (B,128,H/2,W/2) and conv5 (B,256,H/4,W/4).

        Returns:
            (logits (B, 1, H/4, W/4), [feat3, feat5] or None).
        """
        feat3 = self.conv3(self.conv2(self.conv1(x)))
        feat5 = self.conv5(self.conv4(feat3))
        out = self.final_conv(feat5)
        return out, ([feat3, feat5] if return_feats else None)
