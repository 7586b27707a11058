"""Benchmark the FFHQ degradation dataset at 512 against the reference FFHQDegradationDataset.

Usage::

    python -m gfpgan.tools.bench_dataset                 # 40 samples each, one worker (1 thread)
    python -m gfpgan.tools.bench_dataset --samples 100 --step-time 0.25 --batch 3

Both datasets read the same generated 512x512 PNG faces (the scikit-image astronaut, shifted)
with the official 512 recipe (train_gfpgan_v1.yml: blur 41 iso/aniso sigma [0.1, 10], downsample
[0.8, 8], noise [0, 20], JPEG [60, 100], colour jitter 0.3 / 20, pt jitter 0.3, gray 0.01,
hflip, component boxes with eye_enlarge_ratio 1.4), one process with one thread (what one
DataLoader worker gets). The reference runs in a subprocess with
``PYTHONPATH=.cache/oracle`` (skipped, with a note, when it is not installed there), with one
patch: BasicSR passes a float JPEG quality that current OpenCV rejects, so it is cast to int
(what older OpenCV did). Prints
samples/s of each, the ratio, and how many workers keep a training step of ``--step-time`` s at
``--batch`` fed. ``--device`` is recorded only: dataset work runs on the CPU.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from gfpgan.cli import add_common_arguments
from gfpgan.errors import command

ORACLE = Path(__file__).resolve().parents[2] / ".cache" / "oracle"
RECIPE = dict(out_size=512, use_hflip=True, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5], blur_kernel_size=41,
              kernel_list=["iso", "aniso"], kernel_prob=[0.5, 0.5], blur_sigma=[0.1, 10],
              downsample_range=[0.8, 8], noise_range=[0, 20], jpeg_range=[60, 100], color_jitter_prob=0.3,
              color_jitter_shift=20, color_jitter_pt_prob=0.3, gray_prob=0.01, gt_gray=True,
              crop_components=True, eye_enlarge_ratio=1.4)

_REF_SCRIPT = r"""
import json, sys, time
import cv2, torch
cv2.setNumThreads(1); torch.set_num_threads(1)
from basicsr.data import degradations as D
_jpeg = D.add_jpg_compression
# current OpenCV rejects the float quality BasicSR passes; older OpenCV truncated it to int
D.add_jpg_compression = lambda img, quality=90: _jpeg(img, int(quality))
from gfpgan.data.ffhq_degradation_dataset import FFHQDegradationDataset
opt = json.load(open(sys.argv[1]))
ds = FFHQDegradationDataset(opt)
n = int(sys.argv[2])
for i in range(3):
    ds[i % len(ds)]
t = time.perf_counter()
for i in range(n):
    ds[i % len(ds)]
print(json.dumps({"samples_per_s": n / (time.perf_counter() - t)}))
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gfpgan.tools.bench_dataset",
                                description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=40, help="timed samples per dataset (default 40)")
    p.add_argument("--images", type=int, default=8, help="distinct images in the generated folder")
    p.add_argument("--step-time", type=float, default=0.25, help="seconds per training iteration to feed")
    p.add_argument("--batch", type=int, default=3, help="batch size per GPU")
    p.add_argument("--no-reference", action="store_true", help="do not run the reference")
    add_common_arguments(p, device=True)
    return p


def make_data(root: Path, n: int):
    """n shifted copies of the astronaut at 512 (PNG) and a box file for them."""
    import cv2
    import skimage.data

    from gfpgan.data.components import save_components

    root.mkdir(parents=True, exist_ok=True)
    base = skimage.data.astronaut()
    boxes = {}
    for i in range(n):
        img = np.roll(base, (i * 7, i * 11), axis=(0, 1))
        cv2.imwrite(str(root / f"{i:05d}.png"), img[:, :, ::-1])
        boxes[f"{i:08d}"] = {"left_eye": [190.0, 240.0, 24.0], "right_eye": [320.0, 240.0, 24.0],
                             "mouth": [256.0, 370.0, 56.0]}
    save_components(root.parent / "boxes.pth", boxes)
    return root, root.parent / "boxes.pth"


def bench_ours(folder, boxes, n: int) -> float:
    import cv2
    import torch

    from gfpgan.data import FFHQDegradationDataset

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    ds = FFHQDegradationDataset(dataroot_gt=str(folder), io_backend={"type": "disk"},
                                component_path=str(boxes), rank=0, **RECIPE)
    for i in range(3):
        ds[i % len(ds)]
    t = time.perf_counter()
    for i in range(n):
        ds[i]  # indices past len(ds) wrap to an image but keep their own seed: n distinct samples
    return n / (time.perf_counter() - t)


def bench_reference(folder, boxes, n: int, tmp: Path) -> Optional[float]:
    if not (ORACLE / "gfpgan").is_dir():
        return None
    opt = dict(RECIPE, dataroot_gt=str(folder), io_backend={"type": "disk"}, component_path=str(boxes))
    (tmp / "opt.json").write_text(json.dumps(opt))
    path = os.pathsep.join(filter(None, [str(ORACLE), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", _REF_SCRIPT, str(tmp / "opt.json"), str(n)], env=env,
                         capture_output=True, text=True, cwd=str(tmp))
    if res.returncode != 0:
        print(f"reference failed:\n{res.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])["samples_per_s"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        folder, boxes = make_data(tmp / "ffhq_512", args.images)
        ours = bench_ours(folder, boxes, args.samples)
        ref = None if args.no_reference else bench_reference(folder, boxes, args.samples, tmp)
    need = args.batch / args.step_time
    print(f"FFHQDegradationDataset @512, official recipe, 1 process x 1 thread, {args.samples} samples "
          f"(device={args.device}, dataset work on CPU)")
    print(f"  ours       {ours:7.2f} samples/s  ({1000 / ours:6.1f} ms/sample)")
    if ref is not None:
        print(f"  reference  {ref:7.2f} samples/s  ({1000 / ref:6.1f} ms/sample)")
        verdict = "(target met: not slower)" if ours >= ref * 0.97 else "(SLOWER)"
        print(f"  ratio ours/reference: {ours / ref:.2f}x {verdict}")
    else:
        print("  reference  not run (missing .cache/oracle or --no-reference)")
    print(f"  feeding batch {args.batch} every {args.step_time} s needs {need:.1f} samples/s: "
          f"{math.ceil(need / ours)} workers of ours" +
          (f", {math.ceil(need / ref)} of the reference" if ref else ""))
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
