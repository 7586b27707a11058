"""The reference's (TencentARC/GFPGAN 1.3.8) calling conventions on top of this project's networks.

Programs written for the reference build its classes from ``gfpgan.archs.<module>`` and call them
with its forward signatures. The reference-named modules of this package (``gfpganv1_clean_arch``,
``gfpganv1_arch``, ``stylegan2_clean_arch``, ``gfpgan_bilinear_arch``, ``stylegan2_bilinear_arch``)
subclass this project's networks with the mixins below, which only translate the calls:

* restorers: ``net(x, return_latents=False, return_rgb=True, randomize_noise=True, **kwargs)``
  returning ``(image, out_rgbs)``; ``weight=`` (the reference's ignored fidelity weight) works,
  see :func:`weight_to_strength`;
* generators: ``forward(styles, [conditions,] input_is_latent=False, noise=None,
  randomize_noise=True, truncation=1, truncation_latent=None, inject_index=None,
  return_latents=False)`` with the SFT conditions as one flat list ``[scale0, shift0, scale1, ...]``.

``randomize_noise=True``, the reference's default, is honoured as written: fresh StyleGAN2 noise
on every call, in train and eval mode, exactly as the reference draws it (so code and tests
written against the reference see the same behaviour). ``randomize_noise=False`` uses the stored
noise buffers (deterministic). This project's own pipeline (``TorchFaceModel``, ``GFPGANer``)
always asks for the stored buffers, so its results are deterministic and video does not flicker.
"""

from typing import List, Optional, Sequence, Tuple

import torch

from gfpgan.errors import UserError

__all__ = ["weight_to_strength", "ReferenceRestorer", "ReferenceGenerator", "ReferenceSFTGenerator"]


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
