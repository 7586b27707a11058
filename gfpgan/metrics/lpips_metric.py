"""LPIPS (Zhang et al., CVPR 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric"), through the ``lpips`` package, without downloads.

``lpips.LPIPS(net='alex')`` normally asks torchvision to download the ImageNet AlexNet trunk. Here
the trunk is built with random weights and filled from a local torchvision checkpoint
(``alexnet-owt-7be5be79.pth`` or ``vgg16-397923af.pth``, from a path or
``$TORCH_HOME/hub/checkpoints``); the linear calibration layers ship inside the lpips package.
"""

import contextlib
import io
import os
import warnings
from typing import Optional

import numpy as np
import torch

from gfpgan.metrics.common import MissingWeightsError, find_weights
from gfpgan.registry import METRIC_REGISTRY

TRUNK_FILES = {
    "alex": ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
}


def load_trunk(trunk: torch.nn.Module, state: dict) -> None:
    """Copy torchvision ``features.<i>.*`` weights into lpips' ``slice<k>.<i>.*`` trunk modules.

    Args:
        trunk: ``lpips.pretrained_networks.alexnet`` or ``vgg16`` instance.
        state: torchvision state dict of the matching classifier.
    """
    where = {}  # features index -> slice name; lpips keeps torchvision's index inside each slice
    for name, _ in trunk.named_children():
        for idx, _ in getattr(trunk, name).named_children():
            where[idx] = name
    mapped = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "features" and parts[1] in where:
            mapped[f"{where[parts[1]]}.{parts[1]}.{'.'.join(parts[2:])}"] = value
    missing, _ = trunk.load_state_dict(mapped, strict=False)
    if missing:
        raise MissingWeightsError(f"LPIPS skipped: the trunk checkpoint lacks {missing[:3]}; "
                                  "use torchvision's alexnet-owt-7be5be79.pth or vgg16-397923af.pth")


@METRIC_REGISTRY.register()
class LPIPSMetric:
    """LPIPS distance between restored and reference images (lower is better).

    Args:
        net: Trunk, "alex" (the usual choice for evaluation) or "vgg".
        trunk_path: torchvision checkpoint of the trunk (file or folder); default: the torch cache.
        device: Where the network runs.
    """

    def __init__(self, net: str = "alex", trunk_path: Optional[str] = None, device: str = "cpu"):
        import lpips  # evaluation-only dependency, imported when the metric is used

        if net not in TRUNK_FILES:
            raise ValueError(f"LPIPS net must be one of {sorted(TRUNK_FILES)}, got {net!r}")
        filename, url = TRUNK_FILES[net]
        path = find_weights(trunk_path, filename, "LPIPS", url)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lpips prints a banner; torchvision warns on pretrained=
            model = lpips.LPIPS(net=net, pretrained=False, pnet_rand=True, verbose=False)
        lin_path = os.path.join(os.path.dirname(lpips.__file__), "weights", "v0.1", f"{net}.pth")
        model.load_state_dict(torch.load(lin_path, map_location="cpu", weights_only=True), strict=False)
        load_trunk(model.net, torch.load(path, map_location="cpu", weights_only=True))
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)

    @torch.no_grad()
    def batch(self, imgs: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
        """LPIPS per pair: (B, 3, H, W) float tensors in [-1, 1] -> (B,) distances."""
        return self.model(imgs.to(self.device), refs.to(self.device), normalize=False).flatten().cpu()

    def __call__(self, img: np.ndarray, ref: np.ndarray) -> float:
        """LPIPS of two (H, W, 3) RGB uint8 images."""
        def to_t(x):
            return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() / 127.5 - 1
        return float(self.batch(to_t(img), to_t(ref))[0])
