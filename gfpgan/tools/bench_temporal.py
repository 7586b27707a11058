"""Frame by frame vs the temporal module, side by side: quality on held-out clips and cost per face.

    python -m gfpgan.tools.bench_temporal --model results/demo/model/generator.safetensors \\
        --temporal results/demo/model/temporal.safetensors --faces datasets/demo_faces_heldout

Both contenders use the same base weights; only the temporal file's adapter differs.

* **Quality**: a seeded synthetic video test set (:mod:`gfpgan.tools.make_video_testset`, the
  CelebA-Test protocol on clips) is built from ``--faces``, which must be faces the base and the
  adapter never saw in training (or ``--set`` names a set made before); then the video evaluation
  of ``gfpgan.test`` (:func:`gfpgan.engine.video_eval.evaluate_video`) runs on it twice: frame by
  frame (``--no-temporal``) and with the temporal file, the module given the motion the video
  pipeline estimates (landmarks tracked on the degraded frames, smoothed as in inference), never
  the set's exact transforms: those also define E_warp's flow. ``--gt-motion`` adds a third row,
  the module given the exact transforms, labelled as the upper bound it is. PSNR, SSIM, LPIPS
  (when its AlexNet file exists), Deg and identity consistency (with ``--arcface``), LMD and TLME
  (MTCNN, ships offline), E_warp with the exact flow of the clips' transforms; a last row gives
  E_warp of the ground-truth clips themselves, the floor below which output is smoother than the
  truth's own motion.
* **End to end** (``--end-to-end K``): K held-out faces made into whole-frame clips
  (:func:`gfpgan.tools.synth_video.make_clip_pair`: the face drifting, turning and zooming, blur,
  downsampling, fresh noise per frame, an mp4 encode), each restored through ``gfpgan.infer_video``
  (detection, tracking, alignment, paste) frame by frame and with the temporal file, scored
  against its clean clip in the face's window (PSNR, SSIM, warping error with the clean clip's
  flow), as the demo scores its clip.
* **Cost**: seconds per face of one forward pass of the base against one step of the temporal
  module (state carried from the previous step, so the gate and the warps do their full work),
  batch 1, interleaved A/B/B/A so machine noise hits both alike, median over ``--repeats``. At the
  model's size, and with ``--cost-512`` also for the GFPGANv1.4 architecture (random weights)
  with the adapter of the 512 recipe (``options/train_temporal_512.yml``'s ``network_g``, or
  ``--adapter-512``): what the module costs at the size people restore at. The state's bytes
  per track (constant: memory stays flat in video length) are reported too.

Prints one Markdown table (rows: frame by frame, temporal, change) and writes ``--json``.
"""

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command
from gfpgan.tools.make_video_testset import add_clip_arguments

ROWS = (("per_frame", "frame by frame"), ("temporal", "temporal (estimated motion)"),
        ("temporal_gt_motion", "temporal, exact motion (upper bound)"))
COLUMNS = (("psnr", "PSNR ↑", "{:.3f}"), ("ssim", "SSIM ↑", "{:.4f}"), ("lpips", "LPIPS ↓", "{:.4f}"),
           ("ewarp", "E_warp ↓", "{:.3f}"), ("tlme", "TLME ↓", "{:.3f}"), ("deg", "Deg ↓", "{:.2f}"),
           ("idc_excess", "ID cons. ↓", "{:.2f}"), ("sec_per_face", "s/face ↓", "{:.4f}"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gfpgan.tools.bench_temporal",
                                description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="the base: run folder, checkpoint or model card")
    p.add_argument("--temporal", required=True, help="temporal file trained on that base")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--faces", help="folder of held-out aligned faces to build the clips from")
    src.add_argument("--set", help="an existing video test set (gt/, lq/, manifest.json)")
    add_clip_arguments(p, size=0, when="with --faces: ")
    p.add_argument("--arcface", default=None, help="arcface_resnet18.pth: adds Deg and identity consistency")
    p.add_argument("--lpips-trunk", default=None,
                   help="alexnet-owt-7be5be79.pth (default: $TORCH_HOME/hub/checkpoints/); skipped if "
                        "missing")
    p.add_argument("--out", default="results/bench_temporal", help="work folder (set, restored frames)")
    p.add_argument("--repeats", type=int, default=30, help="timed steps per contender")
    p.add_argument("--gt-motion", action="store_true",
                   help="also run the module with the set's exact transforms: an upper bound (the same "
                        "transforms define E_warp's flow), reported in a row of its own")
    p.add_argument("--end-to-end", type=int, default=0, metavar="K",
                   help="also restore K held-out faces as whole-frame clips through gfpgan.infer_video")
    p.add_argument("--e2e-frames", type=int, default=24, help="frames per end-to-end clip")
    p.add_argument("--e2e-size", type=int, default=96, help="frame side of the end-to-end clips")
    p.add_argument("--e2e-degrade", type=float, nargs=4, default=(1.5, 3.0, 10.0, 60),
                   metavar=("BLUR", "SCALE", "NOISE", "JPEG"),
                   help="the end-to-end clips' degradation: blur sigma, down-up factor, noise sigma "
                        "(fresh every frame), JPEG quality (every frame)")
    p.add_argument("--e2e-clip", action="append", default=[], metavar="DIR",
                   help="also restore this clean.mp4/degraded.mp4 pair (e.g. the demo's clip) end to end; "
                        "repeatable, reported in a table of its own")
    p.add_argument("--cost-512", action="store_true",
                   help="also time the 512 recipe's module on the 512 px architecture")
    p.add_argument("--cost-512-frames", type=int, default=8, help="frames of the --cost-512 pipeline clip")
    p.add_argument("--adapter-512", default="options/train_temporal_512.yml",
                   help="the training options whose network_g is the 512 px module timed by --cost-512")
    p.add_argument("--json", default=None, help="also write the results here")
    add_common_arguments(p, device=True)
    return p


# ------------------------------------------------------------------------------ quality
def quality(args, size: int) -> Dict[str, Dict[str, float]]:
    """{'per_frame', 'temporal'[, 'temporal_gt_motion'], 'ground_truth'}: metrics on the held-out
    set, one process; the module gets the estimated motion unless ``args.gt_motion`` adds the
    exact-motion row."""
    from gfpgan.engine.eval_common import run_on_ranks
    from gfpgan.engine.video_eval import VIDEO_SCHEMA, evaluate_video, metric_row
    from gfpgan.options import validate

    out = Path(args.out)
    if args.set:
        root = Path(args.set)
    else:
        from gfpgan.tools.make_video_testset import make_video_testset

        root = out / f"set_{size}px_{args.frames}f_seed{args.seed}"  # the work folder's: made anew each run
        make_video_testset(args.faces, root, args.start, args.num, frames=args.frames, size=args.size or size,
                           seed=args.seed, crf=args.crf, codec_prob=args.codec_prob, overwrite=True,
                           progress=False)
    opt = validate({
        "mode": "video", "name": "bench_temporal", "model": args.model, "temporal": args.temporal,
        "device": args.device, "save_images": False, "datasets": {"heldout": {"dataroot": str(root)}},
        "metrics": {"psnr": {"crop_border": 0, "test_y_channel": False},
                    "ssim": {"crop_border": 0, "test_y_channel": False},
                    "lpips": {"net": "alex", "trunk_path": args.lpips_trunk},
                    "deg": {"arcface_path": args.arcface} if args.arcface else None,
                    "lmd": {"detector": "mtcnn"}},
        "path": {"results_root": str(out)}}, VIDEO_SCHEMA, where="bench_temporal")
    rows = {}

    runs = [("per_frame", True, "estimated"), ("temporal", False, "estimated")]
    if args.gt_motion:
        runs.append(("temporal_gt_motion", False, "gt"))

    def body(dist, say):
        for mode, off, motion in runs:
            result = evaluate_video(dict(opt, motion=motion), dist, force=True, no_temporal=off, say=say)
            if not result:
                continue
            if result["mode"] != mode:  # never a silent mix of the two motions
                raise UserError(f"internal: the {mode} run came back as {result['mode']}.")
            rows[mode] = metric_row(result, "heldout")
            rows["ground_truth"] = {"ewarp": rows[mode].get("ewarp_gt")}
    run_on_ranks(args.device, body)
    return rows


# ------------------------------------------------------------------------------ end to end
def end_to_end(args, clips: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, float]]:
    """Whole-frame clips through ``gfpgan.infer_video``: means over the clips of the face window's
    PSNR, SSIM and warping error, frame by frame vs temporal (and the input).

    Args:
        args: the parsed flags (``--end-to-end K`` held-out faces from ``--faces`` made into clips).
        clips: instead, folders that already hold a ``clean.mp4`` / ``degraded.mp4`` pair
            (``gfpgan.tools.synth_video``, the demo's clip).
    """
    import numpy as np

    from gfpgan.demo import _face_window, region_metrics
    from gfpgan.images import IMAGE_EXTENSIONS, read_image
    from gfpgan.infer_video import main as infer_video
    from gfpgan.inference.faces.detection import build_detector
    from gfpgan.tools.compare_videos import read_frames
    from gfpgan.tools.synth_video import make_clip_pair

    pairs = []
    if clips:
        for i, c in enumerate(clips):
            c = Path(c)
            if not ((c / "clean.mp4").is_file() and (c / "degraded.mp4").is_file()):
                raise UserError(f"--e2e-clip {c} holds no clean.mp4 and degraded.mp4 pair.")
            pairs.append((Path(args.out) / "end_to_end" / f"clip{i}_{c.name}",
                          {"clean": str(c / "clean.mp4"), "degraded": str(c / "degraded.mp4")}))
    else:
        if not args.faces:
            raise UserError("--end-to-end makes its clips from --faces (a folder of held-out faces).")
        faces = sorted(p for p in Path(args.faces).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        blur, scale, noise, jpeg = args.e2e_degrade
        for i, face in enumerate(faces[args.start:][:args.end_to_end]):
            work = Path(args.out) / "end_to_end" / face.stem
            pairs.append((work, make_clip_pair(work / "clip", photo=read_image(face), frames=args.e2e_frames,
                                               size=args.e2e_size, seed=args.seed + i, blur_sigma=blur,
                                               scale=scale, noise=noise, jpeg=int(jpeg))))
    det = build_detector("mtcnn")
    per: Dict[str, list] = {"input": [], "per_frame": [], "temporal": []}
    for work, clip in pairs:
        work.mkdir(parents=True, exist_ok=True)
        common = ["-i", clip["degraded"], "--model", args.model, "--device", args.device, "--no-progress",
                  "--codec-option", "x264-params=mbtree=0"]
        for mode, extra in (("per_frame", ["--no-temporal"]), ("temporal", ["--temporal", args.temporal])):
            (work / f"{mode}.mp4").unlink(missing_ok=True)
            rc = infer_video([*common, "-o", str(work / f"{mode}.mp4"), *extra])
            if rc:
                raise UserError(f"gfpgan.infer_video failed on {clip['degraded']} ({mode}).")
        gt = read_frames(clip["clean"])
        windows = [_face_window(det, g, grow=1.4) for g in gt]
        per["input"].append(region_metrics(read_frames(clip["degraded"]), gt, windows))
        for mode in ("per_frame", "temporal"):
            per[mode].append(region_metrics(read_frames(work / f"{mode}.mp4"), gt, windows))
    return {mode: {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} | {"clips": len(rows)}
            for mode, rows in per.items() if rows}


def e2e_table(e: Dict[str, Dict[str, float]], title: str = "end to end (infer_video)") -> str:
    """Markdown of :func:`end_to_end`'s means, with the change of temporal over frame by frame."""
    cols = (("face_psnr", "face PSNR ↑", "{:.3f}"), ("face_ssim", "face SSIM ↑", "{:.4f}"),
            ("face_warping_error", "face warping error ↓", "{:.4f}"))
    lines = [f"| {title}, {e['temporal']['clips']} clip(s) | " + " | ".join(h for _, h, _ in cols) + " |",
             "|---" + "|---:" * len(cols) + "|"]
    labels = (("input", "degraded input"), ("per_frame", "frame by frame"), ("temporal", "temporal"))
    for name, label in labels:
        lines.append(f"| {label} | " + " | ".join(f.format(e[name][k]) for k, _, f in cols) + " |")
    a, b = e["per_frame"], e["temporal"]
    lines.append("| change | " + " | ".join(
        f"{100 * (b[k] / a[k] - 1):+.1f}%" if k == "face_warping_error"
        else ("{:+" + f[2:]).format(b[k] - a[k]) for k, _, f in cols) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ cost
@torch.inference_mode()
def time_per_face(net, device: torch.device, repeats: int) -> Dict[str, float]:
    """Median seconds of one base forward vs one temporal step (batch 1, interleaved A/B/B/A)."""
    torch.manual_seed(0)
    size = net.out_size
    x = torch.rand(1, 3, size, size, device=device) * 2 - 1
    theta = torch.tensor([[[0.999, -0.02, 0.6], [0.02, 0.999, -0.4]]], device=device)  # a small move
    _, _, state = net(x, None, theta, randomize_noise=False)  # valid state: the gate and warps run
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def base():
        net.base(x, return_rgb=False, randomize_noise=False)

    def step():
        net(x, state, theta, randomize_noise=False)

    times: Dict[str, list] = {"per_frame": [], "temporal": []}
    for fn in (base, step, base, step):  # warm-up
        fn()
    for r in range(repeats):
        for name, fn in ((("per_frame", base), ("temporal", step)) if r % 2 == 0 else
                         (("temporal", step), ("per_frame", base))):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    state_bytes = sum(t.numel() * t.element_size() for t in (*state.hidden, state.prev_input))
    pf, tp = statistics.median(times["per_frame"]), statistics.median(times["temporal"])
    return {"size": size, "per_frame_s": pf, "temporal_s": tp, "overhead": tp / pf - 1,
            "state_bytes_per_track": state_bytes}


def adapter_at_512(options: str, base: Optional[torch.nn.Module] = None) -> torch.nn.Module:
    """The 512 recipe's module (``network_g`` of the training options ``options``) around the
    GFPGANv1.4 architecture (``base``, or one with random weights), its own weights random (its
    zero projections made non-zero: the cost of a trained module, whose every path runs)."""
    from gfpgan.archs.temporal_arch import TemporalGFPGAN
    from gfpgan.model_cards import load_card
    from gfpgan.options import load_yaml
    from gfpgan.registry import ARCH_REGISTRY

    kwargs = {k: v for k, v in dict(load_yaml(options)["network_g"]).items() if k != "type"}
    if base is None:
        card = load_card("GFPGANv1.4")
        torch.manual_seed(0)
        base = ARCH_REGISTRY.build({"type": card.arch, **card.kwargs})
    net = TemporalGFPGAN(base, **kwargs).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if not name.startswith("base.") and not p.any():
                p.normal_(0.0, 1e-3)
    return net


class _Clock:
    """A :class:`~gfpgan.inference.timing.StageTimer` that sums each stage's busy seconds."""

    def __init__(self):
        import threading

        self.busy: Dict[str, float] = {}
        self._lock = threading.Lock()

    def stage(self, name: str):
        import contextlib

        @contextlib.contextmanager
        def run():
            t = time.perf_counter()
            try:
                yield
            finally:
                with self._lock:
                    self.busy[name] = self.busy.get(name, 0.0) + time.perf_counter() - t
        return run()


def pipeline_cost_512(args) -> Dict[str, float]:
    """Seconds per face in the video pipeline at 512 px: the GFPGANv1.4 architecture (random
    weights) frame by frame vs the 512 recipe's module around it, over one whole-frame clip (the
    demo's moving face, ``--cost-512-frames`` frames), each restorer run twice, A/B/B/A; the
    generator stage (the forward passes with the step's warps, gate and bookkeeping) and the
    whole pipeline's wall time per face, at the pipeline's default precision."""
    from gfpgan.checkpoint import save_network
    from gfpgan.inference.job.segments import images
    from gfpgan.inference.tracks.temporal_step import temporal_restorer
    from gfpgan.inference.tracks.video_restorer import VideoFaceRestorer
    from gfpgan.model_cards import load_card
    from gfpgan.registry import ARCH_REGISTRY
    from gfpgan.temporal_file import save_temporal
    from gfpgan.tools.compare_videos import read_frames
    from gfpgan.tools.synth_video import make_clip_pair

    work = Path(args.out) / "cost_512"
    card = load_card("GFPGANv1.4")
    torch.manual_seed(0)
    base = ARCH_REGISTRY.build({"type": card.arch, **card.kwargs}).eval()
    save_network(work / "base.safetensors", base, card.arch, card.kwargs)
    save_temporal(work / "temporal.safetensors", adapter_at_512(args.adapter_512, base), "base.safetensors")
    clip = make_clip_pair(work / "clip", frames=args.cost_512_frames, size=384)
    frames = read_frames(clip["degraded"])
    sums = {"per_frame": [0.0, 0.0, 0], "temporal": [0.0, 0.0, 0]}  # generator s, wall s, faces

    def run(mode, count=True):
        from gfpgan.inference.tracks.sinks import FaceList

        clock, faces = _Clock(), FaceList()
        kw = dict(device=args.device, timer=clock, sinks=[faces])
        r = (VideoFaceRestorer(str(work / "base.safetensors"), **kw) if mode == "per_frame" else
             temporal_restorer(str(work / "temporal.safetensors"), str(work / "base.safetensors"), **kw))
        t0 = time.perf_counter()
        images(r.process(iter(frames)))
        wall = time.perf_counter() - t0
        if not count:
            return
        s = sums[mode]
        s[0], s[1], s[2] = s[0] + clock.busy.get("generator", 0.0), s[1] + wall, s[2] + len(faces.records)
    run("per_frame", count=False)  # warm-up: allocations, the detector's first call
    for mode in ("per_frame", "temporal", "temporal", "per_frame"):
        run(mode)
    pf, tp = (sums[m][0] / sums[m][2] for m in ("per_frame", "temporal"))
    wpf, wtp = (sums[m][1] / sums[m][2] for m in ("per_frame", "temporal"))
    return {"size": 512, "frames": len(frames), "per_frame_s": pf, "temporal_s": tp, "overhead": tp / pf - 1,
            "per_frame_wall_s": wpf, "temporal_wall_s": wtp, "wall_overhead": wtp / wpf - 1}


def cost(args) -> Dict[str, Dict[str, float]]:
    from gfpgan.engine.eval_common import model_spec
    from gfpgan.inference.tracks.temporal_step import load_temporal_net

    device = torch.device(args.device)
    net = load_temporal_net(args.temporal, model_spec(args.model)).to(device).eval()
    rows = {"model": time_per_face(net, device, args.repeats)}
    if args.cost_512:
        rows["512"] = time_per_face(adapter_at_512(args.adapter_512).to(device), device, args.repeats)
        rows["512_pipeline"] = pipeline_cost_512(args)
    return rows


# ------------------------------------------------------------------------------ report
def table(q: Dict[str, Dict[str, float]]) -> str:
    """Markdown: a row per contender and the change (difference; E_warp and s/face also in %)."""
    cols = [c for c in COLUMNS if any(c[0] in r and r[c[0]] is not None for r in q.values())]
    lines = ["| | " + " | ".join(h for _, h, _ in cols) + " |", "|---" + "|---:" * len(cols) + "|"]
    for name, label in ROWS + (("ground_truth", "ground truth (E_warp floor)"),):
        if name not in q:
            continue
        lines.append(f"| {label} | " + " | ".join(
            fmt.format(q[name][k]) if q[name].get(k) is not None else "–" for k, _, fmt in cols) + " |")
    change = []
    for k, _, fmt in cols:
        a, b = q["per_frame"].get(k), q["temporal"].get(k)
        if a is None or b is None:
            change.append("–")
        elif k in ("ewarp", "sec_per_face", "tlme") and a:
            change.append(f"{100 * (b / a - 1):+.1f}%")
        else:
            change.append(("{:+" + fmt[2:]).format(b - a))
    lines.append("| change (estimated motion) | " + " | ".join(change) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeats < 1:
        raise UserError(f"--repeats must be at least 1, got {args.repeats}.")
    from gfpgan.temporal_file import read_temporal_config

    read_temporal_config(args.temporal)  # a clear sentence for a missing or foreign file, before any work
    costs = cost(args)  # also checks that the temporal file fits the base
    q = quality(args, costs["model"]["size"])
    text = table(q)
    e2e = end_to_end(args) if args.end_to_end else None
    if e2e:
        text += "\n" + e2e_table(e2e)
    given = end_to_end(args, args.e2e_clip) if args.e2e_clip else None
    if given:
        text += "\n" + e2e_table(given, "given clips (infer_video)")
    print(text, end="")
    for name, c in costs.items():
        if name == "512_pipeline":
            print(f"cost at 512 px in the video pipeline ({c['frames']} frames, GFPGANv1.4 "
                  f"architecture, random, {args.adapter_512}'s module): generator stage "
                  f"{c['per_frame_s']:.3f} s/face frame by frame, {c['temporal_s']:.3f} s/face temporal "
                  f"({100 * c['overhead']:+.1f}%); whole "
                  f"pipeline {c['per_frame_wall_s']:.3f} vs {c['temporal_wall_s']:.3f} s/face "
                  f"({100 * c['wall_overhead']:+.1f}%)")
            continue
        what = ("the model" if name == "model"
                else f"GFPGANv1.4 architecture, random, {args.adapter_512}'s module")
        print(f"cost at {c['size']} px ({what}): "
              f"{1000 * c['per_frame_s']:.2f} ms frame by frame, {1000 * c['temporal_s']:.2f} ms temporal "
              f"({100 * c['overhead']:+.1f}%); state {c['state_bytes_per_track'] / 1024:.0f} KiB per track")
    if args.json:
        from gfpgan.files import write_text_atomic

        write_text_atomic(args.json, json.dumps({
            "model": args.model, "temporal": args.temporal, "device": args.device,
            "threads": torch.get_num_threads(),
            "motion": "estimated" + (" (+ gt upper bound)" if args.gt_motion else ""),
            "quality": q, "end_to_end": e2e, "given_clips": given, "cost": costs, "table": text}, indent=2))
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
