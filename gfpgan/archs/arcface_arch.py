"""ResNet ArcFace face-embedding network (Deng et al., "ArcFace: Additive Angular Margin Loss for Deep
Face Recognition", CVPR 2019, arXiv:1801.07698), in the ResNet-18-IR layout GFP-GAN uses for its
identity-preserving loss (``arcface_resnet18.pth``: gray 128x128 input, 512-d embedding).
"""

from typing import Sequence, Union

import torch
from torch import nn

from gfpgan.registry import ARCH_REGISTRY


def conv3x3(inplanes: int, outplanes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a BatchNorm follows)."""
    return nn.Conv2d(inplanes, outplanes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """ResNet basic block: conv-bn-relu-conv-bn + shortcut, relu."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class SEBlock(nn.Module):
    """Squeeze-and-excitation: per-channel gates from globally pooled features."""

    def __init__(self, channel, reduction=16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channel, channel // reduction), nn.PReLU(),
                                nn.Linear(channel // reduction, channel), nn.Sigmoid())

    def forward(self, x):
        b, c = x.shape[:2]
        return x * self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)


class IRBlock(nn.Module):
    """Improved residual block (bn-conv-bn-prelu-conv-bn [+SE] + shortcut, prelu)."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, use_se=True):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv3x3(inplanes, inplanes)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.prelu = nn.PReLU()
        self.conv2 = conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride
        self.use_se = use_se
        if use_se:
            self.se = SEBlock(planes)

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.prelu(self.bn1(self.conv1(self.bn0(x))))
        out = self.bn2(self.conv2(out))
        if self.use_se:
            out = self.se(out)
        # the same PReLU (one shared slope) is reused here, as in the reference weights
        return self.prelu(out + residual)


class Bottleneck(nn.Module):
    """ResNet bottleneck block (1x1 reduce, 3x3, 1x1 expand x4)."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


_BLOCKS = {"IRBlock": IRBlock, "BasicBlock": BasicBlock, "Bottleneck": Bottleneck}


@ARCH_REGISTRY.register()
class ResNetArcFace(nn.Module):
    """ResNet ArcFace backbone: (B, 1, 128, 128) gray faces -> (B, 512) embeddings.

    Args:
        block: 'IRBlock' (GFP-GAN), 'BasicBlock', 'Bottleneck' or a block class.
        layers: blocks per stage, (2, 2, 2, 2) for ResNet-18.
        use_se: add squeeze-and-excitation to IR blocks (False for arcface_resnet18.pth).
    """

    def __init__(self, block: Union[str, type] = "IRBlock", layers: Sequence[int] = (2, 2, 2, 2),
                 use_se: bool = False):
        super().__init__()
        if isinstance(block, str):
            if block not in _BLOCKS:
                raise ValueError(f"unknown ArcFace block {block!r}; use one of {sorted(_BLOCKS)}")
            block = _BLOCKS[block]
        self.inplanes = 64
        self.use_se = use_se
        self.conv1 = nn.Conv2d(1, 64, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.bn4 = nn.BatchNorm2d(512)
        self.dropout = nn.Dropout()
        self.fc5 = nn.Linear(512 * 8 * 8, 512)
        self.bn5 = nn.BatchNorm1d(512)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes, num_blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion))
        kw = {"use_se": self.use_se} if block is IRBlock else {}
        layers = [block(self.inplanes, planes, stride, downsample, **kw)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, **kw) for _ in range(1, num_blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 128, 128) gray faces (GFP-GAN feeds [-1, 1]) -> (B, 512) embeddings (not normalised)."""
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn4(x))
        return self.bn5(self.fc5(x.flatten(1)))
