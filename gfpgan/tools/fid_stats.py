"""Compute FID reference statistics (Inception pool features' mean and covariance) of a folder.

    python -m gfpgan.tools.fid_stats --input datasets/ffhq/ffhq_512 \\
        --out experiments/pretrained_models/fid_stats_ffhq_512.npz [--inception PATH] [--num 0]

The result is an ``.npz`` with ``mu`` (2048,), ``sigma`` (2048, 2048) and ``num`` (images used),
the format ``metrics.fid.stats_path`` of ``gfpgan.test`` reads. Images are read as RGB and fed at
their own size (the FID network resizes to 299x299). Written atomically.
"""

import argparse
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command
from gfpgan.files import atomic_path

IMG_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def folder_stats(folder, inception_path: Optional[str] = None, device: str = "cpu", batch_size: int = 16,
                 num: int = 0, progress: bool = True):
    """Mean (2048,), covariance (2048, 2048) and count of the FID features of a folder's images."""
    from tqdm import tqdm

    from gfpgan.images import read_image
    from gfpgan.metrics.fid import FIDMetric, feature_stats

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMG_EXT)
    if num:
        files = files[:num]
    if len(files) < 2:
        raise UserError(f"{folder} holds {len(files)} image(s); FID statistics need at least 2")
    metric = FIDMetric(inception_path=inception_path, device=device, batch_size=batch_size)
    feats = []
    for i in tqdm(range(0, len(files), batch_size), disable=not progress, unit="batch"):
        feats.append(metric.features([read_image(p) for p in files[i:i + batch_size]]))
    mu, sigma = feature_stats(np.concatenate(feats))
    return mu, sigma, len(files)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gfpgan.tools.fid_stats", description=__doc__.split("\n")[0])
    p.add_argument("--input", required=True, help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--inception", default=None,
                   help="pt_inception-2015-12-05-6726825d.pth (default: torch cache)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num", type=int, default=0, help="use the first N images only (0: all)")
    add_common_arguments(p, device=True, quiet=True)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not Path(args.input).is_dir():
        raise UserError(f"input folder {args.input} does not exist; pass a folder of images")
    mu, sigma, n = folder_stats(args.input, args.inception, args.device, args.batch_size, args.num,
                                progress=not args.quiet)
    with atomic_path(args.out) as tmp:
        np.savez(tmp, mu=mu, sigma=sigma, num=n)
    print(f"FID statistics of {n} images -> {args.out}")
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
