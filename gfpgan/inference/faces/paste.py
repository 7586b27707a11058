"""Paste restored faces back into their frame through the inverse alignment affine.

The reference warps each face, a mask and (with parsing) a second mask over the *whole* frame and
blurs a 512x512 parse map twice with a 101x101 Gaussian for every face of every frame; users see
paste-back dominate video time (CodeFormer #408). Here:

* the warp and blend are limited to the face's bounding box in the frame (a few hundred pixels
  wide instead of the full frame);
* the feathered mask lives in crop coordinates, is computed once per crop size (cached) and
  warped with the face, so it moves exactly with the (smoothed) alignment and never jumps;
* the optional ParseNet mask (facexlib weights from a local file) is blurred on the crop, batched,
  and can be averaged over time per track (:class:`MaskSmoother`) so it does not flicker.

Affines follow ``gfpgan.inference.faces.alignment``: a (2, 3) matrix mapping frame pixels to crop pixels
(pixel centres at integer coordinates, as in OpenCV).
"""

from __future__ import annotations

import functools
import os
from typing import Dict, Optional, Sequence, Union

import cv2
import numpy as np
import torch

from gfpgan.errors import UserError

__all__ = ["feather_mask", "scale_affine", "paste_face", "ParseMasker", "MaskSmoother"]


@functools.lru_cache(maxsize=8)
def feather_mask(size: int, margin: float = 0.02, ramp: float = 0.10) -> np.ndarray:
    """A square mask in crop coordinates that fades smoothly to 0 at the crop's border.

    Args:
        size: crop side S.
        margin: fraction of S left fully transparent at the border (hides warp edge pixels).
        ramp: fraction of S over which the mask rises from 0 to 1 (smoothstep, no visible seam).

    Returns:
        (S, S) float32 in [0, 1], read-only (cached and shared).
    """
    c = np.arange(size, dtype=np.float32) + 0.5
    edge = np.minimum(c, size - c)  # distance to the nearest border, per axis
    t = np.clip((edge - margin * size) / max(ramp * size, 1e-6), 0.0, 1.0)
    t = t * t * (3.0 - 2.0 * t)  # smoothstep: continuous slope at both ends
    mask = np.minimum(t[:, None], t[None, :]).astype(np.float32)
    mask.setflags(write=False)
    return mask


def scale_affine(m: np.ndarray, scale: float) -> np.ndarray:
    """Re-express a frame->crop affine for the frame resized by ``scale`` (cv2.resize centres).

    A pixel x of the resized frame sits at (x + 0.5) / scale - 0.5 in the original one.
    """
    m = np.asarray(m, dtype=np.float64)
    if scale == 1:
        return m.copy()
    a = m[:, :2] / scale
    b = m[:, 2] + m[:, :2] @ np.full(2, 0.5 / scale - 0.5)
    return np.concatenate([a, b[:, None]], 1)


def paste_face(frame: np.ndarray, face: np.ndarray, affine: np.ndarray,
               mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Blend one restored face into ``frame`` in place, touching only its bounding box.

    Args:
        frame: (H, W, 3) uint8 RGB, modified in place.
        face: (S, S, 3) uint8 RGB restored crop.
        affine: (2, 3) frame->crop matrix used to align this face (in ``frame``'s pixels).
        mask: (S, S) float in [0, 1] in crop coordinates; the cached feathered mask when None.

    Returns:
        ``frame`` (for chaining).
    """
    h, w = frame.shape[:2]
    s = face.shape[0]
    if mask is None:
        mask = feather_mask(s)
    inv = cv2.invertAffineTransform(np.asarray(affine, dtype=np.float64))
    corners = np.array([[0, 0, 1], [s - 1, 0, 1], [0, s - 1, 1], [s - 1, s - 1, 1]], np.float64)
    pts = corners @ inv.T
    x0 = max(int(np.floor(pts[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(pts[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(pts[:, 0].max())) + 2, w)
    y1 = min(int(np.ceil(pts[:, 1].max())) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return frame  # the face lies outside the frame
    inv_box = inv.copy()
    inv_box[:, 2] -= (x0, y0)  # warp straight into the box, not the full frame
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(face, inv_box, size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = cv2.warpAffine(np.ascontiguousarray(mask, dtype=np.float32), inv_box, size,
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    region = frame[y0:y1, x0:x1].astype(np.float32)
    a = alpha[:, :, None]
    blended = region + a * (warped.astype(np.float32) - region)
    frame[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return frame


def _gaussian_kernel1d(sigma: float, device: torch.device) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


# ParseNet's 19 classes: 0 background, 14 neck, 16 cloth, 17 hair, 18 hat are not face.
_FACE_CLASSES = [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0]


class ParseMasker:
    """Face-parsing masks from facexlib's ParseNet, loaded from a local weights file.

    Args:
        weights: path to ``parsing_parsenet.pth``; ``None`` disables parsing (use the feather).
        device: torch device for the network.
        blur_sigma: Gaussian blur at 512 px scale (the reference blurs twice with sigma 11).
        border: pixels (at 512) zeroed at the crop border so the warp edge never shows.
    """

    def __init__(self, weights: str, device: Union[str, torch.device] = "cpu",
                 blur_sigma: float = 15.5, border: int = 10):
        if not os.path.isfile(weights):
            raise UserError(f"face-parsing weights '{weights}' not found; download facexlib's "
                            "parsing_parsenet.pth or leave out --parse-weights.")
        from facexlib.parsing.parsenet import ParseNet  # lazy: only when parsing is asked for

        net = ParseNet(in_size=512, out_size=512, parsing_ch=19)
        try:
            sd = torch.load(weights, map_location="cpu", weights_only=True)
            if isinstance(sd, dict) and "params" in sd and isinstance(sd["params"], dict):
                sd = sd["params"]
            net.load_state_dict(sd, strict=True)
        except Exception as exc:
            raise UserError(f"'{weights}' is not a ParseNet checkpoint ({type(exc).__name__}); "
                            "give facexlib's parsing_parsenet.pth.") from None
        self.device = torch.device(device)
        self.net = net.eval().requires_grad_(False).to(self.device)
        self.blur_sigma = blur_sigma
        self.border = border
        self._classes = torch.tensor(_FACE_CLASSES, dtype=torch.float32, device=self.device)

    @torch.inference_mode()
    def __call__(self, faces: torch.Tensor) -> torch.Tensor:
        """Soft face masks for restored crops.

        Args:
            faces: (B, 3, S, S) float in [-1, 1] RGB.

        Returns:
            (B, S, S) float32 in [0, 1] on the masker's device.
        """
        s = faces.shape[-1]
        x = faces.to(self.device).float()
        if s != 512:
            x = torch.nn.functional.interpolate(x, size=(512, 512), mode="bilinear",
                                                align_corners=False)
        logits = self.net(x)[0]
        mask = self._classes[logits.argmax(1)][:, None]  # (B,1,512,512)
        k = _gaussian_kernel1d(self.blur_sigma, self.device)
        pad = k.numel() // 2
        mask = torch.nn.functional.pad(mask, (pad, pad, pad, pad), mode="replicate")
        mask = torch.nn.functional.conv2d(mask, k.view(1, 1, 1, -1))
        mask = torch.nn.functional.conv2d(mask, k.view(1, 1, -1, 1))
        b = self.border
        mask[..., :b, :] = 0
        mask[..., -b:, :] = 0
        mask[..., :, :b] = 0
        mask[..., :, -b:] = 0
        if s != 512:
            mask = torch.nn.functional.interpolate(mask, size=(s, s), mode="bilinear",
                                                   align_corners=False)
        return mask[:, 0].clamp_(0, 1)


class MaskSmoother:
    """Exponential moving average of each track's crop-space mask, so parse masks do not flicker.

    Args:
        alpha: weight of the newest mask (1 = no smoothing).
    """

    def __init__(self, alpha: float = 0.35):
        self.alpha = float(alpha)
        self._state: Dict[int, np.ndarray] = {}

    def __call__(self, track_id: Optional[int], mask: np.ndarray) -> np.ndarray:
        """Return the smoothed mask of ``track_id`` after adding ``mask`` ((S,S) float)."""
        if track_id is None or self.alpha >= 1.0:
            return mask
        prev = self._state.get(track_id)
        if prev is None or prev.shape != mask.shape:
            out = mask.astype(np.float32, copy=True)
        else:
            out = prev + self.alpha * (mask - prev)
        self._state[track_id] = out
        return out

    def drop(self, live_ids: Sequence[int]) -> None:
        """Forget tracks that are no longer alive (bounded memory on long videos)."""
        live = set(live_ids)
        for tid in [t for t in self._state if t not in live]:
            del self._state[tid]
