"""Training-step benchmark: iterations/s and peak memory of a recipe's ``train_step``, several
precision/layout modes side by side in one run, with their speed-up over the first.

    python -m gfpgan.tools.bench_train                         # tiny recipe, CPU, fp32
    python -m gfpgan.tools.bench_train --opt options/train_gfpgan_v1.yml --device cuda
                                   # 512 recipe: fp32 vs bf16 autocast + channels_last (target >= 1.5x)

The model is the real one (``MODEL_REGISTRY[model_type]``) with every loss of the recipe, but the
weight files are not needed: the StyleGAN2 prior, ArcFace and VGG start from random weights
(speed does not depend on them), and batches are synthetic (``bench_dataset`` measures data
loading), with component boxes at the FFHQ template's eyes and mouth.

``--profile N`` then runs N more steps per mode under the PyTorch profiler and prints the costliest
operators, the ATen operators dispatched per step and, on CUDA, the device's busy time and kernel
launches per step: a device busy for much less than the step's wall time is waiting for the host,
which reduced precision cannot help.
"""

import argparse
import copy
import json
import resource
import time
from typing import Dict, List, Optional, Sequence

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command

MODES = {  # name -> train.* options
    "fp32": {"amp": None, "channels_last": False, "compile": False},
    "bf16": {"amp": "bf16", "channels_last": False, "compile": False},
    "bf16_cl": {"amp": "bf16", "channels_last": True, "compile": False},
    "fp16": {"amp": "fp16", "channels_last": False, "compile": False},
    "fp16_cl": {"amp": "fp16", "channels_last": True, "compile": False},
    "fp32_cl": {"amp": None, "channels_last": True, "compile": False},
    "bf16_cl_compile": {"amp": "bf16", "channels_last": True, "compile": True},
    "bf16_cl_cudagraphs": {"amp": "bf16", "channels_last": True, "compile": "reduce-overhead"},
}


def bench_options(path: str, overrides: Sequence[str] = ()) -> dict:
    """The recipe validated without its weight/data files (they are not needed to time a step)."""
    from gfpgan.options import apply_overrides, load_yaml, train_schema, validate

    raw = load_yaml(path)
    apply_overrides(raw, overrides)
    for key in list(raw.get("path") or {}):
        if key.startswith("pretrain_network") or key == "resume_state":
            raw["path"][key] = None
    if isinstance(raw.get("network_g"), dict):
        raw["network_g"]["decoder_load_path"] = None
    perceptual = (raw.get("train") or {}).get("perceptual_opt")
    if isinstance(perceptual, dict):
        perceptual.update(pretrained=False, vgg_weights=None)
    return validate(raw, train_schema(raw.get("model_type") or "GFPGANModel"), where=path, check_paths=False)


def synthetic_batch(batch: int, size: int, with_boxes: bool, seed: int = 0) -> dict:
    """Random faces in [-1, 1] and eye/mouth boxes (x1, y1, x2, y2) at the template positions."""
    import torch

    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    out = {"gt": gt, "lq": (gt + 0.1 * torch.randn(gt.shape, generator=g)).clamp(-1, 1)}
    if with_boxes:
        s = size / 512  # FFHQ 512 template: eyes ~(192, 240)/(320, 240), mouth ~(256, 365)
        for key, (cx, cy, h) in {"loc_left_eye": (192, 240, 28), "loc_right_eye": (320, 240, 28),
                                 "loc_mouth": (256, 365, 40)}.items():
            box = torch.tensor([cx - h + 1, cy - h + 1, cx + h, cy + h], dtype=torch.float32) * s
            out[key] = box.expand(batch, 4).clone()
    return out


def _synchronizer(dev):
    """Waits for the device's queued work (CUDA) or does nothing (CPU runs synchronously)."""
    import torch

    return torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)


def count_ops(fn) -> int:
    """ATen operators dispatched while ``fn`` runs (forward, backward and optimizer): each costs
    the host a few microseconds, and most launch a kernel on a GPU."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            _Count.n += 1
            return func(*args, **(kwargs or {}))

    with _Count():
        fn()
    return _Count.n


def profile_steps(model, batch: dict, first_it: int, steps: int, dev, top: int) -> dict:
    """Run ``steps`` train steps under the PyTorch profiler; print the costliest ops.

    Returns per-step wall ms, and on CUDA the device's busy ms (sum of kernel times) and the
    number of kernel launches: busy far below wall means the step waits for the CPU (Python,
    dispatch, launches), where lower precision cannot help.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = dev.type == "cuda"
    sync = _synchronizer(dev)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync()
    with profile(activities=acts) as prof:
        start = time.perf_counter()
        for it in range(first_it, first_it + steps):
            model.train_step(batch, it)
        sync()
        wall = time.perf_counter() - start
    events = prof.key_averages()
    print(events.table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total",
                       row_limit=top))
    out = {"wall_ms": wall / steps * 1e3}
    if not model.train_opt["compile"]:  # what the host dispatches per step (compiled graphs hide it)
        out["aten_ops"] = count_ops(lambda: model.train_step(batch, first_it + steps))
    if cuda:
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        out["device_busy_ms"] = sum(e.device_time for e in kernels) / steps / 1e3
        out["kernel_launches"] = len(kernels) / steps
    print("per step: " + ", ".join(f"{k} {v:.1f}" for k, v in out.items()))
    return out


def run_mode(opt: dict, device: str, batch_size: int, iters: int, warmup: int,
             profile: int = 0, top: int = 25) -> Dict[str, float]:
    """Build the model in one mode and time ``iters`` train steps after ``warmup`` ones (then
    ``profile`` more under the profiler, when asked)."""
    import torch

    import gfpgan.models  # noqa: F401  (fills MODEL_REGISTRY)
    from gfpgan.dist import DistInfo
    from gfpgan.registry import MODEL_REGISTRY

    dev = torch.device(device)
    torch.manual_seed(0)
    model = MODEL_REGISTRY.get(opt["model_type"])(opt, DistInfo(0, 0, 1, dev))
    size = opt["network_g"]["out_size"]
    batch = synthetic_batch(batch_size, size, bool(opt.get("network_d_left_eye")))
    sync = _synchronizer(dev)
    for it in range(1, warmup + 1):
        model.train_step(batch, it)
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    start = time.perf_counter()
    for it in range(warmup + 1, warmup + iters + 1):
        logs = model.train_step(batch, it)
    sync()
    seconds = time.perf_counter() - start
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) / 2 ** 30
    else:  # peak resident memory of the whole process so far (Linux: KiB)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    out = {"it_per_s": iters / seconds, "s_per_it": seconds / iters, "peak_gib": peak,
           "skipped": float(logs.get("skipped", 0.0))}
    if profile:
        out["profile"] = profile_steps(model, batch, warmup + iters + 1, profile, dev, top)
    del model
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gfpgan.tools.bench_train",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--opt", default="options/train_gfpgan_tiny.yml", help="recipe YAML")
    parser.add_argument("--modes", default=None,
                        help=f"comma list of {', '.join(MODES)} (default: fp32 on cpu, "
                             f"fp32,bf16_cl on cuda)")
    parser.add_argument("--batch", type=int, default=None, help="default: batch_size_per_gpu")
    parser.add_argument("--iters", type=int, default=16,
                        help="timed iterations per mode (16: one lazy-R1 step among them, as in "
                             "training)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations per mode")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="after timing, profile N more steps per mode: the costliest ops, "
                             "and on CUDA the device's busy time and kernel launches per step")
    parser.add_argument("--force-yml", nargs="+", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", default=None, help="also write the results here")
    add_common_arguments(parser, device=True)
    args = parser.parse_args(argv)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but this machine has no CUDA GPU; use --device cpu")
    modes: List[str] = (args.modes or ("fp32,bf16_cl" if args.device == "cuda" else "fp32")).split(",")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise UserError(f"unknown mode(s) {unknown}; choose from {', '.join(MODES)}")
    base = bench_options(args.opt, args.force_yml)
    batch = args.batch or base["datasets"]["train"]["batch_size_per_gpu"]
    name = (torch.cuda.get_device_name() if args.device == "cuda"
            else f"cpu x{torch.get_num_threads()} threads")
    print(f"{base['name']} ({args.opt}): out_size {base['network_g']['out_size']}, batch {batch}, "
          f"{args.warmup} warm-up + {args.iters} timed iterations on {name}")
    results = {}
    for mode in modes:
        opt = copy.deepcopy(base)
        opt["train"].update(MODES[mode])
        try:
            if args.profile:
                print(f"--- profile of {mode} ---")
            results[mode] = run_mode(opt, args.device, batch, args.iters, args.warmup, args.profile)
        except RuntimeError as exc:  # one broken mode (e.g. an op without channels_last) must
            results[mode] = {"error": str(exc).splitlines()[0][:160]}  # not hide the others
    first = results[modes[0]].get("it_per_s")
    mem = "peak GPU GiB" if args.device == "cuda" else "peak RSS GiB"
    print(f"| mode | it/s | s/it | {mem} | speed-up vs {modes[0]} |")
    print("|---|---|---|---|---|")
    for mode, r in results.items():
        if "error" in r:
            print(f"| {mode} | failed: {r['error']} | | | |")
            continue
        r["speedup"] = r["it_per_s"] / first if first else float("nan")
        print(f"| {mode} | {r['it_per_s']:.3f} | {r['s_per_it']:.3f} | {r['peak_gib']:.2f} | "
              f"{r['speedup']:.2f}x |")
    if args.json:
        from gfpgan.files import write_text_atomic

        write_text_atomic(args.json, json.dumps({"opt": args.opt, "device": name, "batch": batch,
                                                 "results": results}, indent=2))
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
