"""Benchmark the GFPGANv1Clean generator forward pass: every inference path side by side, against
fp32 eager and the reference gfpgan==1.3.8.

Each mode runs through the face pipeline's own model wrapper (``TorchFaceModel``, the path
``infer_image``, ``infer_video`` and ``GFPGANer`` take) at each size and batch, on real faces (the
astronaut and Grace Hopper portraits shipped by scikit-image and matplotlib, resized), and the
table gives faces/s, the ratio against fp32 eager at batch 1, and the output difference against
fp32 (max abs and PSNR on the [0, 1] scale). Modes: a precision (``fp32``, ``bf16``, ``fp16``,
``auto``: what the commands choose by default on this machine; see :mod:`gfpgan.precision`),
optionally ``+compile``, and ``onnxruntime`` (the exported graph, fp32). The reference runs in a
subprocess (its package is also named ``gfpgan``) with the very same random weights.

Usage:
    python -m gfpgan.tools.bench_generator                # CPU: fp32, auto, onnxruntime at batch 1
    python -m gfpgan.tools.bench_generator --device cuda  # + fp16, bf16, compile, batches 1,4,8
    python -m gfpgan.tools.bench_generator --sizes 256 --batches 1,8 --modes fp32,fp16 --json out.json
"""

import argparse
import copy
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
from gfpgan.precision import NATIVE_BF16_FLAGS, PRECISIONS, choose_precision, cpu_features

DEFAULT_ORACLE = Path(__file__).resolve().parents[2] / ".cache" / "oracle"
MODES = PRECISIONS + ("onnxruntime",)

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
    """'fp32,auto,fp16+compile' -> validated mode names (a precision, optional +compile, or onnxruntime)."""
    modes = [m.strip() for m in text.split(",") if m.strip()]
    for m in modes:
        parts = m.split("+")
        if parts[0] not in MODES or any(p != "compile" for p in parts[1:]) or (
                parts[0] == "onnxruntime" and len(parts) > 1):
            raise UserError(f"unknown mode {m!r}: use {'|'.join(PRECISIONS)} optionally followed by "
                            f"+compile, or onnxruntime")
    return modes


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two [-1, 1] images on the [0, 1] scale (inf when identical)."""
    mse = ((a.float() - b.float()) / 2).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def face_batch(size: int, batch: int) -> torch.Tensor:
    """(batch, 3, size, size) real faces in [-1, 1]: the astronaut and Grace Hopper portraits
    (square, resized), then their mirror images, in turn."""
    import cv2
    import matplotlib
    import numpy as np
    import skimage.data

    hopper = cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))
    faces = [skimage.data.astronaut(), cv2.cvtColor(hopper[44:556], cv2.COLOR_BGR2RGB)]
    faces = [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in faces]
    faces += [f[:, ::-1] for f in faces]
    x = np.stack([faces[i % len(faces)] for i in range(batch)])
    return torch.from_numpy(x).permute(0, 3, 1, 2).float().div(127.5).sub(1).contiguous()


def build_mode(net: torch.nn.Module, mode: str, device: torch.device, workdir: str):
    """The face model ``mode`` runs: (callable (B,3,S,S) -> fp32 output, the precision it resolved to)."""
    if mode == "onnxruntime":
        from gfpgan.inference.faces.onnx_model import OnnxFaceModel
        from gfpgan.tools.export import InferenceGraph, export_onnx

        path = Path(workdir) / "generator.onnx"
        if not path.is_file():
            export_onnx(InferenceGraph(copy.deepcopy(net)).eval(), 2 ** net.log_size, path)
        return OnnxFaceModel(str(path), threads=torch.get_num_threads()), "fp32"
    from gfpgan.inference.faces.model import TorchFaceModel

    parts = mode.split("+")
    model = TorchFaceModel(copy.deepcopy(net), device=device, precision=parts[0])
    if "compile" in parts:
        model.net = torch.compile(model.net, dynamic=False)
    return model, model.precision.name


def time_mode(model, x: torch.Tensor, batch: int, warmup: int, iters: int):
    """Wall and process-CPU seconds per forward at ``batch``; the last output (fp32, CPU)."""
    xb = x[:batch]
    device = torch.device(model.device)  # every FaceModel says where it runs
    for _ in range(warmup):
        model(xb)
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(iters):
        out = model(xb)
    _sync(device)
    return (time.perf_counter() - t0) / iters, (time.process_time() - c0) / iters, out.float().cpu()


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
    net = GFPGANv1Clean(**kw).eval().requires_grad_(False)
    # give the noise injection a non-zero strength, as in trained weights, so it is exercised
    for p in net.stylegan_decoder.parameters():
        if p.numel() == 1:
            p.data.fill_(0.1)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    batches = sorted(set(args.batches))
    x = face_batch(size, max(batches))
    rows = []
    with torch.inference_mode():
        base = net(x, return_rgb=False)[0].float()  # fp32 eager on the CPU: every comparison's baseline

    def row(impl, mode, chosen, batch, sec, cpu, out):
        rows.append({"impl": impl, "size": size, "mode": mode, "precision": chosen, "batch": batch,
                     "faces_per_s": batch / sec, "cpu_s_per_face": cpu / batch,
                     "max_abs": (out - base[:batch]).abs().max().item(), "psnr": psnr(out, base[:batch])})

    if not args.no_reference:
        ref = run_reference(Path(args.reference_dir), kw, state, x, args.reference_batches, device.type,
                            args.warmup, args.iters)
        for r in ref[0] if ref else []:
            row("reference", "fp32", "fp32", r["batch"], r["sec_per_iter"], r["cpu_per_iter"],
                ref[1][str(r["batch"])])
    with tempfile.TemporaryDirectory(prefix="bench_gen_") as tmp:
        for mode in args.modes:
            try:
                model, chosen = build_mode(net, mode, device, tmp)  # not in inference mode: ONNX traces
                with torch.inference_mode():
                    for b in batches:
                        row("ours", mode, chosen, b, *time_mode(model, x.to(device), b, args.warmup,
                                                                args.iters))
            except Exception as exc:  # e.g. torch.compile without a working compiler: report, go on
                first = (str(exc).splitlines() or [""])[0][:120]
                print(f"ours {mode}: failed ({type(exc).__name__}: {first})")
            model = None
    for key, impl in (("x_fp32_b1", "ours"), ("x_ref_b1", "reference")):
        one = next((r["faces_per_s"] for r in rows
                    if r["impl"] == impl and r["mode"] == "fp32" and r["batch"] == 1), None)
        for r in rows:
            r[key] = None if one is None else r["faces_per_s"] / one
    return rows


def print_rows(rows: List[Dict], device: str):
    print(f"\nGFPGANv1Clean forward (return_rgb=False), device={device}, threads={torch.get_num_threads()}")
    print(f"{'impl':<10}{'size':>5} {'mode':<13}{'runs as':<8}{'batch':>5}{'faces/s':>9}{'x fp32':>8}"
          f"{'x ref':>7}{'CPU s/face':>11}{'max|diff|':>10}{'PSNR dB':>8}")
    for r in rows:
        ratios = "".join(f"{'-' if r[k] is None else format(r[k], '.2f'):>{w}}"
                         for k, w in (("x_fp32_b1", 8), ("x_ref_b1", 7)))
        print(f"{r['impl']:<10}{r['size']:>5} {r['mode']:<13}{r['precision']:<8}{r['batch']:>5}"
              f"{r['faces_per_s']:>9.3f}{ratios}{r['cpu_s_per_face']:>11.2f}{r['max_abs']:>10.1e}"
              f"{r['psnr']:>8.1f}")
    print("x fp32 / x ref: faces/s against ours in fp32 eager / the reference, both at batch 1.\n"
          "Differences against our fp32 eager output on the same real faces (PSNR on the [0, 1] scale);\n"
          "CPU s/face is process CPU time, the fair CPU comparison on a shared machine.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gfpgan.tools.bench_generator",
                                description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="512", help="comma list of output sizes (default 512)")
    p.add_argument("--batches", default=None,
                   help="comma list of batch sizes (default 1 on CPU, 1,4,8 on CUDA)")
    p.add_argument("--modes", default=None,
                   help="comma list of fp32|bf16|fp16|auto[+compile] or onnxruntime (default "
                        "fp32,auto,onnxruntime on CPU; fp32,bf16,fp16,fp16+compile on CUDA)")
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
        args.batches = [int(b) for b in (args.batches or ("1,4,8" if cuda else "1")).split(",")]
        args.reference_batches = [int(b) for b in args.reference_batches.split(",") if b.strip()]
    except ValueError as exc:
        raise UserError(f"--sizes, --batches and --reference-batches take comma lists of integers ({exc})"
                        ) from exc
    args.modes = parse_modes(args.modes or ("fp32,bf16,fp16,fp16+compile" if cuda
                                            else "fp32,auto,onnxruntime"))
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
    chosen = choose_precision("auto", device)
    features = ", ".join(sorted(cpu_features())) or "none of " + ", ".join(sorted(NATIVE_BF16_FLAGS))
    print(f"the commands' default here (--precision auto): {chosen.name}, {chosen.reason}"
          + ("" if cuda else f" (CPU bf16 features: {features})"))
    if args.json:
        write_text_atomic(args.json, json.dumps({"device": name, "torch": torch.__version__,
                                                 "default": chosen.name, "rows": rows}, indent=1))
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
