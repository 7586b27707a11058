"""Benchmark ``GFPGANer.enhance`` on aligned faces: this package's beside the reference gfpgan==1.3.8.

Both restorers are built the way their clients build them (``GFPGANer(model_path, upscale=2,
arch='clean', channel_multiplier=2)``; ours once per ``--precisions`` entry, the default ``auto``
and ``fp32``, the reference's computation) from the same file: random GFPGANv1Clean weights at the
released size, saved in the official layout (``{"params_ema": ...}``). Each then restores the same
aligned faces (``enhance(face, has_aligned=True)``, one face per call, as the clients call it) and
the time per face is printed side by side with the ratio. The reference runs in a subprocess (its
package is also called ``gfpgan``) from ``.cache/oracle``; facexlib's detector and parser, which it
would download at construction, are replaced by stubs there (aligned faces use neither).

The restored faces are compared too: by default the reference's network is called with
``randomize_noise=False`` (the stored noise buffers, which this package always uses), so the
difference is the two implementations'; ``--reference-noise fresh`` keeps the reference's own
fresh noise per call (what its callers get). ``tests/test_compat_gfpganer_oracle.py`` asserts it.

Usage:
    python -m gfpgan.tools.bench_compat                 # CPU, 3 faces, 1 warm-up call each
    python -m gfpgan.tools.bench_compat --device cuda --faces 8 --json results/compat.json
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command
from gfpgan.precision import PRECISIONS

DEFAULT_ORACLE = Path(__file__).resolve().parents[2] / ".cache" / "oracle"

REFERENCE_SNIPPET = r"""
import json, time, numpy as np, torch
import facexlib.utils.face_restoration_helper as helper
helper.init_detection_model = lambda *a, **k: None  # aligned faces need no detector: no download
helper.init_parsing_model = lambda *a, **k: None
from gfpgan import GFPGANer
cfg = json.load(open("cfg.json"))
torch.set_num_threads(cfg["threads"])
faces = np.load("faces.npy")
r = GFPGANer(model_path="GFPGANv1.4.pth", upscale=2, arch="clean", channel_multiplier=2, device=cfg["device"])
if cfg["noise"] == "fixed":  # the stored noise buffers, as the network parity tests call it
    forward = r.gfpgan.forward
    r.gfpgan.forward = lambda x, **kw: forward(x, **dict(kw, randomize_noise=False))
for _ in range(cfg["warmup"]):
    r.enhance(faces[0], has_aligned=True)
sync = torch.cuda.synchronize if cfg["device"].startswith("cuda") else (lambda: None)
sync(); t = time.perf_counter()
out = [r.enhance(f, has_aligned=True)[1][0] for f in faces]
sync()
json.dump({"sec": time.perf_counter() - t}, open("res.json", "w"))
np.save("out.npy", np.stack(out))
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gfpgan.tools.bench_compat",
                                description=__doc__.split("\n")[0])
    p.add_argument("--faces", type=int, default=3, help="timed faces (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--reference-dir", default=str(DEFAULT_ORACLE), help="where gfpgan==1.3.8 is unpacked")
    p.add_argument("--no-reference", action="store_true", help="time ours only")
    p.add_argument("--reference-noise", choices=("fixed", "fresh"), default="fixed",
                   help="the reference's StyleGAN2 noise: the stored buffers (default; the difference is "
                        "the implementations') or fresh per call (what its callers get)")
    p.add_argument("--precisions", default="fp32,auto",
                   help="ours, one run each (comma list of auto|fp32|bf16|fp16; default fp32,auto: the "
                        "reference's computation and the default); the reference is compared with the first")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    add_common_arguments(p, device=True)
    return p


def make_weights(path: Path) -> None:
    """Random GFPGANv1Clean weights at the released size (v1.3/v1.4), in the official layout."""
    from gfpgan.compat.gfpganer import build_reference_net

    torch.manual_seed(0)
    net = build_reference_net("clean", 2)
    with torch.no_grad():  # a non-zero noise strength, as in trained weights, so noise is exercised
        for p in net.stylegan_decoder.parameters():
            if p.numel() == 1:
                p.fill_(0.1)
    torch.save({"params_ema": net.state_dict()}, path)


def make_faces(n: int) -> np.ndarray:
    """``n`` 512x512 BGR face images (the astronaut photo's face, shifted and mirrored)."""
    import cv2
    import skimage.data

    img = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    out = []
    for i in range(n):
        crop = img[20 + 4 * i:340 + 4 * i, 110:430]
        out.append(cv2.resize(crop[:, ::-1] if i % 2 else crop, (512, 512), interpolation=cv2.INTER_CUBIC))
    return np.stack(out)


def time_ours(weights: Path, faces: np.ndarray, device: str, warmup: int, precision: str = "auto"):
    """Ours on ``faces``: (seconds, outputs, the precision the restorer ran in)."""
    from gfpgan.compat.gfpganer import GFPGANer
    from gfpgan.inference.faces.model import bf16_faithful
    from gfpgan.precision import choose_precision

    r = GFPGANer(model_path=str(weights), upscale=2, arch="clean", channel_multiplier=2, device=device,
                 precision=precision)
    runs_as = choose_precision(precision, r.device, bf16_faithful=bf16_faithful(r.gfpgan)).name
    for _ in range(warmup):
        r.enhance(faces[0], has_aligned=True)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t = time.perf_counter()
    out = [r.enhance(f, has_aligned=True)[1][0] for f in faces]
    sync()
    return time.perf_counter() - t, np.stack(out), runs_as


def time_reference(oracle: Path, weights: Path, faces: np.ndarray, device: str, warmup: int,
                   noise: str = "fixed"):
    """Run the reference's GFPGANer in a subprocess; (seconds, outputs) or None when unavailable."""
    if not (oracle / "gfpgan" / "utils.py").is_file():
        print(f"reference: not found at {oracle} (pip install --no-deps --target {oracle} gfpgan==1.3.8); "
              f"skipped")
        return None
    with tempfile.TemporaryDirectory(prefix="bench_compat_") as tmp:
        os.symlink(weights, os.path.join(tmp, "GFPGANv1.4.pth"))
        np.save(os.path.join(tmp, "faces.npy"), faces)
        with open(os.path.join(tmp, "cfg.json"), "w") as f:
            json.dump({"device": device, "warmup": warmup, "threads": torch.get_num_threads(),
                       "noise": noise}, f)
        path = os.pathsep.join(filter(None, [str(oracle), os.environ.get("PYTHONPATH")]))
        proc = subprocess.run([sys.executable, "-c", REFERENCE_SNIPPET], cwd=tmp, capture_output=True,
                              text=True, env=dict(os.environ, PYTHONPATH=path, PYTHONWARNINGS="ignore"))
        if proc.returncode != 0:
            print(f"reference: failed ({(proc.stderr.strip().splitlines() or ['no output'])[-1]})")
            return None
        with open(os.path.join(tmp, "res.json")) as f:
            return json.load(f)["sec"], np.load(os.path.join(tmp, "out.npy"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.faces < 1 or args.warmup < 0:
        raise UserError("--faces must be at least 1 and --warmup at least 0.")
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    bad = [p for p in args.precisions if p not in PRECISIONS]
    if bad or not args.precisions:
        raise UserError(f"--precisions {','.join(bad)!r}: use a comma list of {', '.join(PRECISIONS)}.")
    if args.threads:
        torch.set_num_threads(args.threads)
    faces = make_faces(args.faces)
    rows: List[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_compat_w_") as tmp:
        weights = Path(tmp) / "GFPGANv1.4.pth"
        make_weights(weights)
        outs = {}
        for precision in args.precisions:
            sec, outs[precision], runs_as = time_ours(weights, faces, args.device, args.warmup, precision)
            diff = np.abs(outs[precision].astype(np.int16) - outs[args.precisions[0]].astype(np.int16))
            rows.append({"impl": "ours", "precision": precision, "runs_as": runs_as,
                         "s_per_face": sec / args.faces,
                         # how much the network changed the faces (a difference of 0 must mean something)
                         "mean_abs_change": float(np.abs(outs[precision].astype(np.float32) - faces).mean()),
                         f"max_abs_diff_vs_{args.precisions[0]}": int(diff.max()),
                         f"mean_abs_diff_vs_{args.precisions[0]}": float(diff.mean())})
        ours = outs[args.precisions[0]]
        ref = None if args.no_reference else time_reference(Path(args.reference_dir), weights, faces,
                                                            args.device, args.warmup, args.reference_noise)
        if ref is not None:
            diff = np.abs(ref[1].astype(np.int16) - ours.astype(np.int16))
            rows.append({"impl": "reference", "precision": "fp32", "runs_as": "fp32",
                         "s_per_face": ref[0] / args.faces,
                         "noise": args.reference_noise, "max_abs_diff_vs_ours": int(diff.max()),
                         "mean_abs_diff_vs_ours": float(diff.mean()),
                         "fraction_differing": float((diff > 0).mean())})
    base = rows[-1]["s_per_face"]
    print(f"\nGFPGANer.enhance(face, has_aligned=True), GFPGANv1Clean 512 cm2, device={args.device}, "
          f"threads={torch.get_num_threads()}, {args.faces} faces")
    first = args.precisions[0]
    print(f"{'impl':<11}{'precision':<17}{'s/face':>9}{'faces/s':>9}{'speed vs ref':>14}"
          f"{f'max|diff| vs {first}':>20}")
    for r in rows:
        r["speed_vs_reference"] = base / r["s_per_face"] if ref is not None else None
        speed = "-" if r["speed_vs_reference"] is None else f"{r['speed_vs_reference']:.2f}x"
        label = r["precision"] + (f" ({r['runs_as']})" if r["runs_as"] != r["precision"] else "")
        diff = r.get(f"max_abs_diff_vs_{first}", r.get("max_abs_diff_vs_ours"))
        print(f"{r['impl']:<11}{label:<17}{r['s_per_face']:>9.3f}{1 / r['s_per_face']:>9.3f}{speed:>14}"
              f"{diff:>16} levels")
    if ref is not None:
        r = rows[-1]
        print(f"restored faces, reference ({r['noise']} noise) vs ours in {first}: max |diff| "
              f"{r['max_abs_diff_vs_ours']} levels, mean {r['mean_abs_diff_vs_ours']:.4f}, "
              f"{100 * r['fraction_differing']:.3f}% of values differ (the network changed the faces "
              f"by {rows[0]['mean_abs_change']:.1f} levels on average)")
    if args.json:
        from gfpgan.images import write_bytes_atomic

        write_bytes_atomic(args.json, json.dumps({"device": args.device, "threads": torch.get_num_threads(),
                                                  "faces": args.faces, "rows": rows}, indent=1).encode())
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
