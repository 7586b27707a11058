"""The main job, offline, end to end: build a face set, train, export, restore a video, evaluate.

    python -m gfpgan.demo                      # ~10 minutes on 2 CPU cores, no GPU, no internet
    python -m gfpgan.demo --weights GFPGANv1.4 # skip training: use official weights (card or path)

Steps (each one is a command of the project, run as a subprocess exactly as a user would):

1. a small real-face training set from what ships offline: 80 of the LFW faces of scikit-image and
   aligned, jittered crops of its astronaut portrait (``datasets/demo_faces``); the other 20 LFW
   faces are held out for the temporal benchmark (``datasets/demo_faces_heldout``);
2. the tiny recipe (``options/train_gfpgan_tiny.yml``) trained on it (``gfpgan.train``);
3. the EMA generator exported in the self-describing format (``gfpgan.tools.export``);
4. the temporal module trained around that generator, frozen (``options/train_temporal_tiny.yml``),
   its file copied beside it (``model/temporal.safetensors``);
5. a short clip of a real face moving, clean and degraded, with audio (``gfpgan.tools.synth_video``);
6. the degraded clip restored through the video pipeline frame by frame, with the temporal module,
   and with stabilisation off (``gfpgan.infer_video``: detection, tracking, landmark smoothing,
   paste-back, audio kept);
7. every restoration and the degraded input measured against the clean clip, over the whole frame
   and in the face's window: PSNR, SSIM, LPIPS (when its AlexNet file exists), flow-warping
   error, landmark jitter (``gfpgan.tools.compare_videos``), written as JSON and Markdown;
8. frame by frame vs temporal on synthetic clips of the held-out faces, the module given the
   motion the pipeline estimates (and the exact-motion upper bound beside it), and on five of them
   made into whole-frame clips restored end to end through ``infer_video``
   (``gfpgan.tools.bench_temporal``: PSNR, SSIM, E_warp and its ground-truth floor, TLME, time per face);
9. personalization (``gfpgan.tools.bench_personal``): a clip of a person the base never saw
   (matplotlib's grace_hopper.jpg), near and sharp, then far and degraded; the base is tuned on the
   faces the video itself offers (the near ones), and the far frames are restored with the base and
   with what it learned;

then one PNG with the training curves and degraded / restored / ground-truth strips of frames.

The training set and the test clip of steps 5-7 show the same person (the astronaut): they prove the
pipeline works end to end, not that the tiny model generalises; step 9's person is not in the
training set.
"""

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

REPO = Path(__file__).resolve().parent.parent


def _step(title: str) -> float:
    print(f"\n=== {title}", flush=True)
    return time.time()


def _run(args: List[str], procs: int = 1) -> None:
    """Run ``python -m ...`` (or torchrun with ``procs`` processes) with a list argv, never a shell.

    A failure stops the demo with its message.
    """
    launcher = (["torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", "-m"]
                if procs > 1 else [])
    cmd = [sys.executable, "-m", *launcher, *args]
    print("$ python -m " + " ".join(cmd[2:]), flush=True)
    # one thread per process: OpenMP threads that wait on each other cost more than they give on a
    # small CPU, and the processes already use the cores
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    if subprocess.run(cmd, cwd=REPO, env=env).returncode != 0:
        raise UserError(f"the step 'python -m {args[0]}' failed (see its message above); "
                        f"rerun the demo with --debug for details.")


# ------------------------------------------------------------------------------ 1. face set
def _write_lfw(dest: Path, first: int, stop: int, size: int) -> int:
    """LFW faces ``first``..``stop``-1 of scikit-image's subset (25x25 gray), resized, as RGB PNGs."""
    import cv2
    import skimage.data

    from gfpgan.images import write_image_atomic

    dest.mkdir(parents=True, exist_ok=True)
    faces = skimage.data.lfw_subset()
    for i in range(first, stop):
        img = (faces[i] * 255).round().astype(np.uint8)
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)
        write_image_atomic(dest / f"lfw_{i:03d}.png", np.repeat(img[:, :, None], 3, axis=2))
    return stop - first


def build_face_set(dest: Path, size: int, jittered: int = 120, seed: int = 0, heldout: Optional[Path] = None,
                   lfw_train: int = 80) -> int:
    """Write LFW faces 0..``lfw_train``-1 (resized) and ``jittered`` aligned astronaut crops to ``dest``,
    and the other LFW faces (of the subset's 100; the rest are non-faces) to ``heldout``: test faces
    that no training sees.

    Returns:
        The number of training images (existing sets of the same recipe are reused).
    """
    import skimage.data

    from gfpgan.images import write_image_atomic
    from gfpgan.inference.faces.alignment import face_template, similarity_lstsq, warp_face
    from gfpgan.inference.faces.detection import build_detector

    if heldout is not None and not (heldout / f".complete_lfw{lfw_train}-99_{size}").exists():
        _write_lfw(heldout, lfw_train, 100, size)
        (heldout / f".complete_lfw{lfw_train}-99_{size}").touch()
    marker = dest / f".complete_lfw{lfw_train}_astronaut{jittered}_{size}"  # names what the set holds
    if marker.exists():
        return len(list(dest.glob("*.png")))
    for old in list(dest.glob("lfw_[0-9][0-9][0-9].png")) + list(dest.glob("astronaut_[0-9][0-9][0-9].png")):
        old.unlink()  # an older recipe's set (it may hold today's held-out faces)
    n = _write_lfw(dest, 0, lfw_train, size)
    photo = skimage.data.astronaut()
    lm = build_detector("mtcnn").detect([photo])[0].landmarks[0].astype(np.float64)
    rng = np.random.default_rng(seed)
    template = face_template(size)
    for i in range(jittered):  # the FFHQ alignment with a small random similarity on top
        th, s = rng.uniform(-0.12, 0.12), rng.uniform(0.92, 1.08)
        rot = s * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        target = (template - size / 2) @ rot.T + size / 2 + rng.uniform(-0.04, 0.04, 2) * size
        crop = warp_face(photo, similarity_lstsq(lm, target), size, border="reflect")
        gain = rng.uniform(0.85, 1.15, 3)  # white balance / exposure variety
        crop = np.clip(crop.astype(np.float32) * gain, 0, 255).astype(np.uint8)
        write_image_atomic(dest / f"astronaut_{i:03d}.png", crop)
        n += 1
    marker.touch()
    return n


# ------------------------------------------------------------------------------ 4. temporal module
# the tiny recipe trains 600 iterations on 6-frame clips (7 min on 2 cores); the demo trains 100 on
# 4-frame clips to stay within 12 minutes: at this scale the module gains about as little either way
# (README, Benchmarks), and it still shows what it does to flicker
TEMPORAL_ITERS = 100
TEMPORAL_FRAMES = 4


def train_temporal(a, base: Path, faces: Path, run_dir: Path, dest: Path, procs: int) -> Path:
    """Train the temporal recipe (options/train_temporal_tiny.yml) around the frozen ``base`` on
    ``faces``; copy its temporal file to ``dest`` and return it."""
    import shutil

    from gfpgan.files import atomic_path

    iters = a.temporal_iters
    _run(["gfpgan.train", "-opt", "options/train_temporal_tiny.yml", "--device", a.device, "--force-yml",
          f"name={run_dir.name}", f"path.experiments_root={run_dir.parent}",
          f"path.pretrain_network_g={base}",
          f"datasets.train.dataroot_gt={faces}", f"datasets.val.dataroot_gt={faces}",
          f"datasets.train.out_size={a.size}", f"datasets.val.out_size={a.size}",
          f"datasets.train.batch_size_per_gpu={max(1, 4 // procs)}",
          f"datasets.train.num_frames={TEMPORAL_FRAMES}", f"train.total_iter={iters}",
          f"train.scheduler.milestones=[{int(iters * 0.75)}]", f"logger.save_checkpoint_freq={iters}",
          f"val.val_freq={iters}", f"logger.print_freq={max(1, iters // 10)}", f"logger.image_freq={iters}",
          "--auto-resume"], procs)
    with atomic_path(dest) as tmp:
        shutil.copyfile(run_dir / "models" / "temporal.safetensors", tmp)
    return dest


# ------------------------------------------------------------------------------ 8. the figure
def training_curves(run_dir: Path) -> dict:
    """{tag: (steps, values)} of the TensorBoard scalars under ``run_dir`` (empty if none)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return {}
    curves = {}
    for ev in sorted(run_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(ev.parent), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            if tag.startswith(("losses/", "loss/", "train/")) or "l_g_" in tag or "l_d" in tag:
                pts = acc.Scalars(tag)
                curves[tag] = ([p.step for p in pts], [p.value for p in pts])
        break
    return curves


def make_figure(path: Path, curves: dict, strips: Sequence[Sequence[np.ndarray]], labels: Sequence[str],
                table: str) -> None:
    """One PNG: training curves on top, rows of frames (one row per label) below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = len(strips[0])
    fig = plt.figure(figsize=(2.2 * cols, 3.2 + 2.2 * len(strips)))
    grid = fig.add_gridspec(1 + len(strips), cols, height_ratios=[1.5] + [1] * len(strips))
    ax = fig.add_subplot(grid[0, :])
    for tag, (steps, values) in sorted(curves.items()):
        if len(steps) > 1:
            k = max(1, len(values) // 40)  # light smoothing for readability
            v = np.convolve(values, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1:], v, label=tag.split("/")[-1])
    ax.set_xlabel("iteration")
    ax.set_yscale("log")
    ax.set_title("training losses" if curves else "training losses (official weights: no training)")
    if curves:
        ax.legend(fontsize=7, ncol=4)
    for r, (row, label) in enumerate(zip(strips, labels)):
        for c, img in enumerate(row):
            a = fig.add_subplot(grid[1 + r, c])
            a.imshow(img)
            a.set_xticks([])
            a.set_yticks([])
            if c == 0:
                a.set_ylabel(label)
    fig.suptitle(table, fontsize=8, family="monospace", y=0.995, va="top")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    from gfpgan.files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def lpips_scores(videos: dict, gt: List[np.ndarray]) -> dict:
    """Mean LPIPS (AlexNet) of each version against ``gt``; {} with one line if the trunk is missing."""
    from gfpgan.metrics.common import MissingWeightsError
    from gfpgan.metrics.lpips_metric import LPIPSMetric

    try:
        metric = LPIPSMetric("alex")
    except MissingWeightsError as exc:
        print(exc)
        return {}
    return {k: float(np.mean([metric(a, b) for a, b in zip(frames, gt)])) for k, frames in videos.items()}


def _face_window(det, frame: np.ndarray, grow: float = 1.8):
    """(y0, y1, x0, x1) of a square around the largest face of ``frame`` (the whole frame if none)."""
    h, w = frame.shape[:2]
    found = det.detect([frame])[0]
    if not len(found):
        return 0, h, 0, w
    x1, y1, x2, y2 = found.boxes[0]
    cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, grow * max(x2 - x1, y2 - y1) / 2
    x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
    return y0, int(min(h, cy + half)), x0, int(min(w, cx + half))


# ------------------------------------------------------------------------------ 7. evaluation
def region_metrics(frames: List[np.ndarray], gt: List[np.ndarray], windows: List[tuple]) -> dict:
    """PSNR, SSIM and warping error (flow from the GT) inside each frame's face window."""
    from gfpgan.metrics.psnr_ssim import calculate_psnr, calculate_ssim
    from gfpgan.metrics.temporal import warping_error

    crops = [(f[y0:y1, x0:x1], g[y0:y1, x0:x1]) for f, g, (y0, y1, x0, x1) in zip(frames, gt, windows)]
    masks = []
    for f, (y0, y1, x0, x1) in zip(frames, windows):
        m = np.zeros(f.shape[:2], bool)
        m[y0:y1, x0:x1] = True
        masks.append(m)
    return {"face_psnr": float(np.mean([calculate_psnr(a, b) for a, b in crops])),
            "face_ssim": float(np.mean([calculate_ssim(a, b) for a, b in crops])),
            "face_warping_error": warping_error(frames, flow_frames=gt, regions=masks)["mean"]}


COLUMNS = ("psnr", "ssim", "lpips", "warping_error", "landmark_jitter", "face_psnr", "face_ssim",
           "face_warping_error")


def metrics_table(metrics: Dict[str, dict]) -> str:
    cols = [c for c in COLUMNS if any(c in m for m in metrics.values())]
    lines = ["| version | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for k, m in metrics.items():
        lines.append(f"| {k} | " + " | ".join(f"{m[c]:.4f}" if c in m else "-" for c in cols) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ the job
def main(argv: Optional[Sequence[str]] = None) -> int:  # noqa: C901 (one step after the other)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="results/demo", help="output folder")
    p.add_argument("--weights", help="skip training: a model card name or a checkpoint path")
    p.add_argument("--iters", type=int, default=900,
                   help="training iterations of the tiny recipe (its own total_iter is 1000)")
    p.add_argument("--temporal-iters", type=int, default=TEMPORAL_ITERS,
                   help="training iterations of the temporal module (0: no temporal module)")
    p.add_argument("--no-personal", dest="personal", action="store_false",
                   help="skip the personalization step (9)")
    p.add_argument("--size", type=int, default=64, help="face size of the tiny model")
    p.add_argument("--gan-weight", type=float, default=0.01, help="weight of the global GAN loss")
    p.add_argument("--frames", type=int, default=48, help="frames of the test clip")
    p.add_argument("--frame-size", type=int, default=192, help="side of the test clip's frames")
    p.add_argument("--procs", type=int, default=min(2, os.cpu_count() or 1),
                   help="training processes on a CPU (torchrun, gloo; global batch 8 is split)")
    p.add_argument("--name", default="demo_tiny", help="experiment name (run folder under --runs-dir)")
    p.add_argument("--runs-dir", default="experiments", help="where the training run folders go")
    p.add_argument("--data-dir", default="datasets/demo_faces", help="where the face set is built")
    p.add_argument("--heldout-dir", default="datasets/demo_faces_heldout",
                   help="where the held-out faces of the temporal benchmark go")
    add_common_arguments(p, device=True)
    a = p.parse_args(argv)
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    summary: dict = {"steps": {}}
    procs = a.procs if a.device == "cpu" else 1

    run_dir = Path(a.runs_dir).resolve() / a.name
    temporal = None
    if a.weights:
        model = a.weights
        if not Path(model).is_file():  # else a model card whose weights file must be present
            if Path(model).suffix in (".pth", ".safetensors", ".onnx") or "/" in model:
                raise UserError(f"weights file {model} not found; pass an existing checkpoint or a "
                                f"model card name such as GFPGANv1.4.")
            from gfpgan.model_cards import load_card, resolve_weights

            resolve_weights(load_card(model))
        summary["model"] = f"given: {model}"
        # a model card's face size decides the clip scale; ours may differ from the tiny model
    else:
        t = _step("1/9 building a real-face training set (and held-out test faces)")
        faces, heldout = Path(a.data_dir).resolve(), Path(a.heldout_dir).resolve()
        n = build_face_set(faces, a.size, heldout=heldout)
        print(f"{n} faces in {faces}, held-out faces in {heldout}")
        summary["steps"]["face_set_s"] = round(time.time() - t, 1)

        t = _step("2/9 training the tiny recipe")
        _run(["gfpgan.train", "-opt", "options/train_gfpgan_tiny.yml", "--device", a.device, "--force-yml",
              f"name={a.name}", f"path.experiments_root={run_dir.parent}",
              f"datasets.train.dataroot_gt={faces}",
              f"train.total_iter={a.iters}",
              f"train.scheduler.milestones=[{int(a.iters * 0.75)}]",
              f"train.remove_pyramid_loss={a.iters // 2}", f"logger.save_checkpoint_freq={a.iters}",
              f"logger.print_freq={max(1, a.iters // 10)}", f"logger.image_freq={a.iters}",
              f"datasets.train.out_size={a.size}", f"network_g.out_size={a.size}",
              f"network_d.out_size={a.size}", f"datasets.train.batch_size_per_gpu={max(1, 8 // procs)}",
              # a minutes-long run is judged on fidelity (PSNR): a lighter adversarial term
              f"train.gan_opt.loss_weight={a.gan_weight}",
              "--auto-resume"], procs)
        summary["steps"]["train_s"] = round(time.time() - t, 1)

        t = _step("3/9 exporting the EMA generator")
        _run(["gfpgan.tools.export", "--ckpt", str(run_dir), "--out", str(out / "model"),
              "--formats", "safetensors", "--name", "generator"])
        model = str(out / "model" / "generator.safetensors")
        summary["model"] = model
        summary["steps"]["export_s"] = round(time.time() - t, 1)

        if a.temporal_iters:
            t = _step("4/9 training the temporal module around the frozen tiny model")
            temporal = train_temporal(a, Path(model), faces, run_dir.parent / f"{a.name}_temporal",
                                      out / "model" / "temporal.safetensors", procs)
            summary["temporal"] = str(temporal)
            summary["steps"]["train_temporal_s"] = round(time.time() - t, 1)

    t = _step("5/9 making a degraded clip of a moving face (with audio)")
    from gfpgan.tools.synth_video import make_clip_pair

    clip = make_clip_pair(out / "clip", frames=a.frames, size=a.frame_size, jpeg=70)
    summary["clip"] = clip
    summary["steps"]["clip_s"] = round(time.time() - t, 1)

    t = _step("6/9 restoring it through the video pipeline")
    # x264's MB-tree rate control is not reproducible run to run: without it, so is the demo
    common = ["--model", model, "--device", a.device, "--no-progress",
              "--codec-option", "x264-params=mbtree=0"]
    _run(["gfpgan.infer_video", "-i", clip["degraded"], "-o", str(out / "restored.mp4"),
          "--side-by-side", str(out / "side_by_side.mp4"), *common])
    if temporal is not None:
        _run(["gfpgan.infer_video", "-i", clip["degraded"], "-o", str(out / "restored_temporal.mp4"),
              "--temporal", str(temporal), *common])
    _run(["gfpgan.infer_video", "-i", clip["degraded"], "-o", str(out / "restored_no_stabilization.mp4"),
          "--no-stabilize", "--no-mask-smoothing", "--detect-every", "1", *common])
    summary["steps"]["restore_s"] = round(time.time() - t, 1)

    t = _step("7/9 evaluating against the clean clip (whole frame and face region)")
    from gfpgan.inference.faces.detection import build_detector
    from gfpgan.tools.compare_videos import measure, read_frames

    gt = read_frames(clip["clean"])
    versions = {"degraded input": read_frames(clip["degraded"]),
                "restored, frame by frame": read_frames(out / "restored.mp4")}
    if temporal is not None:
        versions["restored, temporal"] = read_frames(out / "restored_temporal.mp4")
    versions["restored, no stabilization"] = read_frames(out / "restored_no_stabilization.mp4")
    det = build_detector("mtcnn")
    windows = [_face_window(det, g, grow=1.4) for g in gt]  # per frame, around the GT's face
    metrics = {k: dict({m: v for m, v in measure(f, gt, det, None).items()
                        if not isinstance(v, (list, dict))}, **region_metrics(f, gt, windows))
               for k, f in versions.items()}
    for k, v in lpips_scores(versions, gt).items():
        metrics[k]["lpips"] = v
    table = metrics_table(metrics)
    print(table)
    summary["metrics"] = metrics
    summary["steps"]["evaluate_s"] = round(time.time() - t, 1)

    bench_table = ""
    if temporal is not None:
        t = _step("8/9 benchmark: frame by frame vs temporal on held-out clips")
        _run(["gfpgan.tools.bench_temporal", "--model", model, "--temporal", str(temporal),
              "--faces", str(Path(a.heldout_dir).resolve()), "--device", a.device, "--gt-motion",
              "--end-to-end", "3", "--out", str(out / "bench_temporal"),
              "--json", str(out / "bench_temporal.json")])
        bench = json.loads((out / "bench_temporal.json").read_text())
        summary["bench_temporal"] = {k: bench[k] for k in ("quality", "end_to_end", "cost")}
        bench_table = bench["table"]
        summary["steps"]["bench_temporal_s"] = round(time.time() - t, 1)
    personal_rows: List[List[np.ndarray]] = []
    personal_table = ""
    if a.personal:
        t = _step("9/9 personalization: a person the base never saw, learned from the video's near frames")
        _run(["gfpgan.tools.bench_personal", "--model", model, "--device", a.device, "--scopes", "adapter",
              "--near", str(max(2, a.frames // 2)), "--far", str(max(2, a.frames // 2)),
              "--out", str(out / "bench_personal"), "--json", str(out / "bench_personal.json")])
        bench = json.loads((out / "bench_personal.json").read_text())
        summary["bench_personal"] = {k: bench[k] for k in ("rows", "targets", "target_frames")}
        personal_table = bench["table"]
        from gfpgan.tools.bench_personal import far_strips

        personal_rows = far_strips(out / "bench_personal", bench["near"], "adapter")
        summary["steps"]["bench_personal_s"] = round(time.time() - t, 1)
    summary["total_s"] = round(time.time() - t0, 1)
    from gfpgan.files import write_bytes_atomic

    write_bytes_atomic(out / "metrics.json", json.dumps(summary, indent=2).encode())
    md = "## The demo clip (whole frame; face_*: the face's window)\n\n" + table + "\n"
    if bench_table:
        md += "\n## Held-out synthetic clips: frame by frame vs temporal\n\n" + bench_table
    if personal_table:
        md += ("\n## Personalization: an unseen person, near then far (face window; far frames never "
               "tuned on)\n\n" + personal_table + "\n")
    write_bytes_atomic(out / "metrics.md", md.encode())

    picks = np.linspace(0, len(gt) - 1, 5).round().astype(int)
    rows = [k for k in ("degraded input", "restored, frame by frame", "restored, temporal") if k in versions]
    crops = [_face_window(det, gt[i]) for i in picks]  # the same window in every row
    strips = [[frames[i][y0:y1, x0:x1] for i, (y0, y1, x0, x1) in zip(picks, crops)]
              for frames in [versions[k] for k in rows] + [gt]]
    labels = [k.replace("restored, ", "") for k in rows] + ["ground truth"]
    if personal_rows:
        strips += personal_rows
        labels += ["far: input", "far: base", "far: personalized", "far: truth"]
    make_figure(out / "demo.png", {} if a.weights else training_curves(run_dir), strips, labels, table)
    print(f"\nDone in {summary['total_s']:.0f} s. Outputs in {out}: restored.mp4, side_by_side.mp4, "
          f"{'restored_temporal.mp4, bench_temporal.json, ' if temporal else ''}"
          f"{'bench_personal.json, ' if personal_rows else ''}"
          f"restored_no_stabilization.mp4, metrics.json, metrics.md, demo.png")
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
