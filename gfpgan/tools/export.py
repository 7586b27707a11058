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

    python -m gfpgan.tools.export --temporal temporal.safetensors [--ckpt BASE] --out exported/

exports one step of a learned temporal module instead (:func:`export_temporal_step`: crop and
state in, crop and state out; ONNX opset 20 or later), verified against PyTorch with ONNX Runtime.
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

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command
from gfpgan.files import atomic_path, write_text_atomic

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
        from gfpgan.inference.faces.onnx_model import OnnxFaceModel

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


def _step_io(net: nn.Module, batch: int, seed: int) -> Tuple[torch.Tensor, ...]:
    """Inputs of one step with a live state: a random crop, a small motion, the state after a
    first step on another crop."""
    size = net.out_size
    g = torch.Generator().manual_seed(seed)
    x0, x1 = (torch.rand(batch, 3, size, size, generator=g) * 2 - 1 for _ in range(2))
    rel = torch.eye(2, 3).repeat(batch, 1, 1)
    rel[:, :, 2] = torch.rand(batch, 2, generator=g) * 4 - 2
    with torch.no_grad():
        _, st = net.step(x1 * 0.5 + x0 * 0.5, net.init_state(batch), rel)
    return (x1, rel, *st.hidden, st.prev_input, st.valid, st.gate)


def export_temporal_step(temporal, out_dir, base=None, opset: int = 20, tol: float = 1e-3,
                         name: Optional[str] = None) -> Dict[str, dict]:
    """Export one step of a temporal file's module (crop and state in, crop and state out) to ONNX.

    Inputs ``input`` (B, 3, S, S), ``rel_affine`` (B, 2, 3), ``h0``.. (one per adapted scale),
    ``prev_input``, ``valid``, ``gate``; outputs ``output`` and the new state's fields, named as
    the inputs with an ``_out`` suffix (the exporter drops the ``gate`` input, which no output
    depends on); the batch axis (tracks) is dynamic. Verified against
    PyTorch at two batch sizes with a live state.

    Raises:
        UserError: opset below 20 (``affine_grid``), a bad temporal file or base, an export that
            does not match PyTorch within ``tol`` (nothing is written then).
    """
    from gfpgan.archs.temporal_arch import TemporalStep
    from gfpgan.inference.tracks.temporal_step import load_temporal_net

    if opset < 20:
        raise UserError(f"--opset {opset}: one temporal step needs ONNX opset 20 or later (affine_grid).")
    net = load_temporal_net(temporal, base).float().eval()
    step = TemporalStep(net).eval()
    names = ["input", "rel_affine", *[f"h{i}" for i in range(net.num_state_maps)], "prev_input", "valid",
             "gate"]
    outs = ["output", *[f"{n}_out" for n in names[2:]]]
    final = Path(out_dir) / f"{name or Path(os.fspath(temporal)).stem}_step.onnx"
    final.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with atomic_path(final) as tmp:
        with warnings.catch_warnings(), _traceable(step):
            warnings.simplefilter("ignore")
            torch.onnx.export(step, _step_io(net, 2, 0), str(tmp), opset_version=opset,
                              input_names=names, output_names=outs, dynamo=False,
                              dynamic_axes={n: {0: "batch"} for n in names + outs})
        step.requires_grad_(False)
        import onnxruntime as ort

        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        diff = 0.0
        for batch in (1, 3):
            args = _step_io(net, batch, batch)
            with torch.no_grad():
                ref = step(*args)
            used = {i.name for i in sess.get_inputs()}  # the old gate feeds nothing: dropped
            got = sess.run(None, {n: a.numpy() for n, a in zip(names, args) if n in used})
            diff = max([diff] + [float((torch.from_numpy(g) - r).abs().max()) for g, r in zip(got, ref)])
        if not diff <= tol:
            raise UserError(f"the temporal step of {temporal} exported to ONNX differs from PyTorch by "
                            f"{diff:.3g} (> {tol:g}); nothing was written to {final}")
    return {"onnx_step": {"path": str(final), "max_abs_diff": diff, "tolerance": tol,
                          "seconds": round(time.perf_counter() - t0, 2), "bytes": final.stat().st_size}}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gfpgan.tools.export", description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", default=None,
                   help="run folder, checkpoint file or model card name (with --temporal: its base, "
                        "unless the temporal file holds it)")
    p.add_argument("--temporal", default=None, metavar="FILE",
                   help="export one step of this temporal file's module to ONNX instead (opset >= 20)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--formats", default="safetensors,onnx,torchscript",
                   help="comma-separated: safetensors,onnx,torchscript (default: all)")
    p.add_argument("--fp16", action="store_true",
                   help="store the safetensors weights in fp16 (half the size)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17; 20 with --temporal)")
    p.add_argument("--tol", type=float, default=1e-3, help="max abs difference allowed vs PyTorch (fp32)")
    p.add_argument("--name", default=None, help="output file stem (default: from the checkpoint)")
    add_common_arguments(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.temporal:
        report = export_temporal_step(args.temporal, args.out, args.ckpt, args.opset or 20, args.tol,
                                      args.name)
    elif args.ckpt is None:
        raise UserError("give --ckpt (the generator to export) or --temporal FILE.")
    else:
        formats = [f.strip() for f in args.formats.split(",") if f.strip()]
        report = export(args.ckpt, args.out, formats, fp16=args.fp16, opset=args.opset or 17,
                        tol=args.tol, name=args.name)
    for fmt, r in report.items():
        print(f"{fmt:12s} {r['path']}  max|diff| vs PyTorch = {r['max_abs_diff']:.2e} "
              f"(tol {r['tolerance']:g})  {r['bytes'] / 1e6:.1f} MB  {r['seconds']:.1f}s")
    write_text_atomic(Path(args.out, "export_report.json"), json.dumps(report, indent=2))
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
