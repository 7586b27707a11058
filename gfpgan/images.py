"""Images at the bottom of the package: tensors <-> images, decoding, encoding, listing.

Conventions: images in memory are RGB uint8 (H, W, 3) numpy arrays; network tensors are float
(B, 3, H, W) in [-1, 1]. Every file this project writes goes through :func:`atomic_path`, so an
interrupted write never leaves a partial file at the destination.

Files are read as image viewers show them (:func:`decode_image`): the EXIF orientation is applied
(all 8 values, as Pillow's ``ImageOps.exif_transpose``: a portrait phone photo stored sideways
comes out upright), an embedded colour profile other than sRGB (Display P3, Adobe RGB...) is
converted to sRGB with littlecms and CMYK is converted to RGB, both as Pillow does. Pixels are
decoded by OpenCV where no conversion is needed (the common case: the header alone is parsed by
Pillow), else by Pillow. Arrays handed to the API are taken as given.

A restored JPEG keeps the input's EXIF (dates, GPS location, camera) with the orientation reset
to 1 and the embedded thumbnail left out (:func:`exif_for_output`, ``encode_image(exif=...)``).
"""

import io
import os
import struct
import sys
import warnings
from pathlib import Path
from typing import Optional, Tuple, Union

import cv2
import numpy as np
import torch

from gfpgan.errors import UserError
from gfpgan.files import PathLike, write_bytes_atomic

__all__ = ["img_to_tensor", "tensor_to_img", "decode_image", "read_image", "encode_image",
           "write_image_atomic", "list_images", "IMAGE_EXTENSIONS", "exif_for_output", "read_image_exif",
           "read_image_or_skip", "apply_orientation"]


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


_ORIENTATION = 0x0112


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn/flip an array stored with EXIF ``orientation`` (1..8) upright, as Pillow's
    ``ImageOps.exif_transpose`` does; any other value leaves it as it is."""
    if orientation == 2:
        img = img[:, ::-1]
    elif orientation == 3:
        img = img[::-1, ::-1]
    elif orientation == 4:
        img = img[::-1]
    elif orientation == 5:  # transpose
        img = img.swapaxes(0, 1)
    elif orientation == 6:  # stored turned 90 degrees counter-clockwise: turn it clockwise
        img = np.rot90(img, -1)
    elif orientation == 7:  # transverse
        img = img[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        img = np.rot90(img, 1)
    else:
        return img
    return np.ascontiguousarray(img)


def _header(data: bytes):
    """Pillow's view of the header (nothing decoded), or None where Pillow has nothing to add:
    a PNG without profile, EXIF or XMP, or a format Pillow does not know."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and not any(
            tag in data for tag in (b"iCCP", b"eXIf", b"com.adobe.xmp")):
        return None
    try:
        from PIL import Image
        with warnings.catch_warnings():  # a corrupt EXIF is ignored, as viewers do
            warnings.simplefilter("ignore")
            return Image.open(io.BytesIO(data))
    except Exception:  # not an image Pillow reads (OpenCV may): no metadata to apply
        return None


def _orientation(im, data: bytes) -> int:
    from PIL import Image
    try:
        if im.format == "PNG" and "exif" not in im.info and b"eXIf" not in data:
            exif = Image.Image.getexif(im)  # the base class does not decode the pixels for it
        else:
            exif = im.getexif()
        value = exif.get(_ORIENTATION, 1)
        return int(value) if value in range(1, 9) else 1
    except Exception:  # unreadable EXIF: viewers ignore it too
        return 1


def _icc(im) -> Optional[bytes]:
    """The embedded colour profile where it needs converting (not an sRGB one), else None."""
    icc = im.info.get("icc_profile")
    if not icc:
        return None
    try:
        from PIL import ImageCms
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        desc = ImageCms.getProfileDescription(profile) or ""
    except Exception:  # a damaged profile: viewers show the pixels as they are
        return None
    return None if "srgb" in desc.lower().replace(" ", "") else icc


def _pillow_rgb(im, icc: Optional[bytes]) -> np.ndarray:
    """Decode with Pillow and convert to sRGB (embedded profile) or RGB (CMYK and the rest)."""
    from PIL import ImageCms
    im.load()
    if icc is not None:
        mode = {"RGBA": "RGB", "RGBX": "RGB", "LA": "L", "P": "RGB", "PA": "RGB"}.get(im.mode, im.mode)
        src = im.convert(mode) if mode != im.mode else im
        try:
            out = ImageCms.profileToProfile(src, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                            ImageCms.createProfile("sRGB"), outputMode="RGB")
            return np.asarray(out)
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # the profile does not fit the pixels: as they are, like a viewer would
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        gray = np.asarray(im, np.float64)
        gray = (gray / 257.0 if gray.max() > 255 else gray).round().clip(0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, 2)
    return np.asarray(im.convert("RGB") if im.mode != "RGB" else im)


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to RGB uint8 as a viewer shows them: EXIF orientation applied,
    colour profile and CMYK converted to sRGB; gray, RGBA and 16-bit images are converted.

    Raises:
        UserError: the bytes are empty or not a decodable image.
    """
    if not data:
        raise UserError(f"{name} is empty; replace or remove it.")
    with warnings.catch_warnings():  # Pillow's about a corrupt EXIF: ignored, as viewers do
        warnings.simplefilter("ignore")
        return _decode(data, name)


def _decode(data: bytes, name: str) -> np.ndarray:
    im = _header(data)
    orientation, icc = 1, None
    if im is not None:
        orientation, icc = _orientation(im, data), _icc(im)
        # A TIFF's orientation is its own tag, applied by both decoders (OpenCV only for some
        # sample formats): Pillow decodes an oriented one, and nothing is turned twice.
        tiff = im.format == "TIFF"
        if icc is not None or im.mode in ("CMYK", "YCbCr", "LAB", "HSV") or (
                tiff and orientation != 1):
            try:
                rgb = _pillow_rgb(im, icc)
                return rgb if tiff else apply_orientation(rgb, orientation)
            except (OSError, ValueError, SyntaxError):
                pass  # Pillow cannot decode it: OpenCV may (else one sentence below)
        if tiff:
            orientation = 1
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise UserError(f"{name} is not a readable image (corrupt, truncated or another format); "
                        f"replace or remove it.")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return apply_orientation(img, orientation)


def exif_for_output(data: bytes) -> Optional[bytes]:
    """The EXIF block of encoded image bytes, ready for a restored copy: orientation set to 1 (the
    pixels are upright now) and the thumbnail left out (it shows the old orientation). Dates, GPS
    location, camera and the other tags are kept byte for byte. None when there is none or it is
    unreadable.
    """
    im = _header(data) if data else None
    if im is None:
        return None
    raw = im.info.get("exif")  # JPEG, WebP, PNG with eXIf before the pixels
    if not isinstance(raw, (bytes, bytearray)) or not raw:
        return None
    tiff = bytearray(raw[6:] if raw[:6] == b"Exif\x00\x00" else raw)
    try:
        order = {b"II": "<", b"MM": ">"}[bytes(tiff[:2])]
        (ifd0,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd0)
        for k in range(count):
            at = ifd0 + 2 + 12 * k
            tag, kind = struct.unpack_from(order + "HH", tiff, at)
            if tag == _ORIENTATION and kind == 3:  # SHORT, its value in the entry itself
                struct.pack_into(order + "H", tiff, at + 8, 1)
        struct.pack_into(order + "I", tiff, ifd0 + 2 + 12 * count, 0)  # no IFD1 (thumbnail)
    except (KeyError, struct.error):
        return None
    return bytes(tiff)


def _with_exif(jpeg: bytes, exif: bytes) -> bytes:
    """A JPEG with an APP1 EXIF segment after its JFIF APP0 (where Pillow puts it)."""
    payload = b"Exif\x00\x00" + exif
    if len(payload) + 2 > 0xFFFF or jpeg[:2] != b"\xff\xd8":
        return jpeg  # too large for one segment (not from a JPEG): left out
    at = 2
    if jpeg[2:4] == b"\xff\xe0":
        at = 4 + struct.unpack(">H", jpeg[4:6])[0]
    return jpeg[:at] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[at:]


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


def read_image_exif(path: PathLike) -> Tuple[np.ndarray, Optional[bytes]]:
    """:func:`read_image` and the file's EXIF for a restored copy (:func:`exif_for_output`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {os.fspath(path)} ({exc.strerror or exc}); check the path.") from None
    return decode_image(data, os.fspath(path)), exif_for_output(data)


def encode_image(img: np.ndarray, ext: str = ".png", quality: int = 95,
                 exif: Optional[bytes] = None) -> bytes:
    """Encode an RGB uint8 image to bytes in the format of ``ext`` (".png", ".jpg" ...).

    ``exif``: an EXIF block (see :func:`exif_for_output`) stored in a JPEG; other formats ignore it.
    """
    jpeg = ext.lower() in (".jpg", ".jpeg")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if jpeg else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise UserError(f"cannot encode an image as {ext}; use .png or .jpg.")
    return _with_exif(buf.tobytes(), exif) if jpeg and exif else buf.tobytes()


def write_image_atomic(path: PathLike, img: np.ndarray, quality: int = 95,
                       exif: Optional[bytes] = None) -> None:
    """Write an RGB uint8 image atomically; the format follows the extension of ``path``
    (``exif``: kept in a JPEG, see :func:`encode_image`)."""
    write_bytes_atomic(path, encode_image(img, Path(path).suffix or ".png", quality, exif))


def list_images(folder: PathLike, recursive: bool = False) -> list:
    """Sorted image files (by extension) in ``folder``."""
    folder = Path(folder)
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def read_image_or_skip(path: PathLike, skipped: list) -> Optional[np.ndarray]:
    """:func:`read_image`, or None for a file that cannot be read: its name is added to
    ``skipped`` and the reason printed on stderr (the data tools skip such files, never stop)."""
    try:
        return read_image(path)
    except UserError as exc:
        from tqdm import tqdm  # above a progress bar, not through it

        skipped.append(Path(path).name)
        tqdm.write(f"skipping {exc}", file=sys.stderr)
        return None
