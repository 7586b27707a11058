"""Synthetic paired test set in the CelebA-Test protocol of the GFP-GAN paper.

Usage::

    python -m gfpgan.tools.make_testset datasets/celeba_hq_3000 datasets/celeba_test --seed 0

Protocol (written to each setting's ``manifest.json``):

* GT: every readable image of the HQ folder (CelebA-HQ: 3,000 aligned faces), resized to
  ``--size`` (INTER_AREA when shrinking) and stored as PNG.
* LQ: the training degradation of :mod:`gfpgan.data.degradations` with the 512 recipe's ranges
  (Gaussian blur iso/aniso 50/50, kernel 41, sigma [0.1, 10]; down-and-back resize [0.8, 8];
  Gaussian noise [0, 20]; JPEG [60, 100]); no colour jitter, no gray (``--color`` adds the
  recipe's RGB shift 0.3/20 and jitter 0.3, and gray 0.01).
* Each image's parameters come from ``np.random.default_rng([seed, crc32(file stem)])``: the
  same seed gives the same set, and an image's degradation does not depend on the other files.
  Both settings use the same parameters for an image.
* Settings: ``blind`` (LQ at the GT size, blind face restoration) and ``sr4`` (x4 face
  super-resolution: the same degradation, but the last resize goes to ``size/4`` instead of back
  to ``size``).

Layout: ``OUT/<setting>/{gt,lq}/<stem>.png`` + ``OUT/<setting>/manifest.json`` (options, then per
image its parameters and the sha256 of the LQ/GT files). Built in ``OUT.partial`` and renamed at
the end; an interrupted run resumes (outputs are deterministic). Evaluate with
``PairedImageDataset(dataroot_gt=OUT/blind/gt, dataroot_lq=OUT/blind/lq)`` (``scale: 4`` for sr4).
"""

import argparse
import hashlib
import json
import shutil
import sys
import zlib
from pathlib import Path
from typing import Dict, Optional, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from gfpgan.cli import add_common_arguments
from gfpgan.data import degradations as deg
from gfpgan.errors import UserError, command

SETTINGS = {"blind": 1, "sr4": 4}
RECIPE = dict(blur_kernel_size=41, kernel_list=["iso", "aniso"], kernel_prob=[0.5, 0.5], blur_sigma=[0.1, 10],
              downsample_range=[0.8, 8], noise_range=[0, 20], jpeg_range=[60, 100])
COLOR = dict(color_jitter_prob=0.3, color_jitter_shift=20, color_jitter_pt_prob=0.3, gray_prob=0.01)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gfpgan.tools.make_testset",
                                description=__doc__.split("\n")[0])
    p.add_argument("input", help="folder of aligned HQ faces")
    p.add_argument("output", help="output folder (gets one sub-folder per setting)")
    p.add_argument("--setting", choices=("blind", "sr4", "both"), default="both",
                   help="blind (LQ at GT size), sr4 (LQ at size/4) or both (default)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--size", type=int, default=512, help="GT side (default 512)")
    p.add_argument("--num", type=int, default=0, help="use only the first N images (sorted; 0: all)")
    p.add_argument("--color", action="store_true", help="add the recipe's colour jitter and gray")
    add_common_arguments(p, quiet=True, resumable=True)
    return p


def image_params(seed: int, stem: str, options: Dict) -> Dict:
    """The recorded degradation parameters of one image (deterministic in seed and name)."""
    rng = np.random.default_rng([seed, zlib.crc32(stem.encode())])
    return deg.sample_degradation(rng, **options)


def degrade_pair(gt: np.ndarray, params: Dict, factor: int) -> np.ndarray:
    """LQ uint8 (size/factor square) of an RGB uint8 GT under ``params``."""
    size = gt.shape[0]
    lq = deg.apply_degradation(gt.astype(np.float32) / 255.0, params, out_hw=(size // factor, size // factor))
    return np.round(lq * 255.0).astype(np.uint8)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def start_build(src: Path, out: Path, overwrite: bool, resume: bool) -> Path:
    """Check the HQ folder and the destination; return the build folder ``OUT.partial``."""
    if not src.is_dir():
        raise UserError(f"{src} is not a folder; give the folder of HQ faces.")
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists; remove it or pass --overwrite.")
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists() and not resume:
        shutil.rmtree(tmp)
    return tmp


def read_hq(path: Path, size: int, bad: list) -> Optional[np.ndarray]:
    """The face at ``path`` as RGB uint8 ``size`` x ``size``, or None (named in ``bad``) if unreadable."""
    from gfpgan.images import read_image

    try:
        img = read_image(path)
    except UserError as exc:
        bad.append(path.name)
        tqdm.write(f"skipping {exc}", file=sys.stderr)
        return None
    if img.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    return img


def publish(tmp: Path, out: Path) -> None:
    """Replace ``out`` with the finished build folder."""
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def make_testset(src, out, settings=("blind", "sr4"), seed: int = 0, size: int = 512, num: int = 0,
                 color: bool = False, overwrite: bool = False, resume: bool = True,
                 progress: bool = True) -> Dict:
    """Build the test set; returns {'images': n, 'resumed': n, 'bad': [names]}."""
    from gfpgan.images import list_images, write_image_atomic

    src, out = Path(src), Path(out)
    tmp = start_build(src, out, overwrite, resume)
    files = list_images(src)[: num or None]
    if not files:
        raise UserError(f"{src} contains no images; check the path.")
    options = dict(RECIPE, **(COLOR if color else {}))
    counts = {"images": 0, "resumed": 0, "bad": []}
    records = {s: [] for s in settings}
    for f in tqdm(files, desc="testset", unit="img", disable=not progress):
        targets = {s: (tmp / s / "gt" / f"{f.stem}.png", tmp / s / "lq" / f"{f.stem}.png") for s in settings}
        params = image_params(seed, f.stem, options)
        if all(g.exists() and q.exists() for g, q in targets.values()):
            counts["resumed"] += 1
        else:
            gt = read_hq(f, size, counts["bad"])
            if gt is None:
                continue
            for s, (g, q) in targets.items():
                write_image_atomic(g, gt)
                write_image_atomic(q, degrade_pair(gt, params, SETTINGS[s]))
            counts["images"] += 1
        for s, (g, q) in targets.items():
            records[s].append({"name": f"{f.stem}.png", "source": f.name, "params": params,
                               "gt_sha256": _sha(g), "lq_sha256": _sha(q)})
    if not any(records.values()) or not records[settings[0]]:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"no image in {src} is readable; nothing written.")
    for s in settings:
        manifest = {"protocol": "CelebA-Test (GFP-GAN paper): training degradation applied to HQ faces",
                    "setting": s, "scale": SETTINGS[s], "gt_size": size, "lq_size": size // SETTINGS[s],
                    "seed": seed, "seeding": "np.random.default_rng([seed, zlib.crc32(stem)])",
                    "degradation": options, "images": records[s]}
        (tmp / s / "manifest.json").write_text(json.dumps(manifest, indent=1))
    publish(tmp, out)
    return counts


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    settings = ("blind", "sr4") if args.setting == "both" else (args.setting,)
    c = make_testset(args.input, args.output, settings, args.seed, args.size, args.num, args.color,
                     args.overwrite, not args.restart, not args.quiet)
    print(f"{args.output}: {c['images'] + c['resumed']} pairs per setting ({', '.join(settings)}; "
          f"{c['resumed']} resumed), {len(c['bad'])} unreadable skipped"
          f"{': ' + ', '.join(c['bad'][:10]) if c['bad'] else ''}")
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
