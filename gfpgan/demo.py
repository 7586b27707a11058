"""The main job, offline, end to end: build a face set, train, export, restore a video, evaluate.

    python -m gfpgan.demo                      # ~10 minutes on 2 CPU cores, no GPU, no internet
    python -m gfpgan.demo --weights GFPGANv1.4 # skip training: use official weights (card or path)

Steps (each one is a command of the project, run as a subprocess exactly as a user would):

1. a small real-face training set from what ships offline: the 200 LFW faces of scikit-image and
   aligned, jittered crops of its astronaut portrait (``datasets/demo_faces``);
2. the tiny recipe (``options/train_gfpgan_tiny.yml``) trained on it (``gfpgan.train``);
3. the EMA generator exported in the self-describing format (``gfpgan.tools.export``);
4. a short clip of a real face moving, clean and degraded, with audio (``gfpgan.tools.synth_video``);
5. the degraded clip restored through the video pipeline with stabilisation on and off
   (``gfpgan.infer_video``: detection, tracking, landmark smoothing, paste-back, audio kept);
6. both restorations and the degraded input measured against the clean clip: PSNR, SSIM, LPIPS
   (when its AlexNet file exists), flow-warping error, landmark jitter
   (``gfpgan.tools.compare_videos``), written as JSON and Markdown;
7. one PNG with the training curves and a degraded / restored / ground-truth strip of frames.

The training set and the test clip show the same person (the astronaut is the only colour face that
ships offline): the demo proves the pipeline works end to end, not that the tiny model generalises.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from gfpgan.errors import UserError, run_cli

REPO = Path(__file__).resolve().parent.parent


def _step(title: str) -> float:
    print(f"\n=== {title}", flush=True)
    return time.time()


def _run(args: List[str], procs: int = 1) -> None:
    """Run ``python -m ...`` (or torchrun with ``procs`` processes) with a list argv, never a shell.

    A failure stops the demo with its message.
    """
    launcher = ["torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", "-m"] if procs > 1 else []
    cmd = [sys.executable, "-m", *launcher, *args]
    print("$ python -m " + " ".join(cmd[2:]), flush=True)
    # one thread per process: OpenMP threads that wait on each other cost more than they give on a
    # small CPU, and the processes already use the cores
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    if subprocess.run(cmd, cwd=REPO, env=env).returncode != 0:
        raise UserError(f"the step 'python -m {args[0]}' failed (see its message above); "
                        f"rerun the demo with --debug for details.")


# ------------------------------------------------------------------------------ 1. face set
def build_face_set(dest: Path, size: int, jittered: int = 120, seed: int = 0) -> int:
    """Write the LFW subset (resized) and ``jittered`` aligned astronaut crops to ``dest``.

    Returns:
        The number of images written (existing sets of the same size are reused).
    """
    import cv2
    import skimage.data

    from gfpgan.inference.alignment import face_template, similarity_lstsq, warp_face
    from gfpgan.inference.detection import build_detector
    from gfpgan.utils import write_image_atomic

    marker = dest / f".complete_lfw100_astronaut{jittered}_{size}"  # names what the set holds
    if marker.exists():
        return len(list(dest.glob("*.png")))
    dest.mkdir(parents=True, exist_ok=True)
    n = 0
    for i, face in enumerate(skimage.data.lfw_subset()[:100]):  # 25x25 gray faces (the rest: non-faces)
        img = cv2.resize((face * 255).round().astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
        write_image_atomic(dest / f"lfw_{i:03d}.png", np.repeat(img[:, :, None], 3, axis=2))
        n += 1
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


# ------------------------------------------------------------------------------ 7. the figure
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
    from gfpgan.utils import atomic_path

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


# ------------------------------------------------------------------------------ the job
def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="results/demo", help="output folder")
    p.add_argument("--weights", help="skip training: a model card name or a checkpoint path")
    p.add_argument("--iters", type=int, default=1000, help="training iterations of the tiny recipe")
    p.add_argument("--size", type=int, default=64, help="face size of the tiny model")
    p.add_argument("--gan-weight", type=float, default=0.01, help="weight of the global GAN loss")
    p.add_argument("--frames", type=int, default=48, help="frames of the test clip")
    p.add_argument("--frame-size", type=int, default=192, help="side of the test clip's frames")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--procs", type=int, default=min(2, os.cpu_count() or 1),
                   help="training processes on a CPU (torchrun, gloo; global batch 8 is split)")
    p.add_argument("--name", default="demo_tiny", help="experiment name (run folder under --runs-dir)")
    p.add_argument("--runs-dir", default="experiments", help="where the training run folder goes")
    p.add_argument("--data-dir", default="datasets/demo_faces", help="where the face set is built")
    p.add_argument("--debug", action="store_true")
    a = p.parse_args(argv)
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    summary: dict = {"steps": {}}

    run_dir = Path(a.runs_dir).resolve() / a.name
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
        t = _step("1/6 building a real-face training set")
        faces = Path(a.data_dir).resolve()
        n = build_face_set(faces, a.size)
        print(f"{n} faces in {faces}")
        summary["steps"]["face_set_s"] = round(time.time() - t, 1)

        t = _step("2/6 training the tiny recipe")
        procs = a.procs if a.device == "cpu" else 1
        _run(["gfpgan.train", "-opt", "options/train_gfpgan_tiny.yml", "--device", a.device, "--force-yml",
              f"name={a.name}", f"path.experiments_root={run_dir.parent}", f"datasets.train.dataroot_gt={faces}", f"train.total_iter={a.iters}",
              f"train.scheduler.milestones=[{int(a.iters * 0.75)}]",
              f"train.remove_pyramid_loss={a.iters // 2}", f"logger.save_checkpoint_freq={a.iters}",
              f"logger.print_freq={max(1, a.iters // 10)}", f"logger.image_freq={a.iters}",
              f"datasets.train.out_size={a.size}", f"network_g.out_size={a.size}",
              f"network_d.out_size={a.size}", f"datasets.train.batch_size_per_gpu={max(1, 8 // procs)}",
              # a minutes-long run is judged on fidelity (PSNR): a lighter adversarial term
              f"train.gan_opt.loss_weight={a.gan_weight}",
              "--auto-resume"], procs)
        summary["steps"]["train_s"] = round(time.time() - t, 1)

        t = _step("3/6 exporting the EMA generator")
        _run(["gfpgan.tools.export", "--ckpt", str(run_dir), "--out", str(out / "model"),
              "--formats", "safetensors", "--name", "generator"])
        model = str(out / "model" / "generator.safetensors")
        summary["model"] = model
        summary["steps"]["export_s"] = round(time.time() - t, 1)

    t = _step("4/6 making a degraded clip of a moving face (with audio)")
    from gfpgan.tools.synth_video import make_clip_pair

    clip = make_clip_pair(out / "clip", frames=a.frames, size=a.frame_size, jpeg=70)
    summary["clip"] = clip
    summary["steps"]["clip_s"] = round(time.time() - t, 1)

    t = _step("5/6 restoring it through the video pipeline")
    # x264's MB-tree rate control is not reproducible run to run: without it, so is the demo
    common = ["--model", model, "--device", a.device, "--no-progress",
              "--codec-option", "x264-params=mbtree=0"]
    _run(["gfpgan.infer_video", "-i", clip["degraded"], "-o", str(out / "restored.mp4"),
          "--side-by-side", str(out / "side_by_side.mp4"), *common])
    _run(["gfpgan.infer_video", "-i", clip["degraded"], "-o", str(out / "restored_no_stabilization.mp4"),
          "--no-stabilize", "--no-mask-smoothing", "--detect-every", "1", *common])
    summary["steps"]["restore_s"] = round(time.time() - t, 1)

    t = _step("6/6 evaluating against the clean clip")
    from gfpgan.tools.compare_videos import measure, read_frames
    from gfpgan.inference.detection import build_detector

    gt = read_frames(clip["clean"])
    versions = {"degraded input": read_frames(clip["degraded"]), "restored": read_frames(out / "restored.mp4"),
                "restored, no stabilization": read_frames(out / "restored_no_stabilization.mp4")}
    det = build_detector("mtcnn")
    metrics = {k: {m: v for m, v in measure(f, gt, det, None).items() if not isinstance(v, (list, dict))}
               for k, f in versions.items()}
    for k, v in lpips_scores(versions, gt).items():
        metrics[k]["lpips"] = v
    cols = [c for c in ("psnr", "ssim", "lpips", "warping_error", "landmark_jitter")
            if any(c in m for m in metrics.values())]
    lines = ["| version | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for k, m in metrics.items():
        lines.append(f"| {k} | " + " | ".join(f"{m[c]:.4f}" if c in m else "-" for c in cols) + " |")
    table = "\n".join(lines)
    print(table)
    summary["metrics"] = metrics
    summary["steps"]["evaluate_s"] = round(time.time() - t, 1)
    summary["total_s"] = round(time.time() - t0, 1)
    from gfpgan.utils import write_bytes_atomic

    write_bytes_atomic(out / "metrics.json", json.dumps(summary, indent=2).encode())
    write_bytes_atomic(out / "metrics.md", (table + "\n").encode())

    picks = np.linspace(0, len(gt) - 1, 5).round().astype(int)
    crops = [_face_window(det, gt[i]) for i in picks]  # the same window in all three rows
    strips = [[versions[k][i][y0:y1, x0:x1] for i, (y0, y1, x0, x1) in zip(picks, crops)]
              for k in ("degraded input", "restored")] + [
              [gt[i][y0:y1, x0:x1] for i, (y0, y1, x0, x1) in zip(picks, crops)]]
    make_figure(out / "demo.png", {} if a.weights else training_curves(run_dir), strips,
                ["degraded", "restored", "ground truth"], table)
    print(f"\nDone in {summary['total_s']:.0f} s. Outputs in {out}: restored.mp4, side_by_side.mp4, "
          f"restored_no_stabilization.mp4, metrics.json, metrics.md, demo.png")
    return 0


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
