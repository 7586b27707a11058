"""Differentiable augmentation of the discriminator's inputs, for GANs trained on few images.

With a few hundred or thousand faces the discriminator memorises the training set and the
generator's gradients stop carrying anything. Two remedies augment every image the discriminator
sees, real and generated, in its own steps and in the generator's, with differentiable operations
(so the generator is trained through them):

* **DiffAugment** (Zhao et al., NeurIPS 2020, "Differentiable Augmentation for Data-Efficient GAN
  Training"): the policy's operations applied to every image (``p = 1``), always;
* **ADA** (Karras et al., NeurIPS 2020, "Training Generative Adversarial Networks with Limited
  Data"): each operation applied to each image with probability ``p``, and ``p`` adapted during
  training from the overfitting heuristic ``r_t = E[sign(D(real))]``: every ``interval``
  iterations ``p`` moves by ``sign(r_t - target) * images / (kimg * 1000)`` (``images``: the
  real images D saw in those iterations, over every rank), so it can go from 0 to 1 in ``kimg``
  thousand images. Below
  ``p ~ 0.8`` the augmentations do not leak into the generated images (ADA, sec. 2.2).

The operations are DiffAugment's (images in [-1, 1]): ``color`` (brightness, saturation and
contrast, each drawn separately), ``translation`` (by up to 1/8 of the side, zero-filled) and
``cutout`` (a zeroed square of half the side). They draw from torch's global random stream on
the images' device, which the trainer saves and restores, so a resumed run draws the same ones.
ADA's own pipeline (integer translation, 90-degree rotations, flips, colour transforms in a
joint matrix, filtering) is richer; these three are what DiffAugment found sufficient.
"""

from typing import Sequence

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def _gated(x: torch.Tensor, out: torch.Tensor, p: float) -> torch.Tensor:
    """``out`` for a fraction ``p`` of the samples (drawn per sample), ``x`` for the others."""
    if p >= 1.0:
        return out
    keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p
    return torch.where(keep, out, x)


def brightness(x: torch.Tensor) -> torch.Tensor:
    """Add a per-image offset in [-0.5, 0.5)."""
    return x + (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)


def saturation(x: torch.Tensor) -> torch.Tensor:
    """Scale each pixel's distance to its gray value by a per-image factor in [0, 2)."""
    gray = x.mean(dim=1, keepdim=True)
    return (x - gray) * (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + gray


def contrast(x: torch.Tensor) -> torch.Tensor:
    """Scale the distance to the image's mean by a per-image factor in [0.5, 1.5)."""
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by whole pixels, up to ``ratio`` of its side per axis; zeros come in."""
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (b, 1, 1), device=x.device)
    # where each output pixel reads from, in the input padded by one zero pixel on every side
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx + 1).clamp(0, w + 1)
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)  # (B, H+2, W+2, C)
    return padded[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of ``ratio`` times the side per image, centred anywhere in it."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device) - ch // 2
    left = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device) - cw // 2
    r = torch.arange(h, device=x.device).view(1, h, 1)
    c = torch.arange(w, device=x.device).view(1, 1, w)
    hole = (r >= top) & (r < top + ch) & (c >= left) & (c < left + cw)
    return x * (~hole).unsqueeze(1).to(x.dtype)


class DiscriminatorAugment:
    """The augmentation applied to the discriminator's inputs, fixed or adaptive.

    Args:
        policy: Operations in order, from :data:`POLICIES` (e.g. ``["color", "translation"]``).
        p: Probability that an operation is applied to an image (DiffAugment: 1); the start value
            when ``adaptive``.
        adaptive: Adapt ``p`` (ADA) towards ``E[sign(D(real))] = target``.
        target: ADA's target for ``r_t`` (0.6 in the paper).
        interval: Iterations between two adjustments of ``p``.
        kimg: Thousands of images over which ``p`` can go from 0 to 1.
    """

    def __init__(self, policy: Sequence[str], p: float = 1.0, adaptive: bool = False,
                 target: float = 0.6, interval: int = 4, kimg: float = 500.0):
        unknown = [op for op in policy if op not in POLICIES]
        if unknown or not policy:
            raise ValueError(f"augmentation policy {list(policy)} must list some of {POLICIES}")
        self.policy = tuple(policy)
        self.p = float(p)
        self.adaptive, self.target, self.interval = adaptive, float(target), int(interval)
        self.kimg = float(kimg)
        self.sign_sum, self.sign_count, self.images = 0.0, 0, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Augment a batch (B, C, H, W); differentiable w.r.t. ``x``. ``p = 0`` returns ``x``."""
        if self.p <= 0.0:
            return x
        for op in self.policy:
            if op == "color":
                for fn in (brightness, saturation, contrast):
                    x = _gated(x, fn(x), self.p)
            elif op == "translation":
                x = _gated(x, translation(x), self.p)
            else:
                x = _gated(x, cutout(x), self.p)
        return x

    def observe(self, real_sign: float, images: int) -> None:
        """Feed one iteration: ``mean(sign(D(real)))`` and the number of real images, both over
        every rank (so every rank keeps the same ``p``); adapt ``p`` every ``interval`` calls."""
        if not self.adaptive:
            return
        self.sign_sum += float(real_sign)
        self.sign_count += 1
        self.images += int(images)
        if self.sign_count >= self.interval:
            r_t = self.sign_sum / self.sign_count
            step = self.images / (self.kimg * 1000.0) * ((r_t > self.target) - (r_t < self.target))
            self.p = min(1.0, max(0.0, self.p + step))
            self.sign_sum, self.sign_count, self.images = 0.0, 0, 0

    def state_dict(self) -> dict:
        return {"p": self.p, "sign_sum": self.sign_sum, "sign_count": self.sign_count,
                "images": self.images}

    def load_state_dict(self, state: dict) -> None:
        self.p, self.sign_sum = float(state["p"]), float(state["sign_sum"])
        self.sign_count, self.images = int(state["sign_count"]), int(state["images"])
