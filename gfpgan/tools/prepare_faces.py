"""Raw photos -> faces aligned to the FFHQ 5-point template (a training folder or LMDB).

Usage::

    python -m gfpgan.tools.prepare_faces photos/ datasets/myfaces_512            # folder of PNGs
    python -m gfpgan.tools.prepare_faces photos/ datasets/myfaces_512.lmdb       # LMDB
    python -m gfpgan.tools.prepare_faces photos/ out --detector retinaface \
        --weights experiments/pretrained_models/detection_Resnet50_Final.pth --size 1024

Every face whose crop covers at least ``--min-size`` source pixels (the side of the aligned
square in the photo; smaller faces would be upsampled into the crop) is warped to a ``--size``
crop and stored as ``<photo stem>_<face index>`` (index by detector score). The five landmarks of
each face, in crop pixels, go to ``landmarks.json`` beside the images, ready for
``python -m gfpgan.tools.component_boxes --landmarks OUT``. The output is built in
``OUT.partial`` and renamed at the end; rerunning an interrupted command resumes it.
"""

import argparse
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
from tqdm import tqdm

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gfpgan.tools.prepare_faces",
                                description=__doc__.split("\n")[0])
    p.add_argument("input", nargs="+", help="photo files and/or folders of photos")
    p.add_argument("output", help="output folder, or an LMDB when it ends in .lmdb")
    p.add_argument("--size", type=int, default=512, help="aligned crop side (default 512)")
    p.add_argument("--min-size", type=float, default=128,
                   help="skip faces whose crop square is smaller than this in the photo, px (default 128)")
    p.add_argument("--detector", choices=("mtcnn", "retinaface"), default="mtcnn",
                   help="mtcnn (offline, weights ship with facenet-pytorch) or retinaface (needs --weights)")
    p.add_argument("--weights", help="RetinaFace weights (facexlib's detection_Resnet50_Final.pth)")
    p.add_argument("--threshold", type=float, default=None, help="detector confidence threshold")
    p.add_argument("--max-faces", type=int, default=0, help="keep at most this many faces per photo (0: all)")
    p.add_argument("--recursive", action="store_true", help="search input folders recursively")
    add_common_arguments(p, device=True, quiet=True, resumable=True)
    return p


def collect_inputs(inputs: Sequence[str], recursive: bool = False) -> List[Path]:
    """Photo files from files and folders, in a stable order."""
    from gfpgan.images import list_images

    files: List[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += list_images(p, recursive=recursive)
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"{p} does not exist; give photo files or folders.")
    if not files:
        raise UserError(f"no images found in {', '.join(inputs)}; give photo files or folders.")
    return files


def align_faces(img: np.ndarray, det, size: int, min_size: float, max_faces: int = 0):
    """Aligned crops of the faces in ``det`` that are large enough.

    Returns:
        (faces, n_small): faces as a list of (crop uint8 (size, size, 3), landmarks (5, 2) in crop
        pixels), in detector order; n_small is the number of faces skipped as too small.
    """
    from gfpgan.inference.faces.alignment import estimate_affine, transform_points, warp_face

    faces, n_small = [], 0
    for lm in det.landmarks:
        m = estimate_affine(lm, size)
        side = size / float(np.hypot(m[0, 0], m[0, 1]))  # crop side in photo pixels
        if side < min_size:
            n_small += 1
            continue
        faces.append((warp_face(img, m, size), transform_points(lm, m)))
        if max_faces and len(faces) >= max_faces:
            break
    return faces, n_small


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from gfpgan.data.file_backends import FolderWriter, LmdbWriter
    from gfpgan.images import read_image_or_skip
    from gfpgan.inference.faces.detection import build_detector

    files = collect_inputs(args.input, args.recursive)
    stems = [f.stem for f in files]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise UserError(f"several inputs are named {dup}.*; face keys come from file names, rename them.")
    detector = build_detector(args.detector, device=args.device, weights=args.weights,
                              threshold=args.threshold)
    writer_cls = LmdbWriter if args.output.rstrip("/").endswith(".lmdb") else FolderWriter
    c = {"photos": 0, "resumed": 0, "unreadable": [], "no_face": 0, "small": 0, "faces": 0}
    with writer_cls(args.output, overwrite=args.overwrite, resume=not args.restart,
                    landmarks_size=args.size) as w:
        bar = tqdm(files, desc="prepare", unit="photo", disable=args.quiet)
        for f in bar:
            if w.has(f"{f.stem}_00"):
                c["resumed"] += 1
                continue
            img = read_image_or_skip(f, c["unreadable"])
            if img is None:
                continue
            c["photos"] += 1
            faces, n_small = align_faces(img, detector.detect([img])[0], args.size, args.min_size,
                                         args.max_faces)
            c["small"] += n_small
            c["no_face"] += not faces
            for i, (crop, lm) in enumerate(faces):
                w.add(f"{f.stem}_{i:02d}", crop, landmarks=lm)
                c["faces"] += 1
            bar.set_postfix(faces=c["faces"])
        if len(w) == 0:
            w.discard()
            raise UserError(f"no face of at least {args.min_size:g} px was found in {', '.join(args.input)}; "
                            f"nothing written (lower --min-size or check the photos).")
    print(f"{args.output}: {c['faces']} faces from {c['photos']} photos ({c['resumed']} photos resumed); "
          f"{c['small']} faces under {args.min_size:g} px skipped, {c['no_face']} photos without a usable "
          f"face, {len(c['unreadable'])} unreadable"
          f"{': ' + ', '.join(c['unreadable'][:10]) if c['unreadable'] else ''}")
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
