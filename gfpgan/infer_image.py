"""Restore faces in images: ``python -m gfpgan.infer_image -i INPUT -o OUTPUT [options]``.

INPUT is an image file, a folder of images or a glob pattern (quote it). OUTPUT gets the reference
layout (GFPGAN's ``inference_gfpgan.py``)::

    cropped_faces/<name>_<NN>.png            aligned input faces
    restored_faces/<name>_<NN>[_<suffix>].png
    cmp/<name>_<NN>.png                      input face | restored face, side by side
    restored_imgs/<name>[_<suffix>].<ext>    the whole restored image (not with --aligned)

Images are read as viewers show them (EXIF orientation applied, colour profiles and CMYK converted
to sRGB; see :func:`gfpgan.images.decode_image`); a restored JPEG keeps the input's EXIF (dates,
GPS location, camera) with the orientation reset to 1. Every file is written atomically (temp +
rename). An unreadable image is reported in one line and
skipped; the exit code is then 1 (2 when nothing could be restored or an option is wrong).
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from gfpgan.cli import add_common_arguments
from gfpgan.compat.cli import add_reference_options, apply_reference_options
from gfpgan.errors import UserError, command
from gfpgan.inference.settings import DEFAULT_MODEL


def build_parser() -> argparse.ArgumentParser:
    from gfpgan.inference.settings import add_face_arguments

    p = argparse.ArgumentParser(prog="gfpgan-infer-image", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-i", "--input", required=True, help="image file, folder or glob pattern")
    p.add_argument("-o", "--output", default="results", help="output folder")
    p.add_argument("--aligned", action="store_true",
                   help="inputs are already aligned faces (no detection, no paste-back)")
    add_face_arguments(p)
    p.add_argument("--bg-upsampler", default=None, metavar="WEIGHTS",
                   help="Real-ESRGAN weights (e.g. RealESRGAN_x2plus.pth) for the background; "
                        "default: Lanczos resize")
    p.add_argument("--bg-tile", type=int, default=400, help="background upsampler tile (0 = none)")
    p.add_argument("--ext", default="auto", choices=["auto", "png", "jpg"],
                   help="format of restored_imgs (auto = the input's)")
    p.add_argument("--suffix", default=None, help="suffix of restored faces and images")
    add_common_arguments(p)
    add_reference_options(p)  # -v/-s/-w/--bg_upsampler ... as inference_gfpgan.py spells them
    return p


def list_inputs(spec: str) -> List[Path]:
    """Image files named by a file, a folder or a glob pattern (sorted)."""
    from gfpgan.images import IMAGE_EXTENSIONS, list_images

    path = Path(spec.rstrip("/") or "/")
    if path.is_file():
        return [path]
    if path.is_dir():
        files = list_images(path)
    else:
        files = sorted(Path(p) for p in glob.glob(spec) if Path(p).is_file()
                       and Path(p).suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise UserError(f"no images found at '{spec}'; give an image file, a folder of images or "
                        "a quoted glob such as 'photos/*.jpg'.")
    return files


def _save(path: Path, img: np.ndarray, exif: Optional[bytes] = None) -> None:
    from gfpgan.images import write_image_atomic

    write_image_atomic(path, img, exif=exif)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = apply_reference_options(build_parser().parse_args(argv), DEFAULT_MODEL)
    from gfpgan.inference.settings import RestorerConfig

    config = RestorerConfig.from_args(args)
    if not args.debug:  # OpenCV prints its own decoder warnings; the one-line error is ours
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    files = list_inputs(args.input)
    out = Path(args.output)

    from gfpgan.images import read_image_exif
    from gfpgan.inference.faces.model import resolve_device
    from gfpgan.inference.faces.pipeline import FaceRestorer

    background = "resize"
    if args.bg_upsampler and not args.aligned:
        from gfpgan.inference.faces.background import BackgroundUpsampler

        background = BackgroundUpsampler(args.bg_upsampler, resolve_device(config.device),
                                         outscale=config.upscale, tile=args.bg_tile,
                                         half=config.precision == "fp16")
    restorer = FaceRestorer(args.model, config, aligned=args.aligned, background=background)
    suffix = f"_{args.suffix}" if args.suffix else ""
    failed = faces_total = 0
    try:
        from tqdm import tqdm

        it = tqdm(files, desc="images", unit="img", disable=len(files) < 2)
    except ImportError:  # pragma: no cover
        it = files
    for path in it:
        try:
            img, exif = read_image_exif(path)  # upright, sRGB; EXIF kept for a JPEG output
        except UserError as exc:
            if len(files) == 1:
                raise
            print(f"skipped: {exc}", file=sys.stderr)
            failed += 1
            continue
        res = restorer.restore(img)
        if not res.restored_faces:
            print(f"note: {path.name}: no face found; the image is passed through", file=sys.stderr)
        base = path.stem
        for k, (crop, face) in enumerate(zip(res.cropped_faces, res.restored_faces)):
            _save(out / "cropped_faces" / f"{base}_{k:02d}.png", crop)
            _save(out / "restored_faces" / f"{base}_{k:02d}{suffix}.png", face)
            _save(out / "cmp" / f"{base}_{k:02d}.png", np.concatenate([crop, face], 1))
        faces_total += len(res.restored_faces)
        if res.restored_img is not None:
            ext = path.suffix.lower().lstrip(".") if args.ext == "auto" else args.ext
            ext = ext if ext in ("png", "jpg", "jpeg", "bmp", "webp", "tif", "tiff") else "png"
            _save(out / "restored_imgs" / f"{base}{suffix}.{ext}", res.restored_img, exif)
    done = len(files) - failed
    print(f"restored {faces_total} face(s) in {done} image(s); results in {out}"
          + (f"; {failed} unreadable image(s) skipped" if failed else ""))
    if done == 0:
        raise UserError(f"none of the {len(files)} input images could be read; check '{args.input}'.")
    return 1 if failed else 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
