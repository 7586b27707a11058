"""The background upsampler: Real-ESRGAN (through BasicSR) for everything around the faces.

``--bg-upsampler realesrgan`` scales the frame with Real-ESRGAN x2plus before the restored faces
are pasted in; BasicSR is imported only when this is used.
"""

from __future__ import annotations

import numpy as np
import torch

from gfpgan.errors import UserError

__all__ = ["BackgroundUpsampler"]

class BackgroundUpsampler:
    """Real-ESRGAN (RRDBNet) background upsampler from a local weights file, tiled.

    The reference silently drops its background upsampler on CPU; here it runs where it is asked
    for (slowly on CPU), with tiles so that large frames fit in memory. The network class comes
    from BasicSR, imported only when this is built.

    Args:
        weights: ``RealESRGAN_x2plus.pth`` (or x4plus); the scale is read from the weights.
        device: torch device.
        outscale: final scale of the frame (the network output is resized when it differs).
        tile: tile side in input pixels (0 = whole frame at once).
        half: fp16 on CUDA.
    """

    def __init__(self, weights: str, device: torch.device, outscale: float = 2, tile: int = 400,
                 tile_pad: int = 10, half: bool = False):
        import os

        if not os.path.isfile(weights):
            raise UserError(f"background upsampler weights '{weights}' not found; download "
                            "RealESRGAN_x2plus.pth or leave out --bg-upsampler.")
        try:
            sd = torch.load(weights, map_location="cpu", weights_only=True)
            sd = sd.get("params_ema", sd.get("params", sd))
            in_ch = sd["conv_first.weight"].shape[1]
            num_feat = sd["conv_first.weight"].shape[0]
            grow = sd["body.0.rdb1.conv1.weight"].shape[0]
            blocks = len({k.split(".")[1] for k in sd if k.startswith("body.")})
        except Exception as exc:
            raise UserError(f"'{weights}' is not a Real-ESRGAN RRDBNet checkpoint "
                            f"({type(exc).__name__}); give RealESRGAN_x2plus.pth.") from None
        from basicsr.archs.rrdbnet_arch import RRDBNet  # lazy: BasicSR imports a lot

        self.scale = {3: 4, 12: 2, 48: 1}.get(in_ch)
        if self.scale is None:
            raise UserError(f"'{weights}' has {in_ch} input channels; expected a Real-ESRGAN x1/x2/x4 "
                            "RRDBNet.")
        net = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=num_feat, num_block=blocks,
                      num_grow_ch=grow, scale=self.scale)
        try:
            net.load_state_dict(sd, strict=True)
        except RuntimeError:
            raise UserError(f"'{weights}' does not fit RRDBNet; give RealESRGAN_x2plus.pth.") from None
        self.device = torch.device(device)
        self.dtype = torch.float16 if half and self.device.type == "cuda" else torch.float32
        self.net = net.eval().requires_grad_(False).to(self.device, self.dtype)
        self.outscale, self.tile, self.tile_pad = float(outscale), int(tile), int(tile_pad)

    @torch.inference_mode()
    def __call__(self, img: np.ndarray) -> np.ndarray:
        """Upsample an RGB uint8 (H, W, 3) frame to (H*outscale, W*outscale, 3) uint8."""
        import cv2

        h, w = img.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(img)).to(self.device)
        x = x.permute(2, 0, 1)[None].to(self.dtype).div_(255.0)
        s, t, p = self.scale, self.tile or max(h, w), self.tile_pad
        out = torch.empty((1, 3, h * s, w * s), dtype=self.dtype, device=self.device)
        for y0 in range(0, h, t):
            for x0 in range(0, w, t):
                y1, x1 = min(y0 + t, h), min(x0 + t, w)
                py0, px0 = max(y0 - p, 0), max(x0 - p, 0)
                piece = self.net(x[:, :, py0:min(y1 + p, h), px0:min(x1 + p, w)])
                oy, ox = (y0 - py0) * s, (x0 - px0) * s
                out[:, :, y0 * s:y1 * s, x0 * s:x1 * s] = \
                    piece[:, :, oy:oy + (y1 - y0) * s, ox:ox + (x1 - x0) * s]
        res = out[0].float().clamp_(0, 1).mul_(255).round_().to(torch.uint8)
        res = res.permute(1, 2, 0).contiguous().cpu().numpy()
        th, tw = round(h * self.outscale), round(w * self.outscale)
        if res.shape[:2] != (th, tw):
            res = cv2.resize(res, (tw, th), interpolation=cv2.INTER_LANCZOS4)
        return res
