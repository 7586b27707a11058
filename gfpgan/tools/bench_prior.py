"""Does the generative facial prior pay? GFP-GAN with a StyleGAN2 prior made here vs without one.

    python -m gfpgan.tools.bench_prior                     # ~30 min on 2 busy CPU cores
    python -m gfpgan.tools.bench_prior --prior-iters 1000 --iters 1000 --procs 2

Everything is made offline, each step a command of the project run as a user would:

1. the demo's face set (``gfpgan.demo.build_face_set``: 80 LFW faces of scikit-image and 120
   aligned astronaut crops, 64 px) and its held-out faces (LFW 80-99, never trained on);
2. the tiny StyleGAN2 prior (``options/train_stylegan2_tiny.yml``) for ``--prior-iters``
   iterations, which writes ``models/stylegan2_prior.pth``;
3. the tiny GFP-GAN recipe (``options/train_gfpgan_tiny.yml``) twice for ``--iters`` iterations
   each, same seed and data: as it is (no prior, the decoder trains from scratch), and with
   ``network_g.decoder_load_path`` = that prior and ``fix_decoder: true`` (the paper's setting);
4. both EMA generators restore the held-out faces degraded by the recipe's own degradation
   model (``--draws`` seeded degradations per face); PSNR and SSIM against the clean faces, and
   the paired difference (with prior minus without) with its standard error over the pairs.

The prior's own training time is reported beside the GFP-GAN runs: "same budget" means the same
GFP-GAN iterations; the prior is paid for once, on top.
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


def run(out: Path, prior_iters: int = 400, iters: int = 300, draws: int = 5, device: str = "cpu",
        procs: int = 1, size: int = 64, data_dir: Optional[Path] = None) -> Dict:
    """Build the faces, train the prior and both GFP-GANs, score them on the held-out faces."""
    from gfpgan.demo import build_face_set

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

    times = {"prior": _train(["name=prior", f"train.total_iter={prior_iters}", *common, *logged(prior_iters)],
                             PRIOR_RECIPE, device, procs)}
    prior = runs / "prior" / "models" / "stylegan2_prior.pth"
    gfpgan = [f"train.total_iter={iters}", f"train.scheduler.milestones=[{int(iters * 0.75)}]",
              f"train.remove_pyramid_loss={iters // 2}", *common, *logged(iters)]
    variants = {"no prior": [], "prior, decoder frozen": [f"network_g.decoder_load_path={prior}",
                                                          "network_g.fix_decoder=true"]}
    names = {"no prior": "gfpgan_no_prior", "prior, decoder frozen": "gfpgan_prior"}
    for tag, extra in variants.items():
        times[tag] = _train([f"name={names[tag]}", *gfpgan, *extra], GFPGAN_RECIPE, device, procs)

    lq, gt = heldout_pairs(heldout, draws)
    scores = {"degraded input": score(lq, gt)}
    for tag in variants:
        weights = runs / names[tag] / "models" / f"net_g_ema_{iters}.safetensors"
        scores[tag] = score(_restore(weights, lq), gt)
    rows = {tag: {k: float(np.mean(v)) for k, v in s.items()} for tag, s in scores.items()}
    diff = {}
    for k in ("psnr", "ssim"):
        d = np.asarray(scores["prior, decoder frozen"][k]) - np.asarray(scores["no prior"][k])
        diff[k] = {"mean": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(len(d))),
                   "better_pairs": int((d > 0).sum())}
    return {"pairs": len(lq), "heldout_faces": len(lq) // draws, "draws": draws, "prior_iters": prior_iters,
            "iters": iters, "procs": procs, "device": device,
            "train_s": {k: round(v, 1) for k, v in times.items()}, "rows": rows, "diff": diff,
            "prior_better": bool(diff["psnr"]["mean"] > 2 * diff["psnr"]["se"])}


def table(res: Dict) -> str:
    t = res["train_s"]
    lines = ["| GFP-GAN | training | held-out PSNR (dB) | held-out SSIM |", "|---|---|---|---|"]
    cost = {"degraded input": "", "no prior": f"{res['iters']} it, {t['no prior']:.0f} s",
            "prior, decoder frozen": f"{res['iters']} it, {t['prior, decoder frozen']:.0f} s "
                                     f"+ prior {res['prior_iters']} it, {t['prior']:.0f} s"}
    for tag, r in res["rows"].items():
        lines.append(f"| {tag} | {cost[tag]} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    d = res["diff"]
    lines.append(f"| prior - no prior (paired, {res['pairs']} pairs) | | {d['psnr']['mean']:+.2f} "
                 f"± {d['psnr']['se']:.2f} | {d['ssim']['mean']:+.4f} ± {d['ssim']['se']:.4f} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gfpgan.tools.bench_prior", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="results/bench_prior", help="work folder (runs, faces, results)")
    p.add_argument("--prior-iters", type=int, default=400, help="iterations of the StyleGAN2 prior")
    p.add_argument("--iters", type=int, default=300, help="iterations of each GFP-GAN run")
    p.add_argument("--draws", type=int, default=5, help="seeded degradations per held-out face")
    p.add_argument("--procs", type=int, default=1, help="training processes (torchrun) on a CPU; 1 on a GPU")
    p.add_argument("--data-dir", default=None, help="face set folder (default: <out>/faces)")
    p.add_argument("--json", default=None, help="also write the results here")
    add_common_arguments(p, device=True)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    a = build_parser().parse_args(argv)
    if min(a.prior_iters, a.iters, a.draws, a.procs) < 1:
        raise UserError("--prior-iters, --iters, --draws and --procs must be at least 1.")
    import torch

    cuda = a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available())
    res = run(Path(a.out), a.prior_iters, a.iters, a.draws, a.device, 1 if cuda else a.procs,
              data_dir=Path(a.data_dir) if a.data_dir else None)
    print(table(res))
    print("the prior measured " + ("better" if res["prior_better"] else "not better") +
          " (PSNR gain above twice its standard error)")
    if a.json:
        from gfpgan.files import write_text_atomic

        write_text_atomic(a.json, json.dumps(res, indent=1))
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
