"""Synthetic video test set: the CelebA-Test protocol extended to clips, with a manifest.

Usage::

    python -m gfpgan.tools.make_video_testset datasets/celeba_hq_3000 datasets/video_test \\
        --start 2000 --num 100 --frames 12 --seed 0

Protocol (written to ``manifest.json``):

* Faces: a range of the sorted HQ folder (``--start``, ``--num``) or the names in ``--list``, so
  that the test faces are disjoint from the training faces (train on the others).
* GT clip per face: the face resized to ``--size`` moves along a smooth random similarity
  trajectory (rotation <= 5 degrees, |log zoom| <= 0.05, shift <= 4% of the side) with a small
  smooth non-rigid motion (1% of the side), as :class:`gfpgan.data.FFHQClipDataset` makes them.
* LQ clip: the CelebA-Test degradation ranges of :mod:`gfpgan.tools.make_testset` drawn once per
  clip, drifting per frame by a bounded random walk (blur sigma 0.1, resize 0.015, noise 0.5,
  JPEG 3), independent noise per frame, then a libx264 pass at CRF ``--crf`` (a range, default
  18-25, KEEP's protocol) with probability ``--codec-prob`` (default 1).
* Seeding: ``np.random.default_rng([seed, zlib.crc32(stem)])`` per clip: a clip does not depend
  on the other faces or the order.

Layout: ``OUT/gt/<stem>/00000.png ...``, ``OUT/lq/<stem>/00000.png ...`` (track folders that
:class:`gfpgan.data.FaceTrackClipDataset` reads) and ``OUT/manifest.json`` (options, then per clip
its source, per-frame parameters, the still -> frame affines, the relative transforms between
consecutive frames (crop t-1 -> crop t, pixels) for E_warp with exact flow, the CRF, and the
sha256 of every frame). Built in ``OUT.partial`` and renamed at the end; an interrupted run
resumes (outputs are deterministic).
"""

import argparse
import json
import shutil
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from tqdm import tqdm

from gfpgan.cli import add_common_arguments
from gfpgan.data.clip_degradations import synthetic_clip
from gfpgan.errors import UserError, command
from gfpgan.model_cards import sha256_file
from gfpgan.tools.make_testset import COLOR, RECIPE, publish, read_hq, start_build

MOTION = dict(max_angle=5.0, max_zoom=0.05, max_shift=0.04, max_speed=0.25)


def add_clip_arguments(p: argparse.ArgumentParser, size: int, when: str = "") -> None:
    """The options that pick the faces and make the clips (shared with ``bench_temporal``).

    Args:
        size: the default GT side.
        when: a condition to put before each help text (e.g. "with --faces: ").
    """
    p.add_argument("--start", type=int, default=0, help=f"{when}first face (sorted order) to use")
    p.add_argument("--num", type=int, default=0, help=f"{when}number of faces from --start (0: all the rest)")
    p.add_argument("--frames", type=int, default=12, help=f"{when}frames per clip")
    p.add_argument("--size", type=int, default=size,
                   help=f"{when}GT side" + (" (0: the model's size)" if size == 0 else ""))
    p.add_argument("--seed", type=int, default=0, help=f"{when}base seed")
    p.add_argument("--crf", type=int, nargs=2, default=(18, 25), metavar=("LO", "HI"),
                   help=f"{when}libx264 CRF range, inclusive")
    p.add_argument("--codec-prob", type=float, default=1.0, help=f"{when}probability of the codec pass")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gfpgan.tools.make_video_testset",
                                description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("input", help="folder of aligned HQ faces")
    p.add_argument("output", help="output folder (gt/, lq/, manifest.json)")
    add_clip_arguments(p, size=512)
    p.add_argument("--list", default=None, help="text file of face file names to use instead (one a line)")
    p.add_argument("--nonrigid", type=float, default=0.01, help="non-rigid motion, fraction of the side")
    p.add_argument("--color", action="store_true", help="add the recipe's colour jitter and gray")
    add_common_arguments(p, quiet=True, resumable=True)
    return p


def select_faces(src: Path, start: int = 0, num: int = 0,
                 names: Optional[Sequence[str]] = None) -> List[Path]:
    """The test faces: ``names`` from ``src`` when given, else ``num`` faces from ``start`` (sorted)."""
    from gfpgan.images import list_images

    files = list_images(src)
    if names is not None:
        by_name = {f.name: f for f in files}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise UserError(f"{len(missing)} listed faces are not in {src} (first: {missing[0]}); "
                            f"fix the list.")
        return [by_name[n] for n in names]
    if start < 0 or start >= len(files):
        raise UserError(f"--start {start} is outside the {len(files)} faces of {src}.")
    return files[start:start + num if num else None]


def clip_of(still: np.ndarray, stem: str, seed: int, frames: int, options: Dict, nonrigid: float,
            codec_prob: float, crf: Sequence[int]) -> Dict:
    """The GT and LQ clip (uint8 frames) and its record, deterministic in (seed, stem)."""
    rng = np.random.default_rng([seed, zlib.crc32(stem.encode())])
    c = synthetic_clip(rng, still.astype(np.float32) / 255.0, frames, MOTION, nonrigid, options, None,
                       codec_prob, crf)
    def u8(frames):
        return [np.round(f * 255.0).astype(np.uint8) for f in frames]

    return {"gt": u8(c["gt"]), "lq": u8(c["lq"]), "params": c["params"], "crf": c["crf"],
            "affines": np.round(c["affine"], 6).tolist(),
            "rel_affines": np.round(c["rel_affine"].astype(np.float64), 6).tolist()}


def make_video_testset(src, out, start: int = 0, num: int = 0, names: Optional[Sequence[str]] = None,
                       frames: int = 12, size: int = 512, seed: int = 0, nonrigid: float = 0.01,
                       crf: Sequence[int] = (18, 25), codec_prob: float = 1.0, color: bool = False,
                       overwrite: bool = False, resume: bool = True, progress: bool = True) -> Dict:
    """Build the video test set; returns {'clips': n, 'resumed': n, 'bad': [names]}."""
    from gfpgan.images import write_image_atomic

    src, out = Path(src), Path(out)
    tmp = start_build(src, out, overwrite, resume)
    if frames < 2:
        raise UserError(f"--frames must be at least 2 for a video test set, got {frames}.")
    files = select_faces(src, start, num, names)
    if not files:
        raise UserError(f"{src} contains no images in the chosen range; check the path and --start/--num.")
    options = dict(RECIPE, **(COLOR if color else {}))
    counts, records = {"clips": 0, "resumed": 0, "bad": []}, []
    for f in tqdm(files, desc="video testset", unit="clip", disable=not progress):
        still = read_hq(f, size, counts["bad"])
        if still is None:
            continue
        c = clip_of(still, f.stem, seed, frames, options, nonrigid, codec_prob, crf)
        paths = {k: [tmp / k / f.stem / f"{t:05d}.png" for t in range(frames)] for k in ("gt", "lq")}
        if all(p.exists() for ps in paths.values() for p in ps):
            counts["resumed"] += 1
        else:
            for k, ps in paths.items():
                for p, img in zip(ps, c[k]):
                    write_image_atomic(p, img)
            counts["clips"] += 1
        records.append({"name": f.stem, "source": f.name, "crf": c["crf"], "params": c["params"],
                        "affines": c["affines"], "rel_affines": c["rel_affines"],
                        **{f"{k}_sha256": [sha256_file(p) for p in ps] for k, ps in paths.items()}})
    if not records:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"no image in {src} is readable; nothing written.")
    manifest = {"protocol": "CelebA-Test degradations on synthetic clips (similarity trajectory + non-rigid "
                            "motion, per-frame drift, libx264)",
                "gt_size": size, "frames": frames, "seed": seed,
                "seeding": "np.random.default_rng([seed, zlib.crc32(stem)])", "faces": {
                    "start": start, "num": num, "list": list(names) if names is not None else None},
                "motion": dict(MOTION, nonrigid=nonrigid), "degradation": options,
                "codec": {"codec": "libx264", "crf": list(crf), "prob": codec_prob},
                "transform_convention": "rel_affines[t] maps crop t-1 pixels to crop t pixels "
                                        "(gfpgan.motion)",
                "clips": records}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    publish(tmp, out)
    return counts


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    names = None
    if args.list:
        try:
            names = [ln.strip() for ln in Path(args.list).read_text().splitlines() if ln.strip()]
        except OSError as exc:
            raise UserError(f"cannot read the face list {args.list} ({exc.strerror or exc}).") from None
    c = make_video_testset(args.input, args.output, args.start, args.num, names, args.frames, args.size,
                           args.seed, args.nonrigid, args.crf, args.codec_prob, args.color, args.overwrite,
                           not args.restart, not args.quiet)
    print(f"{args.output}: {c['clips'] + c['resumed']} clips of {args.frames} frames "
          f"({c['resumed']} resumed), "
          f"{len(c['bad'])} unreadable skipped{': ' + ', '.join(c['bad'][:10]) if c['bad'] else ''}")
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
