"""Personalization measured: a person the base never saw, near and sharp, then far and degraded.

    python -m gfpgan.tools.bench_personal --model results/demo/model/generator.safetensors

Through the real pipeline (``gfpgan.infer_video``), with only what it knows at run time:

1. A clip of one person (matplotlib's sample portrait, grace_hopper.jpg, by default): ``--near``
   frames with the face about twice the model's crop and sharp, then ``--far`` frames with the face
   smaller than the crop (the photo on a plain wall), blurred, noisy and JPEG-compressed; clean and
   degraded versions with the same timestamps. A second clip of another person (scikit-image's
   astronaut), far only; the table checks that its faces were found (the base changes them).
2. The targets are the faces the video offers (:class:`~gfpgan.inference.tracks.targets.TargetCollector`:
   only faces at least as large as the crop qualify, so the far frames never enter tuning; checked).
3. The base is tuned on them with each scope (``adapter``, ``full``), matched to the far faces'
   measured size, and both clips are restored with the base and with each personal file, gated
   (``--personal-gate``'s default: a face gets the personal output only where it explains the
   input better than the base's) and, for the first scope, ungated (every face gets it).
4. Face-region PSNR and SSIM against the clean clip: on the far frames (the gain), on the near
   frames (never worse than their input, ``--keep-detail``), and on the other person's far frames
   (what the tuning costs someone else). LPIPS and identity are not computed (their AlexNet and
   ArcFace files are not offline).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from gfpgan.cli import add_common_arguments
from gfpgan.errors import UserError, command
from gfpgan.files import write_json_atomic

__all__ = ["near_far_frames", "run", "far_strips", "table"]


def _portrait(name: str) -> np.ndarray:
    if name == "grace_hopper":
        import matplotlib.cbook

        from gfpgan.images import read_image

        return read_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    if name == "astronaut":
        import skimage.data

        return skimage.data.astronaut()
    raise UserError(f"unknown portrait {name!r}; use grace_hopper or astronaut.")


WALL = (128, 132, 138)  # the plain wall behind the far photo (mirroring it would repeat the face)


def near_far_frames(photo: np.ndarray, near: int, far: int, size: int, near_zoom: float,
                    far_zoom: float, seed: int = 0):
    """Clean and degraded frames: ``near`` frames close and sharp, then ``far`` frames small and
    degraded. Returns (clean, degraded) lists of RGB uint8 (size, size, 3)."""
    from gfpgan.tools.synth_video import degrade_frames, face_path_frames

    clean_near = face_path_frames(photo, near, size, near_zoom, WALL) if near else []
    clean_far = face_path_frames(photo, far, size, far_zoom, WALL) if far else []
    lq_near = degrade_frames(clean_near, seed=seed, blur_sigma=0.3, scale=1.0, noise=2.0, jpeg=95)[0] \
        if near else []
    lq_far = degrade_frames(clean_far, seed=seed + 1, blur_sigma=1.0, scale=1.5, noise=8.0, jpeg=60)[0] \
        if far else []
    return clean_near + clean_far, lq_near + lq_far


def _decode(path) -> List[np.ndarray]:
    from gfpgan.inference import video as vio

    info = vio.probe_video(path)
    return [d.image for d in vio.iter_frames(info, int(info.pts[0]), None)]


def _windows(frames: Sequence[np.ndarray], grow: float = 1.6) -> List[tuple]:
    """(y0, y1, x0, x1) around each clean frame's largest face (MTCNN on the ground truth)."""
    from gfpgan.inference.faces.detection import build_detector

    det = build_detector("mtcnn", min_face=10)
    out = []
    for f in frames:
        h, w = f.shape[:2]
        found = det.detect([f])[0]
        if not len(found):
            out.append((0, h, 0, w))
            continue
        k = int(np.argmax((found.boxes[:, 2:] - found.boxes[:, :2]).prod(1)))
        x1, y1, x2, y2 = found.boxes[k]
        cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, grow * max(x2 - x1, y2 - y1) / 2
        out.append((int(max(0, cy - half)), int(min(h, cy + half)), int(max(0, cx - half)),
                    int(min(w, cx + half))))
    return out


def _face_scores(frames, gt, windows, idx) -> Dict[str, float]:
    from gfpgan.metrics.psnr_ssim import calculate_psnr, calculate_ssim

    pairs = [(frames[i][y0:y1, x0:x1], gt[i][y0:y1, x0:x1]) for i in idx
             for y0, y1, x0, x1 in [windows[i]]]
    return {"psnr": float(np.mean([calculate_psnr(a, b) for a, b in pairs])),
            "ssim": float(np.mean([calculate_ssim(a, b) for a, b in pairs]))}


def _restore(src: Path, dst: Path, model: str, device: str, extra: Sequence[str] = ()) -> List[np.ndarray]:
    from gfpgan.infer_video import main as infer_video

    dst.unlink(missing_ok=True)
    code = infer_video(["-i", str(src), "-o", str(dst), "--model", model, "--device", device,
                        "--no-progress", "--crf", "0", *extra])
    if code:
        raise UserError(f"restoring {src} failed with exit code {code}.")
    return _decode(dst)


def run(model: str, work: Path, device: str = "cpu", near: int = 24, far: int = 24, size: int = 192,
        near_zoom: float = 1.3, far_zoom: float = 0.4, other_zoom: float = 0.85,
        scopes: Sequence[str] = ("adapter", "full"), seed: int = 0) -> Dict:
    """Make the clips, personalize with each scope, restore, score; returns the results."""
    from gfpgan.inference.tracks.targets import TargetCollector
    from gfpgan.inference.tracks.video_restorer import VideoFaceRestorer
    from gfpgan.personalize import Tuning, matched_degradation, personalize_on
    from gfpgan.tools.synth_video import write_clip

    work.mkdir(parents=True, exist_ok=True)
    clips = {}
    # the astronaut's face fills less of her photo: a larger zoom gives a far face of the same size
    for name, photo, n_near, zoom, seed_off in (("person", "grace_hopper", near, far_zoom, 0),
                                                 ("other", "astronaut", 0, other_zoom, 7)):
        clean, lq = near_far_frames(_portrait(photo), n_near, far, size, near_zoom, zoom, seed + seed_off)
        write_clip(work / f"{name}_clean.mp4", clean, audio=False, crf=0)
        write_clip(work / f"{name}_degraded.mp4", lq, audio=False, crf=0)
        clips[name] = {"gt": _decode(work / f"{name}_clean.mp4"),
                       "lq": _decode(work / f"{name}_degraded.mp4")}
        clips[name]["windows"] = _windows(clips[name]["gt"])
    near_idx, far_idx = list(range(near)), list(range(near, near + far))
    other_far = list(range(far))

    t = time.time()
    found = TargetCollector()
    scan = VideoFaceRestorer(model, device=device, strength=0.0, keep_detail=0.0, sinks=[found])
    for _ in scan.process(iter(clips["person"]["lq"])):
        pass
    if not found.targets:
        raise UserError("no face of the near frames qualifies as a target; raise --near-zoom.")
    frames_used = sorted(m["frame"] for m in found.metadata)
    if frames_used[-1] >= near:
        raise UserError(f"far frame {frames_used[-1]} qualifies as a target (its face is at least the "
                        f"model's crop); lower --far-zoom.")
    scan_s = time.time() - t

    results: Dict = {"model": model, "device": device, "near": near, "far": far, "size": size,
                     "targets": len(found.targets), "target_frames": frames_used,
                     "scan_s": round(scan_s, 1), "rows": {}}

    def score(tag, person_frames, other_frames):
        p, o = clips["person"], clips["other"]
        results["rows"][tag] = {"far": _face_scores(person_frames, p["gt"], p["windows"], far_idx),
                                "near": _face_scores(person_frames, p["gt"], p["windows"], near_idx),
                                "other_far": _face_scores(other_frames, o["gt"], o["windows"], other_far)}

    score("input", clips["person"]["lq"], clips["other"]["lq"])
    score("base", _restore(work / "person_degraded.mp4", work / "person_base.mp4", model, device),
          _restore(work / "other_degraded.mp4", work / "other_base.mp4", model, device))
    for scope in scopes:
        t = time.time()
        personal = work / f"person_{scope}.safetensors"
        tuning = Tuning(scope=scope, seed=seed, lr=2e-3 if scope == "adapter" else 2e-4,
                        degradation=matched_degradation(scan.size, found.restore_scales))
        info = personalize_on(found.targets, model, str(personal), tuning, device, restart=True,
                              progress=False)
        tune_s = time.time() - t
        variants = [(scope, [])]
        if scope == scopes[0]:  # what the gate buys
            variants.append((f"{scope}, ungated", ["--personal-gate", "0"]))
        for tag, gate in variants:
            extra = ["--personal", str(personal), *gate]
            name = tag.replace(", ", "_")
            score(f"personal ({tag})",
                  _restore(work / "person_degraded.mp4", work / f"person_{name}.mp4", model, device, extra),
                  _restore(work / "other_degraded.mp4", work / f"other_{name}.mp4", model, device, extra))
            results["rows"][f"personal ({tag})"].update(
                tune_s=round(tune_s, 1), iterations=info["iterations"],
                held_out=[round(info["held_out_psnr_base"], 2), round(info["held_out_psnr"], 2)])
    return results


def far_strips(work: Path, near: int, scope: str, columns: int = 5) -> List[List[np.ndarray]]:
    """Face windows of ``columns`` far frames of the person's clip: input, base, personalized
    (``scope``) and ground truth, one row each (for a figure)."""
    gt = _decode(work / "person_clean.mp4")
    far = np.linspace(near, len(gt) - 1, columns).round().astype(int)
    windows = _windows([gt[i] for i in far])
    rows = []
    for name in ("person_degraded", "person_base", f"person_{scope}", "person_clean"):
        frames = _decode(work / f"{name}.mp4")
        rows.append([frames[i][y0:y1, x0:x1] for i, (y0, y1, x0, x1) in zip(far, windows)])
    return rows


def table(results: Dict) -> str:
    base = results["rows"]["base"]
    lines = ["| version | far PSNR | far SSIM | near PSNR | near SSIM | other person far PSNR | tuning |",
             "|---|---|---|---|---|---|---|"]
    for tag, r in results["rows"].items():
        gain = "" if tag in ("input", "base") else f" ({r['far']['psnr'] - base['far']['psnr']:+.2f})"
        other = "" if tag in ("input", "base") else \
            f" ({r['other_far']['psnr'] - base['other_far']['psnr']:+.2f})"
        tune = f"{r['tune_s']:.0f} s, {r['iterations']} it" if "tune_s" in r else ""
        lines.append(f"| {tag} | {r['far']['psnr']:.2f}{gain} | {r['far']['ssim']:.4f} | "
                     f"{r['near']['psnr']:.2f} | {r['near']['ssim']:.4f} | "
                     f"{r['other_far']['psnr']:.2f}{other} | {tune} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gfpgan.tools.bench_personal",
                                description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="the base generator (it must not have seen the person)")
    p.add_argument("--out", default="results/bench_personal", help="work folder")
    p.add_argument("--near", type=int, default=24, help="near frames")
    p.add_argument("--far", type=int, default=24, help="far frames")
    p.add_argument("--size", type=int, default=192, help="frame side")
    p.add_argument("--near-zoom", type=float, default=1.3, help="face scale of the near frames")
    p.add_argument("--far-zoom", type=float, default=0.4, help="face scale of the far frames")
    p.add_argument("--other-zoom", type=float, default=0.85,
                   help="face scale of the other person's (far) frames")
    p.add_argument("--scopes", default="adapter,full", help="tuning scopes to compare")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results here")
    add_common_arguments(p, device=True)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    res = run(args.model, Path(args.out), args.device, args.near, args.far, args.size, args.near_zoom,
              args.far_zoom, args.other_zoom, [s for s in args.scopes.split(",") if s], args.seed)
    print(f"{res['targets']} targets from frames {res['target_frames']} (scan {res['scan_s']} s)")
    res["table"] = table(res)
    if args.json:
        write_json_atomic(args.json, res)
    print(res["table"])
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
