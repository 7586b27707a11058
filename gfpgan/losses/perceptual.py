"""VGG perceptual loss and Gram-matrix style loss.

Perceptual loss: Johnson et al. 2016, "Perceptual Losses for Real-Time Style Transfer and
Super-Resolution"; style loss: Gatys et al. 2016 (Gram matrices of VGG features). Same type name
and arguments as BasicSR's ``PerceptualLoss`` (``layer_weights`` name VGG19 layers *before* their
ReLU, e.g. ``conv5_4``), so the official recipe builds unchanged.

Weights: the VGG19 ImageNet file is never downloaded here. ``vgg_weights`` names it; without it
the feature extractor looks in torchvision's cache (``$TORCH_HOME/hub/checkpoints/
vgg19-dcbb9e9d.pth``). When the file is missing the extractor raises a ``UserError`` naming the file
and its URL: a recipe that asks for a perceptual loss fails before training, loudly, instead of
silently training without it. Recipes that must run without the file (the tiny CPU recipe) leave
``perceptual_opt`` out. Tests build it with ``pretrained=False`` (random VGG).
"""

from typing import Dict, Optional, Tuple

import torch
from torch import nn

from gfpgan.registry import LOSS_REGISTRY

CRITERIA = ("l1", "l2", "fro")


def gram_matrix(x: torch.Tensor) -> torch.Tensor:
    """Normalised Gram matrix of a feature map.

    Args:
        x: (N, C, H, W) features.
    Returns:
        (N, C, C) tensor, F F^T / (C H W) with F the (N, C, HW) flattened features, in float32.
    """
    n, c, h, w = x.shape
    f = x.float().reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def _distance(a: torch.Tensor, b: torch.Tensor, criterion: str) -> torch.Tensor:
    a, b = a.float(), b.float()
    if criterion == "l1":
        return (a - b).abs().mean()
    if criterion == "l2":
        return (a - b).pow(2).mean()
    return torch.linalg.vector_norm(a - b)  # fro: Frobenius norm of the whole difference


@LOSS_REGISTRY.register()
class PerceptualLoss(nn.Module):
    """Perceptual (feature distance) and style (Gram distance) losses on a frozen VGG.

    Args:
        layer_weights: {layer name: weight}, e.g. {'conv1_2': 0.1, ..., 'conv5_4': 1}.
        vgg_type: 'vgg19' (the recipe's); other names are passed to the extractor.
        use_input_norm: Normalise inputs with ImageNet mean/std inside the extractor.
        range_norm: Map inputs from [-1, 1] to [0, 1] first (GFPGAN images are in [-1, 1]).
        perceptual_weight: Multiplier of the perceptual term; 0 disables it (returns None).
        style_weight: Multiplier of the style term; 0 disables it (returns None).
        criterion: 'l1' | 'l2' | 'fro'.
        pretrained: Load ImageNet weights (False only for tests).
        vgg_weights: Path of the VGG19 ``.pth``; None looks in torchvision's cache.
    """

    def __init__(self, layer_weights: Dict[str, float], vgg_type: str = "vgg19",
                 use_input_norm: bool = True, range_norm: bool = False,
                 perceptual_weight: float = 1.0, style_weight: float = 0.0, criterion: str = "l1",
                 pretrained: bool = True, vgg_weights: Optional[str] = None):
        super().__init__()
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
        if not layer_weights:
            raise ValueError("layer_weights must name at least one VGG layer")
        # Imported here: the losses package must import without the archs being importable.
        from gfpgan.archs.vgg_arch import VGGFeatureExtractor

        self.layer_weights = {str(k): float(v) for k, v in layer_weights.items()}
        self.perceptual_weight = float(perceptual_weight)
        self.style_weight = float(style_weight)
        self.criterion = criterion
        extractor_kwargs = dict(layer_name_list=list(self.layer_weights), vgg_type=vgg_type,
                                use_input_norm=use_input_norm, range_norm=range_norm,
                                pretrained=pretrained)
        if vgg_weights is not None:
            extractor_kwargs["weights_path"] = vgg_weights
        self.vgg = VGGFeatureExtractor(**extractor_kwargs)
        # The VGG is a fixed measuring stick: no gradients, no optimizer state, eval mode.
        self.vgg.requires_grad_(False)
        self.vgg.eval()

    def train(self, mode: bool = True):
        """Keep the VGG in eval mode whatever the parent module does."""
        super().train(mode)
        self.vgg.eval()
        return self

    def forward(self, x: torch.Tensor,
                gt: torch.Tensor) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Perceptual and style losses of ``x`` against ``gt``.

        Args:
            x: (N, 3, H, W) restored images (in [-1, 1] when ``range_norm``), gradients flow.
            gt: (N, 3, H, W) ground truth, treated as a constant.
        Returns:
            (perceptual, style): scalar tensors, or None for a term whose weight is 0.
        """
        x_feats = self.vgg(x)
        with torch.no_grad():
            gt_feats = self.vgg(gt.detach())
        percep = style = None
        if self.perceptual_weight > 0:
            percep = sum(_distance(x_feats[k], gt_feats[k], self.criterion) * w
                         for k, w in self.layer_weights.items()) * self.perceptual_weight
        if self.style_weight > 0:
            style = sum(_distance(gram_matrix(x_feats[k]), gram_matrix(gt_feats[k]), self.criterion) * w
                        for k, w in self.layer_weights.items()) * self.style_weight
        return percep, style
