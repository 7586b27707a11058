"""Make the eye/mouth component box file (the reference's FFHQ_eye_mouth_landmarks_512.pth format).

Two sources::

    # FFHQ's official metadata (68 landmarks on the 1024 images; x0.5 for the 512 crops)
    python -m gfpgan.tools.component_boxes --ffhq-json ffhq-dataset-v2.json --scale 0.5 \
        -o experiments/pretrained_models/FFHQ_eye_mouth_landmarks_512.pth
    # the 5-point landmarks written by python -m gfpgan.tools.prepare_faces (folder or LMDB)
    python -m gfpgan.tools.component_boxes --landmarks datasets/myfaces_512 -o myfaces_boxes.pth

The output is a dict keyed by image index as 8 digits (or by the image stem when it is not a
number) with ``left_eye`` / ``right_eye`` / ``mouth`` -> [cx, cy, half_len] (see
:mod:`gfpgan.data.components`). ``--check FILE`` loads and validates an existing box file.
"""

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from tqdm import tqdm

from gfpgan.cli import add_common_arguments
from gfpgan.data.components import (
    PARTS,
    boxes_from_5,
    boxes_from_68,
    component_key,
    load_components,
    save_components,
)
from gfpgan.errors import UserError, command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gfpgan.tools.component_boxes",
                                description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ffhq-json", help="FFHQ's ffhq-dataset-v2.json (68-point 'face_landmarks')")
    src.add_argument("--landmarks", help="landmarks.json, or a prepared folder/LMDB that holds one")
    src.add_argument("--check", help="validate an existing box file and print a summary")
    p.add_argument("--scale", type=float, default=0.5,
                   help="landmark scale for --ffhq-json (0.5: 1024 metadata -> 512 crops)")
    p.add_argument("-o", "--output", help="box file to write (.pth)")
    add_common_arguments(p, quiet=True)
    return p


def boxes_from_ffhq_json(path, scale: float = 0.5, progress: bool = True) -> dict:
    """Boxes for every FFHQ image in the official metadata JSON, keyed ``f'{index:08d}'``."""
    try:
        with open(path, "rb") as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} as JSON ({exc}); give FFHQ's ffhq-dataset-v2.json.") from None
    boxes = {}
    for k, item in tqdm(doc.items(), desc="boxes", unit="img", disable=not progress):
        try:
            lm = np.asarray(item["image"]["face_landmarks"], np.float64)
            boxes[f"{int(k):08d}"] = boxes_from_68(lm, scale)
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}: entry {k!r} has no 68-point image.face_landmarks; "
                            f"give FFHQ's ffhq-dataset-v2.json.") from None
    return boxes


def boxes_from_landmarks5(path, progress: bool = True) -> dict:
    """Boxes from a 5-point landmarks sidecar, keyed like the dataset looks them up."""
    from gfpgan.data.file_backends import read_landmarks

    doc = read_landmarks(path)
    boxes = {}
    for k, lm in tqdm(doc["landmarks"].items(), desc="boxes", unit="img", disable=not progress):
        boxes[component_key(k)] = boxes_from_5(lm, doc["size"])
    return boxes


def summary(boxes: dict) -> str:
    halves = {p: np.array([b[p][2] for b in boxes.values()]) for p in PARTS}
    parts = ", ".join(f"{p} half_len {h.min():.1f}-{h.max():.1f} (mean {h.mean():.1f})"
                      for p, h in halves.items())
    return f"{len(boxes)} images; {parts}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.check:
        print(f"{args.check}: {summary(load_components(args.check))}")
        return 0
    if not args.output:
        raise UserError("give the box file to write with -o/--output.")
    if args.ffhq_json:
        boxes = boxes_from_ffhq_json(args.ffhq_json, args.scale, not args.quiet)
    else:
        boxes = boxes_from_landmarks5(args.landmarks, not args.quiet)
    if not boxes:
        raise UserError(f"{args.ffhq_json or args.landmarks} holds no landmarks; nothing to write.")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    save_components(args.output, boxes)
    print(f"{args.output}: {summary(boxes)}")
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
