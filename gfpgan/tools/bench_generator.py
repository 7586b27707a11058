"""Benchmark the GFPGANv1Clean generator forward pass, ours beside the reference gfpgan==1.3.8.

Times inference (``return_rgb=False``, eval mode, fixed noise) at each size and batch, for each
precision mode, and prints faces/s, the speed ratio against the reference at batch 1 fp32 and the
output difference against our fp32 output (max abs and PSNR on the [0, 1] scale). The reference
runs in a subprocess (its package is also named ``gfpgan``) with the very same random weights.

Usage:
    python -m gfpgan.tools.bench_generator                       # CPU: batch 1 and 4 at 512, fp32
    python -m gfpgan.tools.bench_generator --device cuda         # + bf16/fp16, channels_last, compile
    python -m gfpgan.tools.bench_generator --sizes 256 --batches 1,8 --modes fp32,fp16+cl --json out.json
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
from typing import Dict, List, Optional, Sequence

import torch

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command
from gfpgan.files import write_text_atomic

DEFAULT_ORACLE = Path(__file__).resolve().parents[2] / ".cache" / "oracle"
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

REFERENCE_SNIPPET = r"""
import json, sys, time, torch
from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean
cfg = json.load(open("cfg.json"))
torch.set_num_threads(cfg["threads"])
dev = torch.device(cfg["device"])
net = GFPGANv1Clean(**cfg["kw"])
net.load_state_dict(torch.load("weights.pt", map_location="cpu", weights_only=True), strict=True)
net = net.eval().to(dev)
x = torch.load("x.pt", weights_only=True).to(dev)
res, outs = [], {}
def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()
with torch.inference_mode():
    for b in cfg["batches"]:
        for _ in range(cfg["warmup"]):
            net(x[:b], return_rgb=False, randomize_noise=False)
        sync(); t = time.perf_counter(); c = time.process_time()
        for _ in range(cfg["iters"]):
            out = net(x[:b], return_rgb=False, randomize_noise=False)[0]
        sync()
        res.append({"batch": b, "sec_per_iter": (time.perf_counter() - t) / cfg["iters"],
                    "cpu_per_iter": (time.process_time() - c) / cfg["iters"]})
        outs[str(b)] = out.float().cpu()
json.dump(res, open("res.json", "w"))
torch.save(outs, "outs.pt")
"""


def parse_modes(text: str) -> List[str]:
    """'fp32,fp16+cl+compile' -> validated mode names (dtype, then optional +cl / +compile)."""
    modes = [m.strip() for m in text.split(",") if m.strip()]
    for m in modes:
        parts = m.split("+")
        if parts[0] not in DTYPES or any(p not in ("cl", "compile") for p in parts[1:]):
            raise UserError(f"unknown mode {m!r}: use fp32|bf16|fp16 optionally followed by +cl and/or "
                            f"+compile")
    return modes


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two [-1, 1] images on the [0, 1] scale (inf when identical)."""
    mse = ((a.float() - b.float()) / 2).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def set_memory_format(net: torch.nn.Module, fmt: torch.memory_format) -> None:
    """Put every 4-D weight in ``fmt`` (in place; same as ``net.to(memory_format=fmt)`` for these nets)."""
    for p in net.parameters():
        if p.ndim == 4:
            p.data = p.data.contiguous(memory_format=fmt)


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ours(net, x: torch.Tensor, mode: str, batch: int, warmup: int, iters: int):
    """Wall and process-CPU seconds per forward at ``batch`` in ``mode``; the last output (fp32, CPU)."""
    parts = mode.split("+")
    dtype, device = DTYPES[parts[0]], x.device
    xb = x[:batch]
    fn = net
    if "cl" in parts:
        set_memory_format(net, torch.channels_last)
        xb = xb.contiguous(memory_format=torch.channels_last)
    if "compile" in parts:
        fn = torch.compile(net, dynamic=False)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            return fn(xb, return_rgb=False)[0]

    with torch.inference_mode():
        for _ in range(warmup):
            step()
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(iters):
            out = step()
        _sync(device)
        sec = (time.perf_counter() - t0) / iters
        cpu = (time.process_time() - c0) / iters
    if "cl" in parts:
        set_memory_format(net, torch.contiguous_format)
    return sec, cpu, out.float().cpu()


def run_reference(oracle: Path, kw: dict, state: dict, x: torch.Tensor, batches: Sequence[int], device: str,
                  warmup: int, iters: int):
    """Time the reference in a subprocess on the same weights; returns (results, outputs) or None."""
    if not (oracle / "gfpgan" / "archs" / "gfpganv1_clean_arch.py").is_file():
        print(f"reference: not found at {oracle} "
              f"(pip install --no-deps --target {oracle} gfpgan==1.3.8); skipped")
        return None
    with tempfile.TemporaryDirectory(prefix="bench_ref_") as tmp:
        torch.save(state, os.path.join(tmp, "weights.pt"))
        torch.save(x[:max(batches)].cpu(), os.path.join(tmp, "x.pt"))
        with open(os.path.join(tmp, "cfg.json"), "w") as f:
            json.dump({"kw": kw, "batches": list(batches), "device": device, "warmup": warmup, "iters": iters,
                       "threads": torch.get_num_threads()}, f)
        path = os.pathsep.join(filter(None, [str(oracle), os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, PYTHONPATH=path, PYTHONWARNINGS="ignore")
        proc = subprocess.run([sys.executable, "-c", REFERENCE_SNIPPET], cwd=tmp, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"reference: failed ({(proc.stderr.strip().splitlines() or ['no output'])[-1]})")
            return None
        with open(os.path.join(tmp, "res.json")) as f:
            res = json.load(f)
        return res, torch.load(os.path.join(tmp, "outs.pt"), weights_only=True)


def bench_size(args, size: int, device: torch.device) -> List[Dict]:
    from gfpgan.archs.gfpgan_arch import GFPGANv1Clean

    kw = dict(out_size=size, channel_multiplier=args.channel_multiplier, fix_decoder=False,
              input_is_latent=True, different_w=True, sft_half=True, narrow=args.narrow)
    torch.manual_seed(0)
    net = GFPGANv1Clean(**kw).eval()
    # give the noise injection a non-zero strength, as in trained weights, so it is exercised
    for p in net.stylegan_decoder.parameters():
        if p.numel() == 1:
            p.data.fill_(0.1)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    net.to(device)
    batches = sorted(set(args.batches))
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(max(batches), 3, size, size, generator=gen) * 2 - 1).to(device)
    rows = []
    with torch.inference_mode():
        base = net(x, return_rgb=False)[0].float().cpu()  # fp32 baseline for every comparison
    ref = None
    if not args.no_reference:
        ref = run_reference(Path(args.reference_dir), kw, state, x, args.reference_batches, device.type,
                            args.warmup, args.iters)
        if ref is not None:
            for r in ref[0]:
                out = ref[1][str(r["batch"])]
                rows.append({"impl": "reference", "size": size, "mode": "fp32", "batch": r["batch"],
                             "faces_per_s": r["batch"] / r["sec_per_iter"],
                             "cpu_s_per_face": r["cpu_per_iter"] / r["batch"],
                             "max_abs": (out - base[:r["batch"]]).abs().max().item(),
                             "psnr": psnr(out, base[:r["batch"]])})
    for mode in args.modes:
        for b in batches:
            try:
                sec, cpu, out = time_ours(net, x, mode, b, args.warmup, args.iters)
            except Exception as exc:  # e.g. torch.compile without a working compiler: report, go on
                first = (str(exc).splitlines() or [""])[0][:120]
                print(f"ours {mode} batch {b}: failed ({type(exc).__name__}: {first})")
                continue
            rows.append({"impl": "ours", "size": size, "mode": mode, "batch": b, "faces_per_s": b / sec,
                         "cpu_s_per_face": cpu / b,
                         "max_abs": (out - base[:b]).abs().max().item(), "psnr": psnr(out, base[:b])})
    ref1 = next((r["faces_per_s"] for r in rows if r["impl"] == "reference" and r["batch"] == 1), None)
    for r in rows:
        r["ratio_vs_ref_b1_fp32"] = None if ref1 is None else r["faces_per_s"] / ref1
    return rows


def print_rows(rows: List[Dict], device: str):
    print(f"\nGFPGANv1Clean forward (return_rgb=False), device={device}, threads={torch.get_num_threads()}")
    print(f"{'impl':<10}{'size':>5} {'mode':<18}{'batch':>5}{'faces/s':>10}{'x ref b1':>10}"
          f"{'CPU s/face':>11}{'max|diff|':>11}{'PSNR dB':>9}")
    for r in rows:
        ratio = "-" if r["ratio_vs_ref_b1_fp32"] is None else f"{r['ratio_vs_ref_b1_fp32']:.2f}"
        print(f"{r['impl']:<10}{r['size']:>5} {r['mode']:<18}{r['batch']:>5}{r['faces_per_s']:>10.3f}"
              f"{ratio:>10}{r['cpu_s_per_face']:>11.2f}{r['max_abs']:>11.2e}{r['psnr']:>9.1f}")
    print("(differences against our fp32 output on the same inputs; PSNR on the [0, 1] scale; CPU s/face is\n"
          " process CPU time, the fair CPU comparison on a shared machine)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gfpgan.tools.bench_generator",
                                description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="512", help="comma list of output sizes (default 512)")
    p.add_argument("--batches", default=None,
                   help="comma list of batch sizes (default 1,4 on CPU, 1,4,8 on CUDA)")
    p.add_argument("--modes", default=None,
                   help="comma list of fp32|bf16|fp16[+cl][+compile] (default fp32 on CPU; "
                        "fp32,bf16,fp16,fp16+cl,fp16+cl+compile on CUDA)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations (default 2 on CPU, 20 on CUDA)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed iterations first (default 1 on CPU, 5 on CUDA)")
    p.add_argument("--channel-multiplier", type=int, default=2, help="2 = the released v1.3/v1.4 model")
    p.add_argument("--narrow", type=float, default=1.0, help="channel scale (1 = released size)")
    p.add_argument("--reference-batches", default="1", help="batch sizes timed for the reference (default 1)")
    p.add_argument("--reference-dir", default=os.environ.get("GFPGAN_ORACLE_DIR", str(DEFAULT_ORACLE)),
                   help="folder holding the unpacked gfpgan==1.3.8 package")
    p.add_argument("--no-reference", action="store_true", help="time ours only")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    add_common_arguments(p, device=True)
    args = p.parse_args(argv)

    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        raise UserError(f"--device {args.device!r} is not a device: use cpu or cuda") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but this machine has no CUDA GPU; use --device cpu")
    cuda = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        args.sizes = [int(s) for s in args.sizes.split(",")]
        args.batches = [int(b) for b in (args.batches or ("1,4,8" if cuda else "1,4")).split(",")]
        args.reference_batches = [int(b) for b in args.reference_batches.split(",") if b.strip()]
    except ValueError as exc:
        raise UserError(f"--sizes, --batches and --reference-batches take comma lists of integers ({exc})"
                        ) from exc
    args.modes = parse_modes(args.modes or ("fp32,bf16,fp16,fp16+cl,fp16+cl+compile" if cuda else "fp32"))
    args.iters = args.iters or (20 if cuda else 2)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    for s in args.sizes:
        if s < 8 or s > 1024 or s & (s - 1):
            raise UserError(f"--sizes: {s} is not a power of two between 8 and 1024")

    rows = []
    for size in args.sizes:
        rows += bench_size(args, size, device)
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({os.cpu_count()} cores)"
    print_rows(rows, name)
    if args.json:
        write_text_atomic(args.json, json.dumps({"device": name, "torch": torch.__version__,
                                                 "rows": rows}, indent=1))
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
