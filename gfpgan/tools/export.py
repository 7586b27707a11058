"""Export a trained generator for deployment: EMA-only safetensors, ONNX and TorchScript.

    python -m gfpgan.tools.export --ckpt experiments/train_GFPGANv1_512 --out exported/ \\
        --formats safetensors,onnx,torchscript [--fp16] [--opset 17]

``--ckpt`` is a run folder (its newest ``models/net_g_ema_<iter>.safetensors``), one checkpoint
file (ours or an official ``.pth``) or a model card name. Every export is an inference graph:
``(B, 3, S, S)`` faces in [-1, 1] to restored faces, with the StyleGAN2 noise fixed to the
network's stored buffers (deterministic output, no random ops in the graph) and a dynamic batch
axis. Each file is verified against PyTorch on random inputs of two batch sizes and the max
absolute difference is printed; beyond ``--tol`` (1e-3 by default, fp32) the command fails and
keeps nothing. Files are written to temp names and renamed once verified.
"""

import argparse
import json
import os
import re
import time
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from gfpgan.errors import UserError, run_cli
from gfpgan.utils import atomic_path, write_text_atomic

FORMATS = ("safetensors", "onnx", "torchscript")


def find_run_checkpoint(run_dir: Path, net: str = "net_g_ema") -> Path:
    """Newest ``models/<net>_<iter>.safetensors`` of a run folder (``<net>_best`` if none numbered)."""
    models = run_dir / "models" if (run_dir / "models").is_dir() else run_dir
    numbered = []
    for f in models.glob(f"{net}_*.safetensors"):
        m = re.fullmatch(rf"{net}_(\d+)\.safetensors", f.name)
        if m:
            numbered.append((int(m.group(1)), f))
    if numbered:
        return max(numbered)[1]
    if (models / f"{net}_best.safetensors").is_file():
        return models / f"{net}_best.safetensors"
    raise UserError(f"run folder {run_dir} has no {models}/{net}_<iter>.safetensors; train it first or "
                    f"pass a checkpoint file")


def load_generator(spec) -> Tuple[nn.Module, str, dict, str]:
    """Build the generator named by ``spec`` with its weights.

    Args:
        spec: run folder, ``.safetensors``/``.pth`` file or model card name.
    Returns:
        (network in eval mode on the CPU, arch name, constructor kwargs, source path).
    """
    from gfpgan import model_cards
    from gfpgan.networks import load_network

    path = Path(os.fspath(spec)).expanduser()
    if path.is_dir():
        path = find_run_checkpoint(path)
    elif not path.exists():
        if path.suffix in (".pth", ".pt", ".safetensors") or os.sep in str(spec):
            raise UserError(f"checkpoint {path} not found; pass a run folder, a checkpoint file or a "
                            f"model card name")
        path = model_cards.load_card(str(spec))
    net, arch, kwargs, path = load_network(path)
    return net.float().eval(), arch, kwargs, str(path)


class InferenceGraph(nn.Module):
    """The generator as an inference function: image in, image out, fixed noise, no pyramid.

    Args:
        net: a GFPGAN generator (``forward(x, return_rgb=, randomize_noise=)``).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [-1, 1] -> (B, 3, S, S) restored (not clipped)."""
        out = self.net(x, return_rgb=False, randomize_noise=False)
        return out[0] if isinstance(out, (tuple, list)) else out


def _inputs(size: int, batches: Sequence[int], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, 3, size, size, generator=g) * 2 - 1 for b in batches]


def _size_of(net: nn.Module, kwargs: dict) -> int:
    return int(kwargs.get("out_size") or getattr(net, "out_size", 512))


def _traceable(graph: nn.Module):
    """Trace with autograd on: the decoder then takes its out-of-place CS-SFT branch. Its
    inference branch modulates a channel slice in place, which the ONNX exporter turns into
    ScatterND nodes that drop part of the update (0.14 max error seen)."""
    graph.requires_grad_(True)
    return torch.enable_grad()


def export_onnx(graph: nn.Module, size: int, path: Path, opset: int = 17) -> None:
    """Write ``graph`` as ONNX with a dynamic batch axis (traced at batch 2, see below)."""
    # batch 2: the modulated convs then trace their batch-independent form (one shared conv with
    # input scaling) instead of the per-sample grouped conv used for batch 1
    dummy = _inputs(size, [2])[0]
    with warnings.catch_warnings(), _traceable(graph):
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (dummy,), str(path), opset_version=opset, input_names=["input"],
                          output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                          dynamo=False)
    graph.requires_grad_(False)


def export_torchscript(graph: nn.Module, size: int, path: Path) -> None:
    """Trace ``graph`` (at batch 2, batch-independent path) and save it."""
    with warnings.catch_warnings(), _traceable(graph):
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph, _inputs(size, [2])[0], check_trace=False)
    graph.requires_grad_(False)
    traced.save(str(path))


@torch.no_grad()
def verify(fmt: str, path: Path, graph: nn.Module, size: int, batches=(1, 3)) -> float:
    """Max |exported - PyTorch| over random inputs of several batch sizes."""
    ref_inputs = _inputs(size, batches, seed=1)
    if fmt == "onnx":
        from gfpgan.inference.onnx_backend import OnnxFaceModel

        model = OnnxFaceModel(str(path))
        run = model
    elif fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
            run = torch.jit.load(str(path), map_location="cpu").eval()
    else:
        from gfpgan.networks import build_network

        net = build_network(path, device="cpu").float().eval()
        run = InferenceGraph(net)
    return max(float((run(x).float() - graph(x)).abs().max()) for x in ref_inputs)


def save_ema_only(path: Path, net: nn.Module, arch: str, kwargs: dict, source: str, fp16: bool) -> None:
    """Save the generator alone as our self-describing safetensors (optionally fp16 weights)."""
    from gfpgan.checkpoint import save_network

    extra = {"exported_from": source, "ema_only": True}
    save_network(path, net, arch, kwargs, extra=extra, dtype=torch.float16 if fp16 else None)


def export(spec, out_dir, formats: Sequence[str] = FORMATS, fp16: bool = False, opset: int = 17,
           tol: float = 1e-3, name: Optional[str] = None) -> Dict[str, dict]:
    """Export ``spec`` to ``out_dir`` in ``formats``; returns ``{fmt: {"path", "max_abs_diff", ...}}``.

    Raises:
        UserError: unknown format, or an export that does not match PyTorch within ``tol``.
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UserError(f"unknown export format(s) {bad}; use any of {', '.join(FORMATS)}")
    net, arch, kwargs, source = load_generator(spec)
    graph = InferenceGraph(net).eval()
    size = _size_of(net, kwargs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = name or Path(source).stem.replace("net_g_ema", "gfpgan")
    report = {}
    for fmt in formats:
        ext = {"safetensors": ".safetensors", "onnx": ".onnx", "torchscript": ".ts.pt"}[fmt]
        suffix = "_fp16" if fmt == "safetensors" and fp16 else ""
        final = out_dir / f"{stem}{suffix}{ext}"
        t0 = time.perf_counter()
        with atomic_path(final) as tmp:
            if fmt == "safetensors":
                save_ema_only(tmp, net, arch, kwargs, source, fp16)
            elif fmt == "onnx":
                export_onnx(graph, size, tmp, opset)
            else:
                export_torchscript(graph, size, tmp)
            diff = verify(fmt, tmp, graph, size)
            limit = max(tol, 5e-2) if (fmt == "safetensors" and fp16) else tol
            if not diff <= limit:
                raise UserError(f"{fmt} export of {source} differs from PyTorch by {diff:.3g} (> {limit:g}); "
                                f"nothing was written to {final}")
        report[fmt] = {"path": str(final), "max_abs_diff": diff, "tolerance": limit,
                       "seconds": round(time.perf_counter() - t0, 2), "bytes": final.stat().st_size}
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gfpgan.tools.export", description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True, help="run folder, checkpoint file or model card name")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--formats", default="safetensors,onnx,torchscript",
                   help="comma-separated: safetensors,onnx,torchscript (default: all)")
    p.add_argument("--fp16", action="store_true",
                   help="store the safetensors weights in fp16 (half the size)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--tol", type=float, default=1e-3, help="max abs difference allowed vs PyTorch (fp32)")
    p.add_argument("--name", default=None, help="output file stem (default: from the checkpoint)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    report = export(args.ckpt, args.out, formats, fp16=args.fp16, opset=args.opset, tol=args.tol,
                    name=args.name)
    for fmt, r in report.items():
        print(f"{fmt:12s} {r['path']}  max|diff| vs PyTorch = {r['max_abs_diff']:.2e} "
              f"(tol {r['tolerance']:g})  {r['bytes'] / 1e6:.1f} MB  {r['seconds']:.1f}s")
    write_text_atomic(Path(args.out, "export_report.json"), json.dumps(report, indent=2))
    return 0


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
