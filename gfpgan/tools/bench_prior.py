"""Does the generative facial prior pay? GFP-GAN with a StyleGAN2 prior made here vs without one.

    python -m gfpgan.tools.bench_prior                          # ~20 min on 2 busy CPU cores
    python -m gfpgan.tools.bench_prior --prior-iters 400,2000   # two snapshots of one prior run

Everything is made offline, each step a command of the project run as a user would:

1. the demo's face set (``gfpgan.demo.build_face_set``: 80 LFW faces of scikit-image and 120
   aligned astronaut crops, 64 px) and its held-out faces (LFW 80-99, never trained on);
2. the tiny StyleGAN2 prior (``options/train_stylegan2_tiny.yml``): one run, its released-layout
   file ``models/stylegan2_prior.pth`` kept at each of ``--prior-iters`` (the recipe's lr is
   constant and its resume exact, so the snapshot at k iterations is a k-iteration run);
3. the tiny GFP-GAN recipe (``options/train_gfpgan_tiny.yml``) for ``--iters`` iterations, same
   seed and data: as it is (no prior, the decoder trains from scratch), and with each snapshot as
   ``network_g.decoder_load_path`` and ``fix_decoder: true`` (the paper's setting);
4. every EMA generator restores the held-out faces degraded by the recipe's own degradation
   model (``--draws`` seeded degradations per face); PSNR and SSIM against the clean faces, and
   the paired difference to no prior with its standard error over the pairs.

Training times come from each run's ``train.log`` (process start-up excluded). "Same budget"
means the same GFP-GAN iterations; the prior is paid for once, on top. Runs are resumed or reused
(``--auto-resume``): rerunning the command with more snapshots trains only what is new.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command
from gfpgan.files import write_json_atomic

__all__ = ["heldout_pairs", "score", "run", "table"]

REPO = Path(__file__).resolve().parents[2]
PRIOR_RECIPE = "options/train_stylegan2_tiny.yml"
GFPGAN_RECIPE = "options/train_gfpgan_tiny.yml"


def _train(overrides: Sequence[str], recipe: str, device: str, procs: int) -> float:
    """``python -m gfpgan.train`` (torchrun with ``procs`` processes); returns the wall time."""
    launcher = (["torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", "-m"]
                if procs > 1 else [])
    cmd = [sys.executable, "-m", *launcher, "gfpgan.train", "-opt", recipe, "--device", device,
           "--force-yml", *overrides, "--auto-resume"]
    print("$ python -m " + " ".join(cmd[2:]), flush=True)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    t = time.time()
    if subprocess.run(cmd, cwd=REPO, env=env).returncode != 0:
        raise UserError(f"training with {recipe} failed (see its message above).")
    return time.time() - t


def heldout_pairs(folder: Path, draws: int, seed: int = 1234):
    """(LQ, GT) tensors (N * draws, 3, S, S) in [-1, 1]: each held-out face degraded ``draws``
    times by the tiny GFP-GAN recipe's own degradation model (seeded, no flip)."""
    import torch
    import yaml

    from gfpgan.data import FFHQDegradationDataset
    from gfpgan.options import LOADER_KEYS

    block = yaml.safe_load((REPO / GFPGAN_RECIPE).read_text())["datasets"]["train"]
    kwargs = {k: v for k, v in block.items() if k not in (*LOADER_KEYS, "type", "dataroot_gt")}
    data = FFHQDegradationDataset(str(folder), **dict(kwargs, use_hflip=False), seed=seed, rank=0)
    lq, gt = [], []
    for epoch in range(draws):
        data.set_epoch(epoch)
        for i in range(len(data)):
            item = data[i]
            lq.append(item["lq"])
            gt.append(item["gt"])
    return torch.stack(lq), torch.stack(gt)


def score(images, gt) -> Dict[str, List[float]]:
    """Per-pair PSNR and SSIM of (N, 3, S, S) images against ``gt``, both in [-1, 1]."""
    from gfpgan.images import tensor_to_img
    from gfpgan.metrics.psnr_ssim import calculate_psnr, calculate_ssim

    a, b = tensor_to_img(images), tensor_to_img(gt)
    return {"psnr": [calculate_psnr(x, y) for x, y in zip(a, b)],
            "ssim": [calculate_ssim(x, y) for x, y in zip(a, b)]}


def _restore(weights: Path, lq):
    import torch

    from gfpgan.networks import load_network

    net = load_network(str(weights))[0].eval()
    with torch.no_grad():
        return torch.cat([net(lq[i:i + 50], return_rgb=False)[0] for i in range(0, len(lq), 50)])


def _train_seconds(run_dir: Path) -> float:
    """Training time in ``train.log``: each start or resume to the last line of its segment
    (process start-up excluded; a finished run that is reused adds nothing)."""
    import datetime

    total, start, last = 0.0, None, None
    for line in (run_dir / "train.log").read_text(encoding="utf-8").splitlines():
        try:
            t = datetime.datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S")
        except ValueError:
            continue
        if " starting '" in line or " resuming '" in line:
            if start is not None:
                total += (last - start).total_seconds()
            start = t
        last = t
    if start is not None:
        total += (last - start).total_seconds()
    return total


def _paired(a: Sequence[float], b: Sequence[float]) -> Dict:
    d = np.asarray(a) - np.asarray(b)
    return {"mean": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(len(d))),
            "better_pairs": int((d > 0).sum())}


def run(out: Path, prior_iters: Sequence[int] = (400,), iters: int = 300, draws: int = 5, device: str = "cpu",
        procs: int = 1, size: int = 64, data_dir: Optional[Path] = None) -> Dict:
    """Build the faces, train the prior (a snapshot at each of ``prior_iters``) and the GFP-GANs
    (none, and one per snapshot), score them on the held-out faces."""
    import shutil

    from gfpgan.demo import build_face_set
    from gfpgan.files import atomic_path

    out = out.resolve()
    runs = out / "runs"
    faces = (data_dir or out / "faces").resolve()
    heldout = faces.parent / (faces.name + "_heldout")
    n = build_face_set(faces, size, heldout=heldout)
    print(f"{n} training faces in {faces}, held-out faces in {heldout}", flush=True)
    common = [f"path.experiments_root={runs}", f"datasets.train.dataroot_gt={faces}",
              f"datasets.train.out_size={size}", f"network_g.out_size={size}", f"network_d.out_size={size}",
              f"datasets.train.batch_size_per_gpu={max(1, 8 // procs)}"]

    def logged(total):
        return [f"logger.save_checkpoint_freq={max(1, total // 2)}",
                f"logger.print_freq={max(1, total // 10)}", f"logger.image_freq={total}"]

    # one prior run, extended stage by stage (constant lr, exact resume: stage k of a long run is
    # the run of k iterations), its released-layout file kept at each stage
    priors = {}
    for p in sorted(set(prior_iters)):
        snap = runs / f"stylegan2_prior_{p}it.pth"
        meta = snap.with_suffix(".json")
        if not (snap.exists() and meta.exists()):
            _train(["name=prior", f"train.total_iter={p}", *common, *logged(p)], PRIOR_RECIPE, device, procs)
            with atomic_path(snap) as tmp:
                shutil.copyfile(runs / "prior" / "models" / "stylegan2_prior.pth", tmp)
            meta.write_text(json.dumps({"seconds": _train_seconds(runs / "prior")}))
        priors[p] = (snap, json.loads(meta.read_text())["seconds"])

    gfpgan = [f"train.total_iter={iters}", f"train.scheduler.milestones=[{int(iters * 0.75)}]",
              f"train.remove_pyramid_loss={iters // 2}", *common, *logged(iters)]
    variants = {"no prior": (f"gfpgan_no_prior_{iters}it", [])}
    for p, (snap, _) in priors.items():
        extra = [f"network_g.decoder_load_path={snap}", "network_g.fix_decoder=true"]
        variants[f"prior {p} it, decoder frozen"] = (f"gfpgan_prior{p}it_{iters}it", extra)
    times = {}
    for tag, (name, extra) in variants.items():
        _train([f"name={name}", *gfpgan, *extra], GFPGAN_RECIPE, device, procs)
        times[tag] = _train_seconds(runs / name)

    lq, gt = heldout_pairs(heldout, draws)
    scores = {"degraded input": score(lq, gt)}
    for tag, (name, _) in variants.items():
        scores[tag] = score(_restore(runs / name / "models" / f"net_g_ema_{iters}.safetensors", lq), gt)
    rows = {tag: {k: float(np.mean(v)) for k, v in s.items()} for tag, s in scores.items()}
    for tag in rows:
        if tag in times:
            rows[tag]["train_s"] = round(times[tag])
        if tag.startswith("prior "):
            p = int(tag.split()[1])
            rows[tag]["prior_iters"], rows[tag]["prior_s"] = p, round(priors[p][1])
            rows[tag]["vs_no_prior"] = {k: _paired(scores[tag][k], scores["no prior"][k])
                                        for k in ("psnr", "ssim")}
            d = rows[tag]["vs_no_prior"]["psnr"]
            rows[tag]["better"] = bool(d["mean"] > 2 * d["se"])
    return {"pairs": len(lq), "heldout_faces": len(lq) // draws, "draws": draws, "iters": iters,
            "prior_iters": sorted(priors), "procs": procs, "device": device, "rows": rows,
            "prior_better": any(r.get("better", False) for r in rows.values())}


def table(res: Dict) -> str:
    lines = ["| GFP-GAN | training (train.log) | held-out PSNR (dB) | held-out SSIM | vs no prior: PSNR | "
             "SSIM |", "|---|---|---|---|---|---|"]
    for tag, r in res["rows"].items():
        cost = f"{res['iters']} it, {r['train_s']} s" if "train_s" in r else ""
        if "prior_s" in r:
            cost += f" + prior {r['prior_iters']} it, {r['prior_s']} s"
        vs = ["", ""]
        if "vs_no_prior" in r:
            d = r["vs_no_prior"]
            vs = [f"{d['psnr']['mean']:+.2f} ± {d['psnr']['se']:.2f}",
                  f"{d['ssim']['mean']:+.4f} ± {d['ssim']['se']:.4f}"]
        lines.append(f"| {tag} | {cost} | {r['psnr']:.2f} | {r['ssim']:.4f} | {vs[0]} | {vs[1]} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gfpgan.tools.bench_prior", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="results/bench_prior", help="work folder (runs, faces, results)")
    p.add_argument("--prior-iters", default="400",
                   help="iterations of the StyleGAN2 prior; a comma list compares snapshots of one run")
    p.add_argument("--iters", type=int, default=300, help="iterations of each GFP-GAN run")
    p.add_argument("--draws", type=int, default=5, help="seeded degradations per held-out face")
    p.add_argument("--procs", type=int, default=1, help="training processes (torchrun) on a CPU; 1 on a GPU")
    p.add_argument("--data-dir", default=None, help="face set folder (default: <out>/faces)")
    p.add_argument("--json", default=None, help="also write the results here")
    add_common_arguments(p, device=True)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        prior_iters = [int(v) for v in str(a.prior_iters).split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--prior-iters must be integers separated by commas, got {a.prior_iters!r}."
                        ) from None
    if not prior_iters or min(*prior_iters, a.iters, a.draws, a.procs) < 1:
        raise UserError("--prior-iters, --iters, --draws and --procs must be at least 1.")
    import torch

    cuda = a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available())
    res = run(Path(a.out), prior_iters, a.iters, a.draws, a.device, 1 if cuda else a.procs,
              data_dir=Path(a.data_dir) if a.data_dir else None)
    print(table(res))
    for tag, r in res["rows"].items():
        if "better" in r:
            print(f"{tag}: {'better' if r['better'] else 'not better'} than no prior "
                  f"(better: a held-out PSNR gain above twice its standard error)")
    if a.json:
        write_json_atomic(a.json, res)
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
