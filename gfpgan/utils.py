"""Small image and file helpers shared by the tools, the data pipeline and inference.

Conventions: images in memory are RGB uint8 (H, W, 3) numpy arrays; network tensors are float
(B, 3, H, W) in [-1, 1]. Every file this project writes goes through :func:`atomic_path`, so an
interrupted write never leaves a partial file at the destination.
"""

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Union

import cv2
import numpy as np
import torch

from gfpgan.errors import UserError

PathLike = Union[str, os.PathLike]
__all__ = ["load_file_from_url", "img_to_tensor", "tensor_to_img", "decode_image", "read_image",
           "encode_image", "atomic_path", "write_bytes_atomic", "write_image_atomic", "list_images"]
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


@contextlib.contextmanager
def atomic_path(dest: PathLike, suffix: str = "", fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it onto ``dest``, on failure delete it.

    The one atomic-write helper of the project: every file it writes goes through here. The
    temporary name keeps ``dest``'s extension (plus ``suffix``) so writers that pick a format
    from the extension still work; the temporary lives in ``dest``'s folder so the rename is atomic.

    Args:
        dest: The final path (its folder is created).
        suffix: Extra text before the extension of the temporary name.
        fsync: Flush the file to disk before the rename (checkpoints: a crash right after the
            rename must not leave an empty file whose data was still in the page cache).
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the folder {dest.parent} ({exc.strerror or exc}); "
                        f"choose a writable destination.") from None
    if not os.access(dest.parent, os.W_OK):
        raise UserError(f"the folder {dest.parent} is not writable; choose a writable destination.")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=f".tmp{suffix}{dest.suffix}",
                               dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists() and fsync and tmp.is_file():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        if tmp.exists():  # mkstemp creates 0600; give the file the permissions open() would
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    with atomic_path(path, fsync=True) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_image_atomic(path: PathLike, img: np.ndarray, quality: int = 95) -> None:
    """Write an RGB uint8 image atomically; the format follows the extension of ``path``."""
    write_bytes_atomic(path, encode_image(img, Path(path).suffix or ".png", quality))


def list_images(folder: PathLike, recursive: bool = False) -> list:
    """Sorted image files (by extension) in ``folder``."""
    folder = Path(folder)
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def load_file_from_url(url: str, model_dir: Optional[str] = None, progress: bool = True,
                       file_name: Optional[str] = None) -> str:
    """Download a weights file unless it is already in ``model_dir`` (the reference's helper).

    ``GFPGANer`` looks this name up in ``gfpgan.utils`` at call time, so programs that replace it
    (AUTOMATIC1111's webui redirects ``model_dir``) keep working. See
    :func:`gfpgan.compat.download_weights` (atomic, checked against the model card's sha256).

    Returns:
        The local path.
    """
    from gfpgan.compat import download_weights

    return download_weights(url, model_dir=model_dir, progress=progress, file_name=file_name)


def __getattr__(name: str):
    # ``from gfpgan.utils import GFPGANer`` (roop, facefusion): imported on first use only
    if name == "GFPGANer":
        from gfpgan.inference.gfpganer import GFPGANer

        return GFPGANer
    raise AttributeError(f"module 'gfpgan.utils' has no attribute {name!r}")
