"""Compare restored versions of one video on temporal consistency (and against ground truth).

    python -m gfpgan.tools.compare_videos stab_on.mp4 stab_off.mp4 --labels on,off \\
        [--gt clip_gt.mp4] [--arcface experiments/pretrained_models/arcface_resnet18.pth] --out cmp/

For each version: flow-warping error (x1000; the flow comes from ``--gt`` when given, so every
version is judged against the same motion, else from the version itself), landmark jitter per
face track (pixels, MTCNN landmarks, tracks by the pipeline's IoU tracker), identity drift between
consecutive frames (ArcFace degrees, only with ``--arcface``), and with ``--gt`` the mean
PSNR/SSIM per frame. Writes ``compare.md``, ``compare.json`` and ``compare.png`` (warping error
per frame for each version) into ``--out``; the table is printed too. Inputs are video files or
folders of frames.
"""

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command
from gfpgan.files import atomic_path, write_text_atomic


def read_frames(path, max_frames: int = 0) -> List[np.ndarray]:
    """Every frame (RGB uint8) of a video file or frame folder, up to ``max_frames`` (0: all)."""
    from gfpgan.inference.video import iter_frames, probe_video

    info = probe_video(path)
    frames = []
    for d in iter_frames(info, int(info.pts[0]), None):
        frames.append(d.image)
        if max_frames and len(frames) >= max_frames:
            break
    if len(frames) < 2:
        raise UserError(f"{path} has {len(frames)} frame(s); temporal metrics need at least 2")
    return frames


def measure(frames: List[np.ndarray], gt: Optional[List[np.ndarray]], detector, embedder,
            flow_method: str = "dis") -> Dict[str, object]:
    """Temporal (and, with ``gt``, fidelity) metrics of one version."""
    from gfpgan.metrics import temporal
    from gfpgan.metrics.psnr_ssim import calculate_psnr, calculate_ssim

    res: Dict[str, object] = {"frames": len(frames)}
    we = temporal.warping_error(frames, flow_frames=gt, method=flow_method)
    res["warping_error"], res["warping_error_per_pair"] = we["mean"], we["per_pair"]
    if detector is not None:
        tracks = temporal.face_tracks(detector.detect(frames))
        jit = temporal.track_jitter(tracks)
        res["tracks"] = len(jit)
        res["landmark_jitter"] = float(np.mean(list(jit.values()))) if jit else float("nan")
        res["landmark_jitter_per_track"] = {str(k): v for k, v in jit.items()}
        if embedder is not None:
            drift = [temporal.identity_consistency(embedder.embed(temporal.crop_track(frames, tr)).numpy())
                     for tr in tracks.values() if len(tr["frames"]) >= 2]
            res["identity_drift_deg"] = (float(np.mean([d["mean_deg"] for d in drift])) if drift
                                         else float("nan"))
    if gt is not None:
        res["psnr"] = float(np.mean([calculate_psnr(f, g) for f, g in zip(frames, gt)]))
        res["ssim"] = float(np.mean([calculate_ssim(f, g) for f, g in zip(frames, gt)]))
    return res


COLUMNS = (("warping_error", "warp err ×1e3 ↓"), ("landmark_jitter", "lm jitter px ↓"),
           ("identity_drift_deg", "ID drift ° ↓"), ("psnr", "PSNR ↑"), ("ssim", "SSIM ↑"))


def markdown(results: Dict[str, dict]) -> str:
    cols = [(k, t) for k, t in COLUMNS if any(k in r for r in results.values())]
    lines = ["| version | frames | " + " | ".join(t for _, t in cols) + " |",
             "|---|---:|" + "---:|" * len(cols)]
    for label, r in results.items():
        vals = [f"{r[k]:.4f}" if k in r else "–" for k, _ in cols]
        lines.append(f"| {label} | {r['frames']} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def plot(results: Dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for label, r in results.items():
        ax.plot(range(1, r["frames"]), r["warping_error_per_pair"], label=label)
    ax.set_xlabel("frame")
    ax.set_ylabel("flow-warping error (×1e3)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gfpgan.tools.compare_videos",
                                description=__doc__.split("\n")[0])
    p.add_argument("videos", nargs="+", help="restored versions (video files or frame folders)")
    p.add_argument("--labels", default=None, help="comma-separated names (default: file names)")
    p.add_argument("--gt", default=None, help="ground-truth clip (flow source and PSNR/SSIM reference)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--arcface", default=None, help="arcface_resnet18.pth for identity drift (optional)")
    p.add_argument("--no-landmarks", action="store_true", help="skip detection (warping error only)")
    p.add_argument("--flow", default="dis", choices=("dis", "farneback"), help="OpenCV flow method")
    p.add_argument("--max-frames", type=int, default=0, help="compare the first N frames (0: all)")
    add_common_arguments(p, device=True)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    labels = args.labels.split(",") if args.labels else [Path(v).stem for v in args.videos]
    if len(labels) != len(args.videos):
        raise UserError(f"--labels has {len(labels)} names for {len(args.videos)} videos; give one per video")
    gt = read_frames(args.gt, args.max_frames) if args.gt else None
    detector = embedder = None
    if not args.no_landmarks:
        from gfpgan.inference.faces.detection import build_detector

        detector = build_detector("mtcnn", device=args.device, max_side=None)
    if args.arcface:
        from gfpgan.metrics.identity import IdentityMetric

        embedder = IdentityMetric(arcface_path=args.arcface, device=args.device)
    results = {}
    for label, video in zip(labels, args.videos):
        frames = read_frames(video, args.max_frames)
        if gt is not None:
            if len(gt) != len(frames) or gt[0].shape != frames[0].shape:
                raise UserError(f"{video} ({len(frames)} frames of {frames[0].shape}) does not match --gt "
                                f"({len(gt)} frames of {gt[0].shape}); compare clips of the same size "
                                "and length")
        results[label] = measure(frames, gt, detector, embedder, args.flow)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(results)
    for name, text in (("compare.md", table), ("compare.json", json.dumps(results, indent=2))):
        write_text_atomic(out / name, text)
    plot(results, out / "compare.png")
    print(table, end="")
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
