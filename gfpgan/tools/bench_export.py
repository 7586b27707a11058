"""Benchmark the exported generator: ONNX Runtime vs PyTorch (and TorchScript), side by side.

    python -m gfpgan.tools.bench_export --device cpu --model tiny --batch 4 --iters 10
    python -m gfpgan.tools.bench_export --device cuda --model 512 --batch 8

The same weights run in every backend on the same random faces (fixed noise); the table gives
faces/s and milliseconds per face, the ratio to PyTorch and the max abs difference of each output
from PyTorch's. Models: ``tiny`` (GFPGANv1Clean 128 px, narrow, random weights), ``512`` (the
v1.3/v1.4 architecture with random weights) or a checkpoint / run folder / model card.
"""

import argparse
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command
from gfpgan.files import write_json_atomic

ARCHS = {"tiny": dict(out_size=128, num_style_feat=64, channel_multiplier=1, narrow=0.25, num_mlp=2,
                      different_w=True, input_is_latent=True, sft_half=True),
         "512": dict(out_size=512, num_style_feat=512, channel_multiplier=2, num_mlp=8,
                     different_w=True, input_is_latent=True, sft_half=True)}


def _generator(spec: str):
    if spec in ARCHS:
        from gfpgan.archs import GFPGANv1Clean

        torch.manual_seed(0)
        return GFPGANv1Clean(**ARCHS[spec]).eval(), ARCHS[spec]["out_size"]
    from gfpgan.tools.export import load_generator

    net, _, kwargs, _ = load_generator(spec)
    return net, int(kwargs.get("out_size", 512))


def _time(fn, x, iters: int, sync) -> float:
    fn(x)  # warm-up (graph optimisation, allocator)
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn(x)
    sync()
    return (time.perf_counter() - t0) / iters


def run(model: str = "tiny", device: str = "cpu", batch: int = 4, iters: int = 10, threads: int = 0,
        torchscript: bool = True) -> dict:
    """Time each backend; returns ``{backend: {"faces_per_s", "ms_per_face", "max_abs_diff"}}``."""
    from gfpgan.inference.faces.onnx_model import OnnxFaceModel
    from gfpgan.tools.export import InferenceGraph, export_onnx, export_torchscript

    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but CUDA is not available; use --device cpu")
    if threads:
        torch.set_num_threads(threads)
    net, size = _generator(model)
    graph = InferenceGraph(net).eval()
    dev = torch.device(device)
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    results = {}
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        onnx_path, ts_path = Path(tmp) / "g.onnx", Path(tmp) / "g.ts.pt"
        export_onnx(graph, size, onnx_path)
        graph_dev = InferenceGraph(net.to(dev)).eval()
        ref = graph_dev(x.to(dev)).float().cpu()
        contenders = {"pytorch": lambda t: graph_dev(t.to(dev))}
        if torchscript:
            export_torchscript(InferenceGraph(net.cpu()).eval(), size, ts_path)
            ts = torch.jit.load(str(ts_path), map_location=dev).eval()
            contenders["torchscript"] = lambda t: ts(t.to(dev))
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if dev.type == "cuda" else None
        ort_model = OnnxFaceModel(str(onnx_path), providers=providers, threads=threads or None)
        contenders[f"onnxruntime ({ort_model.providers[0].replace('ExecutionProvider', '')})"] = ort_model
        net.to(dev)
        for name, fn in contenders.items():
            sec = _time(fn, x, iters, sync)
            diff = float((fn(x).float().cpu() - ref).abs().max())
            results[name] = {"faces_per_s": batch / sec, "ms_per_face": 1000 * sec / batch,
                             "max_abs_diff": diff}
    base = results["pytorch"]["faces_per_s"]
    for r in results.values():
        r["speed_vs_pytorch"] = r["faces_per_s"] / base
    return results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gfpgan.tools.bench_export",
                                description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny", help="tiny | 512 | checkpoint, run folder or card")
    p.add_argument("--batch", type=int, default=4, help="faces per call")
    p.add_argument("--iters", type=int, default=10, help="timed calls per backend")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads for both (0: library default)")
    p.add_argument("--no-torchscript", action="store_true", help="skip the TorchScript contender")
    p.add_argument("--json", default=None, help="also write the results here")
    add_common_arguments(p, device=True)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    res = run(args.model, args.device, args.batch, args.iters, args.threads, not args.no_torchscript)
    print(f"model={args.model} device={args.device} batch={args.batch} iters={args.iters} "
          f"threads={args.threads or 'default'}")
    print(f"{'backend':26s} {'faces/s':>9s} {'ms/face':>9s} {'vs PyTorch':>11s} {'max|diff|':>10s}")
    for name, r in res.items():
        print(f"{name:26s} {r['faces_per_s']:9.2f} {r['ms_per_face']:9.1f} {r['speed_vs_pytorch']:10.2f}x "
              f"{r['max_abs_diff']:10.2e}")
    if args.json:
        write_json_atomic(args.json, res)
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
