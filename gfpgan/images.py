"""Images at the bottom of the package: tensors <-> images, decoding, encoding, listing.

Conventions: images in memory are RGB uint8 (H, W, 3) numpy arrays; network tensors are float
(B, 3, H, W) in [-1, 1]. Every file this project writes goes through :func:`atomic_path`, so an
interrupted write never leaves a partial file at the destination.
"""

import os
from pathlib import Path
from typing import Union

import cv2
import numpy as np
import torch

from gfpgan.errors import UserError
from gfpgan.files import PathLike, write_bytes_atomic

__all__ = ["img_to_tensor", "tensor_to_img", "decode_image", "read_image", "encode_image",
           "write_image_atomic", "list_images", "IMAGE_EXTENSIONS"]


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def img_to_tensor(img: Union[np.ndarray, list], device=None) -> torch.Tensor:
    """RGB uint8 (H, W, 3) image, (B, H, W, 3) array or list of images -> float (B, 3, H, W) in [-1, 1]."""
    arr = np.stack(img) if isinstance(img, (list, tuple)) else np.asarray(img)
    if arr.ndim == 3:
        arr = arr[None]
    t = torch.from_numpy(np.ascontiguousarray(arr)).to(device=device)
    return t.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def tensor_to_img(t: torch.Tensor) -> np.ndarray:
    """Float (B, 3, H, W) or (3, H, W) in [-1, 1] -> RGB uint8 (B, H, W, 3) or (H, W, 3), rounded and clipped.

    The quantisation happens on the tensor's device, so only uint8 crosses to the host.
    """
    q = t.detach().float().add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)
    q = q.permute(0, 2, 3, 1) if q.ndim == 4 else q.permute(1, 2, 0)
    return q.contiguous().cpu().numpy()


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to RGB uint8; gray, RGBA and 16-bit images are converted.

    Raises:
        UserError: the bytes are empty or not a decodable image.
    """
    if not data:
        raise UserError(f"{name} is empty; replace or remove it.")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise UserError(f"{name} is not a readable image (corrupt, truncated or another format); "
                        f"replace or remove it.")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); gray, RGBA and 16-bit images are converted.

    Raises:
        UserError: the file is missing, empty or not a decodable image.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {os.fspath(path)} ({exc.strerror or exc}); check the path.") from None
    return decode_image(data, os.fspath(path))


def encode_image(img: np.ndarray, ext: str = ".png", quality: int = 95) -> bytes:
    """Encode an RGB uint8 image to bytes in the format of ``ext`` (".png", ".jpg" ...)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise UserError(f"cannot encode an image as {ext}; use .png or .jpg.")
    return buf.tobytes()


def write_image_atomic(path: PathLike, img: np.ndarray, quality: int = 95) -> None:
    """Write an RGB uint8 image atomically; the format follows the extension of ``path``."""
    write_bytes_atomic(path, encode_image(img, Path(path).suffix or ".png", quality))


def list_images(folder: PathLike, recursive: bool = False) -> list:
    """Sorted image files (by extension) in ``folder``."""
    folder = Path(folder)
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
