"""VGG feature extractor for perceptual and style losses (Simonyan & Zisserman, "Very Deep
Convolutional Networks for Large-Scale Image Recognition", ICLR 2015, arXiv:1409.1556; used as a
loss network after Johnson et al., "Perceptual Losses for Real-Time Style Transfer", ECCV 2016).

The convolutional trunk is built here in plain PyTorch (no torchvision import) and loads
torchvision's ImageNet weights file (``vgg19-dcbb9e9d.pth``) from an explicit path or the local
torch hub cache; nothing is downloaded. Layers are named like BasicSR ('conv1_1', 'relu1_1',
'pool1', ...) so features are requested by name and state dicts keep BasicSR's keys.
"""

import os
from collections import OrderedDict
from typing import Dict, Optional, Sequence

import torch
from torch import nn

from gfpgan.errors import UserError
from gfpgan.registry import ARCH_REGISTRY

VGG_URLS = {
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
}
# convolution widths per block (torchvision's configurations D and E)
_CFG = {"vgg16": [[64] * 2, [128] * 2, [256] * 3, [512] * 3, [512] * 3],
        "vgg19": [[64] * 2, [128] * 2, [256] * 4, [512] * 4, [512] * 4]}


def vgg_layer_names(vgg_type: str = "vgg19"):
    """Names of the layers of ``features`` in order: conv1_1, relu1_1, conv1_2, ..., pool5."""
    names = []
    for b, block in enumerate(_CFG[vgg_type], 1):
        for j in range(1, len(block) + 1):
            names += [f"conv{b}_{j}", f"relu{b}_{j}"]
        names.append(f"pool{b}")
    return names


def default_vgg_path(vgg_type: str = "vgg19") -> str:
    """Where torchvision caches the weights: ``$TORCH_HOME/hub/checkpoints/<file>``."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(VGG_URLS[vgg_type]))


@ARCH_REGISTRY.register()
class VGGFeatureExtractor(nn.Module):
    """Frozen (by default) VGG trunk returning the features of the requested layers.

    Args:
        layer_name_list: layers to return, e.g. ['conv1_2', 'conv2_2', 'conv3_4', 'conv4_4', 'conv5_4'];
            the trunk is cut after the deepest one.
        vgg_type: 'vgg19' or 'vgg16'.
        use_input_norm: normalise with the ImageNet mean/std (the input must then be in [0, 1]).
        range_norm: map inputs from [-1, 1] to [0, 1] first.
        requires_grad: train the trunk (normally False: it is a fixed loss network).
        remove_pooling: drop the max-pool layers.
        pooling_stride: stride of the max-pool layers.
        pretrained: load torchvision's ImageNet weights (False builds random weights, for tests).
        weights_path: the ``vgg19-dcbb9e9d.pth`` file; None looks in the torch hub cache.
    """

    def __init__(self, layer_name_list: Sequence[str], vgg_type: str = "vgg19", use_input_norm: bool = True,
                 range_norm: bool = False, requires_grad: bool = False, remove_pooling: bool = False,
                 pooling_stride: int = 2, pretrained: bool = True, weights_path: Optional[str] = None):
        super().__init__()
        if vgg_type not in _CFG:
            raise ValueError(f"vgg_type must be one of {sorted(_CFG)}, got {vgg_type!r}")
        self.layer_name_list = list(layer_name_list)
        self.use_input_norm, self.range_norm = use_input_norm, range_norm
        self.names = vgg_layer_names(vgg_type)
        unknown = [n for n in self.layer_name_list if n not in self.names]
        if unknown or not self.layer_name_list:
            raise ValueError(f"unknown VGG layer names {unknown}; valid names are {self.names}")
        last = max(self.names.index(n) for n in self.layer_name_list)

        # the full torchvision ``features`` list, so weight indices match its state dict
        features, in_ch = [], 3
        for block in _CFG[vgg_type]:
            for width in block:
                features += [nn.Conv2d(in_ch, width, 3, padding=1), nn.ReLU(inplace=False)]
                in_ch = width
            features.append(nn.MaxPool2d(2, 2))
        if pretrained:
            self._load(features, vgg_type, weights_path)

        layers = OrderedDict()
        for name, layer in zip(self.names[:last + 1], features[:last + 1]):
            if name.startswith("pool"):
                if remove_pooling:
                    continue
                layer = nn.MaxPool2d(kernel_size=2, stride=pooling_stride)
            layers[name] = layer
        self.vgg_net = nn.Sequential(layers)

        self.vgg_net.train(requires_grad)
        for p in self.vgg_net.parameters():
            p.requires_grad_(requires_grad)
        if use_input_norm:
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    @staticmethod
    def _load(features, vgg_type: str, weights_path: Optional[str]):
        path = weights_path or default_vgg_path(vgg_type)
        url = VGG_URLS[vgg_type]
        if not os.path.isfile(path):
            raise UserError(f"VGG weights {path} not found: download {url} to that path (or to "
                            f"$TORCH_HOME/hub/checkpoints/) or pass its location as weights_path.")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: say which one
            raise UserError(f"VGG weights {path} could not be read ({exc}); download it again from {url}."
                            ) from exc
        try:
            nn.Sequential(*features).load_state_dict(
                {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
        except RuntimeError as exc:
            raise UserError(f"VGG weights {path} do not match {vgg_type}; download {url}.") from exc

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Extract features.

        Args:
            x: (B, 3, H, W) RGB in [0, 1], or in [-1, 1] with ``range_norm``.

        Returns:
            {layer name: (B, C, h, w) feature} for every name in ``layer_name_list``.
        """
        if self.range_norm:
            x = (x + 1) / 2
        if self.use_input_norm:
            x = (x - self.mean) / self.std
        out = {}
        for name, layer in self.vgg_net.named_children():
            x = layer(x)
            if name in self.layer_name_list:
                out[name] = x
        return out
