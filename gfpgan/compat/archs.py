"""The reference's (TencentARC/GFPGAN 1.3.8) network classes and calling conventions, defined once.

Programs written for the reference build its classes from ``gfpgan.archs.<module>`` and call them
with its forward signatures. Every class of the reference's module paths is defined here, as this
project's network plus a mixin that only translates the calls; the modules at those paths
(``gfpgan.archs.gfpganv1_clean_arch``, ``gfpganv1_arch``, ``stylegan2_clean_arch``,
``gfpgan_bilinear_arch``, ``stylegan2_bilinear_arch``, ``restoreformer_arch``) and the top-level
names (``gfpgan.GFPGANv1Clean`` ...) re-export these very classes, so each reference name is one
class wherever it is imported from. ``GFPGANer`` builds them too.

* restorers: ``net(x, return_latents=False, return_rgb=True, randomize_noise=True, **kwargs)``
  returning ``(image, out_rgbs)``; ``weight=`` (the reference's ignored fidelity weight) works,
  see :func:`weight_to_strength`;
* generators: ``forward(styles, [conditions,] input_is_latent=False, noise=None,
  randomize_noise=True, truncation=1, truncation_latent=None, inject_index=None,
  return_latents=False)`` with the SFT conditions as one flat list ``[scale0, shift0, scale1, ...]``;
* :class:`ReferenceFaceModel`: a network with the restorer signature as the face pipeline's
  ``FaceModel`` (fixed noise, no RGB pyramid, following the network's device).

``randomize_noise=True``, the reference's default, is honoured as written: fresh StyleGAN2 noise
on every call, in train and eval mode, exactly as the reference draws it (so code and tests
written against the reference see the same behaviour). ``randomize_noise=False`` uses the stored
noise buffers (deterministic); :class:`ReferenceFaceModel`, and so ``GFPGANer``, always asks for
them, so its results are deterministic and video does not flicker.

This project's own classes (``gfpgan.archs.GFPGANv1Clean``, the names in the architecture
registry) keep this project's conventions: ``randomize_noise=None`` (fresh in train mode, the
stored buffers in eval mode) and SFT conditions as ``(scale, shift)`` pairs. A reference class is
a subclass of the project's class of the same name, with the same state-dict keys.
"""

import copy
import threading
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from gfpgan.archs import bilinear_net, gfpgan_arch, restoreformer_net, stylegan2_arch
from gfpgan.archs.bilinear_net import ConvLayer as BilinearConvLayer
from gfpgan.archs.bilinear_net import ModulatedConv2d as BilinearModulatedConv2d
from gfpgan.archs.bilinear_net import StyleConv as BilinearStyleConv
from gfpgan.archs.bilinear_net import ToRGB as BilinearToRGB
from gfpgan.archs.discriminator_arch import FacialComponentDiscriminator
from gfpgan.archs.gfpgan_arch import ConvUpLayer, ResUpBlock
from gfpgan.archs.restoreformer_net import VectorQuantizer
from gfpgan.archs.stylegan2_ops import EqualConv2d, EqualLinear, NormStyleCode, ResBlock, ScaledLeakyReLU
from gfpgan.errors import UserError

__all__ = [
    "weight_to_strength", "ReferenceRestorer", "ReferenceGenerator", "ReferenceSFTGenerator",
    "ReferenceFaceModel",
    # gfpganv1_clean_arch, stylegan2_clean_arch
    "GFPGANv1Clean", "StyleGAN2GeneratorCSFT", "StyleGAN2GeneratorClean",
    # gfpganv1_arch
    "GFPGANv1", "StyleGAN2GeneratorSFT", "FacialComponentDiscriminator", "ConvUpLayer", "ResUpBlock",
    # gfpgan_bilinear_arch, stylegan2_bilinear_arch
    "GFPGANBilinear", "StyleGAN2GeneratorBilinearSFT", "StyleGAN2GeneratorBilinear",
    "BilinearModulatedConv2d", "BilinearStyleConv", "BilinearToRGB", "BilinearConvLayer", "ResBlock",
    "EqualConv2d", "EqualLinear", "NormStyleCode", "ScaledLeakyReLU",
    # restoreformer_arch
    "RestoreFormer", "VectorQuantizer",
]


def weight_to_strength(weight: float) -> float:
    """Map the reference's ``weight`` (a fidelity weight in [0, 1]) to a restoration strength.

    ``weight`` came from CodeFormer, where a larger value keeps more of the input ("fidelity")
    and the reference passes 0.5 by default while ignoring it. Here weights up to 0.5 give the
    full restoration (so every caller that leaves the default gets the reference's output) and
    larger ones blend towards the input face linearly, reaching the unchanged input at 1:
    ``strength = min(1, 2 * (1 - weight))``.

    Args:
        weight: fidelity weight in [0, 1].

    Returns:
        Strength in [0, 1]: the restored face's share in ``s * restored + (1 - s) * input``.

    Raises:
        UserError: ``weight`` is not a number in [0, 1].
    """
    try:
        w = float(weight)
    except (TypeError, ValueError):
        raise UserError(f"weight {weight!r} is not a number; give a fidelity weight between 0 and 1 "
                         "(0.5 or less = full restoration, 1 = the input face).") from None
    if not 0.0 <= w <= 1.0:
        raise UserError(f"weight {w} is outside [0, 1]; give a fidelity weight between 0 and 1 "
                         "(0.5 or less = full restoration, 1 = the input face).")
    return min(1.0, 2.0 * (1.0 - w))


class ReferenceRestorer:
    """Mixin for a restorer whose ``forward(x, return_rgb=, randomize_noise=)`` returns (image, rgbs)."""

    def forward(self, x: torch.Tensor, return_latents: bool = False, return_rgb: bool = True,
                randomize_noise: Optional[bool] = True, **kwargs) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Restore aligned faces with the reference's signature.

        Args:
            x: (B, 3, S, S) faces in [-1, 1], RGB.
            return_latents: accepted and ignored, as in the reference.
            return_rgb: also compute the U-Net's multi-scale RGB outputs.
            randomize_noise: True (the reference's default) = fresh noise per call; False = the
                stored noise buffers; None = fresh in train mode, stored in eval mode.
            **kwargs: ``weight`` (fidelity, see :func:`weight_to_strength`); others are ignored as
                the reference ignores them.

        Returns:
            (image (B, 3, S, S), list of intermediate RGB images or []).
        """
        image, rgbs = super().forward(x, return_rgb=return_rgb, randomize_noise=randomize_noise)
        if "weight" in kwargs:
            strength = weight_to_strength(kwargs["weight"])
            if strength < 1.0:
                image = torch.lerp(x.to(image.dtype), image, strength)
        return image, rgbs


class ReferenceGenerator:
    """Mixin: the reference's StyleGAN2 generator forward (``randomize_noise=True`` by default)."""

    def forward(self, styles, input_is_latent: bool = False, noise=None,
                randomize_noise: Optional[bool] = True, truncation: float = 1, truncation_latent=None,
                inject_index: Optional[int] = None,
                return_latents: bool = False):
        """Synthesise images; returns (image (B, 3, S, S), latent (B, num_latent, C) or None)."""
        return self._synthesise(styles, None, input_is_latent, noise, randomize_noise, truncation,
                                truncation_latent, inject_index, return_latents)

    def _synthesise(self, styles, conditions, input_is_latent, noise, randomize_noise, truncation,
                    truncation_latent, inject_index, return_latents):
        pairs = None if conditions is None else list(zip(conditions[0::2], conditions[1::2]))
        return super().forward(styles, input_is_latent=input_is_latent, noise=noise,
                               randomize_noise=randomize_noise, truncation=truncation,
                               truncation_latent=truncation_latent, inject_index=inject_index,
                               return_latents=return_latents, conditions=pairs)


class ReferenceSFTGenerator(ReferenceGenerator):
    """Mixin: the reference's SFT generator forward, conditions as ``[scale0, shift0, scale1, ...]``."""

    def forward(self, styles, conditions: Sequence[torch.Tensor], input_is_latent: bool = False, noise=None,
                randomize_noise: Optional[bool] = True, truncation: float = 1, truncation_latent=None,
                inject_index: Optional[int] = None, return_latents: bool = False):
        """Synthesise images modulated by SFT conditions (the reference's flat list, pairs in order).

        Returns:
            (image (B, 3, S, S), latent (B, num_latent, C) or None).
        """
        return self._synthesise(styles, conditions, input_is_latent, noise, randomize_noise, truncation,
                                truncation_latent, inject_index, return_latents)


# -- the reference's classes --------------------------------------------------------------------
class GFPGANv1Clean(ReferenceRestorer, gfpgan_arch.GFPGANv1Clean):
    """GFP-GAN without custom ops, called as the reference calls it; arguments as
    :class:`gfpgan.archs.gfpgan_arch.GFPGANv1Clean`."""


class GFPGANv1(ReferenceRestorer, gfpgan_arch.GFPGANv1):
    """GFP-GAN as in the paper, called as the reference calls it; arguments as
    :class:`gfpgan.archs.gfpgan_arch.GFPGANv1` (pure PyTorch: no BasicSR compiled ops, CPU too)."""


class GFPGANBilinear(ReferenceRestorer, bilinear_net.GFPGANBilinear):
    """GFP-GAN with bilinear resampling, called as the reference calls it; arguments as
    :class:`gfpgan.archs.bilinear_net.GFPGANBilinear`. Unlike the reference's, ``forward`` accepts
    ``weight=`` and other keywords, so ``GFPGANer(arch='bilinear')`` works (the reference raises a
    TypeError there)."""


class RestoreFormer(ReferenceRestorer, restoreformer_net.RestoreFormer):
    """RestoreFormer called as the reference calls it (``weight=`` blends); arguments as
    :class:`gfpgan.archs.restoreformer_net.RestoreFormer`. Returns ``(image, None)``."""


class StyleGAN2GeneratorClean(ReferenceGenerator, stylegan2_arch.StyleGAN2GeneratorClean):
    """StyleGAN2 generator without custom ops; arguments as
    :class:`gfpgan.archs.stylegan2_arch.StyleGAN2GeneratorClean`."""


class StyleGAN2GeneratorCSFT(ReferenceSFTGenerator, stylegan2_arch.StyleGAN2GeneratorClean):
    """Clean StyleGAN2 generator with SFT conditions (the decoder of GFPGANv1Clean); arguments as
    :class:`gfpgan.archs.stylegan2_arch.StyleGAN2GeneratorClean`."""


class StyleGAN2GeneratorSFT(ReferenceSFTGenerator, stylegan2_arch.StyleGAN2Generator):
    """Original StyleGAN2 generator with SFT conditions (the decoder of GFPGANv1); arguments as
    :class:`gfpgan.archs.stylegan2_arch.StyleGAN2Generator`."""


class StyleGAN2GeneratorBilinear(ReferenceGenerator, bilinear_net.StyleGAN2GeneratorBilinear):
    """Bilinear StyleGAN2 generator; arguments as
    :class:`gfpgan.archs.bilinear_net.StyleGAN2GeneratorBilinear` without ``sft_half``."""

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8,
                 channel_multiplier: float = 2, lr_mlp: float = 0.01, narrow: float = 1,
                 interpolation_mode: str = "bilinear"):
        super().__init__(out_size, num_style_feat, num_mlp, channel_multiplier, lr_mlp, narrow,
                         interpolation_mode=interpolation_mode)


class StyleGAN2GeneratorBilinearSFT(ReferenceSFTGenerator, bilinear_net.StyleGAN2GeneratorBilinear):
    """Bilinear StyleGAN2 generator with SFT conditions; arguments as
    :class:`gfpgan.archs.bilinear_net.StyleGAN2GeneratorBilinear` without ``interpolation_mode``."""

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8,
                 channel_multiplier: float = 2, lr_mlp: float = 0.01, narrow: float = 1,
                 sft_half: bool = False):
        super().__init__(out_size, num_style_feat, num_mlp, channel_multiplier, lr_mlp, narrow, sft_half)


# -- the reference's networks as the face pipeline's model ---------------------------------------
class ReferenceFaceModel:
    """A network with the reference's restorer signature, as the face pipeline's ``FaceModel``.

    ``net(x, return_rgb=False, randomize_noise=False)[0]`` on (B, 3, S, S) faces in [-1, 1]: the
    stored noise buffers (the reference draws fresh noise per call), no RGB pyramid. The device
    is read from the network on every call, so a caller that moves the network
    (``restorer.gfpgan.to(device)``, as webui does) is followed. The pipeline restores many faces
    per call; the network's own ``weight=`` blending is not used (the pipeline's strength is).

    The network itself stays as the caller built it (fp32; callers run it and load weights into
    it). Where :func:`gfpgan.precision.choose_precision` picks bf16 (a CPU with native bf16, the
    clean layout), the faces go through a bf16 copy, made again whenever the network is replaced,
    moved or its weights change.

    Args:
        net: a network whose ``forward(x, return_rgb=, randomize_noise=, **kwargs)`` returns
            ``(image, ...)`` (the classes of this module, or the reference's own).
        size: side S of the aligned faces it takes (the reference's GFPGANer uses 512).
        precision: one of :data:`gfpgan.precision.PRECISIONS`.

    Attributes:
        size: as given.
        device: the device of the network's parameters (CPU for a network without any).
    """

    def __init__(self, net: nn.Module, size: int = 512, precision: str = "auto"):
        from gfpgan.precision import PRECISIONS

        if precision not in PRECISIONS:
            raise UserError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}.")
        self.net = net
        self.size = int(size)
        self.precision = precision
        self._copy: Tuple[tuple, Optional[nn.Module]] = ((), None)
        self._lock = threading.Lock()

    @property
    def device(self) -> torch.device:
        for p in self.net.parameters():
            return p.device
        return torch.device("cpu")

    def _runner(self) -> Tuple[nn.Module, torch.dtype, torch.memory_format]:
        """The module to run (the network, or its reduced-precision copy), its dtype and layout."""
        from gfpgan.inference.faces.model import bf16_faithful
        from gfpgan.precision import choose_precision

        net = self.net
        chosen = choose_precision(self.precision, self.device, bf16_faithful=bf16_faithful(net))
        if chosen.dtype == torch.float32:
            return net, torch.float32, torch.contiguous_format
        params = list(net.parameters())
        key = (id(net), chosen.name, self.device, params[0].data_ptr() if params else 0,
               tuple(p._version for p in params))
        with self._lock:
            if self._copy[0] != key:
                fast = copy.deepcopy(net).eval().requires_grad_(False).to(chosen.dtype)
                self._copy = (key, fast.to(memory_format=torch.channels_last))
            return self._copy[1], chosen.dtype, torch.channels_last

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Restore (B, 3, S, S) RGB faces in [-1, 1]; float32 output on the network's device."""
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"expected (B,3,{self.size},{self.size}) faces, got {tuple(x.shape)}")
        net, dtype, layout = self._runner()
        x = x.to(self.device, dtype).contiguous(memory_format=layout)
        return net(x, return_rgb=False, randomize_noise=False)[0].float()

    def __repr__(self) -> str:
        return f"ReferenceFaceModel({type(self.net).__name__}, size={self.size}, device={self.device})"
