"""Evaluation on a video test set: per-frame quality plus temporal consistency, clip by clip.

    python -m gfpgan.test -opt options/test_video_synthetic.yml [--no-temporal] [key=value ...]
    torchrun --nproc_per_node=2 -m gfpgan.test -opt options/test_video_synthetic.yml

The set is what :mod:`gfpgan.tools.make_video_testset` writes (``gt/<clip>/``, ``lq/<clip>/``,
``manifest.json``). The restorer is a base model (run folder, checkpoint or model card),
optionally with a temporal file (:func:`gfpgan.temporal_file.load_temporal`): each clip runs frame
by frame over its aligned LQ frames, the state carried from frame to frame and fresh for every
clip. ``--no-temporal`` runs the same base frame by frame.

**Motion** (``motion``): the temporal module is given, by default (``estimated``), the motion
the video pipeline would estimate: five landmarks found on each *degraded* frame by the
pipeline's face tracker (MTCNN's O-Net stage following the face's box from frame to frame,
:meth:`~gfpgan.inference.faces.detection.MTCNNDetector.track`; the crop's central box on the
first frame), smoothed by the pipeline's :class:`~gfpgan.inference.tracks.tracking.LandmarkSmoother`
with its inference settings, and the similarity between consecutive frames' smoothed landmarks
(:func:`gfpgan.motion.landmark_motion`). ``gt`` gives the module the manifest's exact transforms
instead, the very motion that defines E_warp's flow: an upper bound, labelled ``gt_motion`` in
the results, never the default. Metrics:

* per frame, as the image evaluation does them (:func:`gfpgan.engine.eval_common.build_metrics`): PSNR, SSIM,
  LPIPS, Deg (ArcFace angle to the GT), LMD (landmark distance to the GT); a metric whose weights
  are missing is skipped with one line;
* per clip: ``ewarp`` (flow-warping error x1000 with the exact flow of the manifest's transforms,
  pixels leaving the frame masked; ``ewarp_gt`` the same on the GT clip, its floor), ``tlme``
  (landmark motion the GT lacks, pixels; needs ``lmd``), ``idc`` (ArcFace angle between
  consecutive restored frames, degrees; ``idc_excess`` its excess over the GT's own; needs ``deg``).

Outputs under ``<results_root>/<name>/<temporal|per_frame>/``: ``<dataset>/restored/<clip>/``,
``<dataset>/metrics.csv`` (one row per clip), ``summary.json``, ``summary.md``. Clips are split
across torchrun ranks whole (so the numbers do not depend on the world size) and gathered on rank
0; ``sec_per_face`` is the restorer's time per frame (forward passes only, restored frames only).
"""

import json
import math
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from gfpgan.engine.eval_common import (
    PAIRED_METRIC_SECTIONS,
    build_metrics,
    csv_text,
    model_spec,
    resize_to,
    run_on_ranks,
)
from gfpgan.errors import UserError
from gfpgan.files import write_text_atomic
from gfpgan.options import Field, MapOf, Section, apply_overrides, load_yaml, validate

FRAME_METRICS = ("psnr", "ssim", "lpips", "deg", "lmd")
CLIP_METRICS = ("ewarp", "ewarp_gt", "tlme", "idc", "idc_excess")
ORDER = FRAME_METRICS + CLIP_METRICS
HIGHER_BETTER = {"psnr", "ssim"}

VIDEO_SCHEMA = Section({
    "mode": Field(str, "video", choices=["video"], help="video: a make_video_testset folder"),
    "name": Field(str, required=True, nullable=False, help="results go to <results_root>/<name>"),
    "model": Field(str, required=True, nullable=False, help="base: run folder, checkpoint or card"),
    "temporal": Field(str, None, path="file", help="temporal file (null: the base frame by frame)"),
    "motion": Field(str, "estimated", choices=["estimated", "gt"],
                    help="the temporal module's motion: estimated (landmarks on the degraded frames, "
                         "smoothed as in inference) | gt (the manifest's exact transforms: an upper bound)"),
    "device": Field(str, "auto", help="auto | cpu | cuda"),
    "save_images": Field(bool, True, help="keep the restored frames (needed to skip them next time)"),
    "datasets": MapOf(Section({
        "dataroot": Field(str, required=True, nullable=False, path="dir",
                          help="video test set: gt/, lq/, manifest.json"),
    }), required=True, nullable=False, help="name -> video test set"),
    "metrics": Section(dict(PAIRED_METRIC_SECTIONS)),
    "path": Section({"results_root": Field(str, "results")}),
})


def load_video_options(path, overrides: Sequence[str] = ()) -> dict:
    """Read, override and validate a video evaluation YAML."""
    raw = load_yaml(path)
    keys = apply_overrides(raw, overrides)
    return validate(raw, VIDEO_SCHEMA, where=str(path), overridden=keys)


def read_video_set(root) -> List[dict]:
    """The clips of a video test set: ``[{name, lq: [paths], gt: [paths], rel_affines (T,2,3)}]``.

    Raises:
        UserError: no manifest, or a clip whose frames are missing or miscounted.
    """
    root = Path(root)
    try:
        manifest = json.loads((root / "manifest.json").read_text())
        records, frames = manifest["clips"], int(manifest["frames"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{root} is not a video test set ({type(exc).__name__}: {exc}); make one with "
                        f"python -m gfpgan.tools.make_video_testset.") from None
    clips = []
    for rec in records:
        clip = {"name": rec["name"], "rel_affines": np.asarray(rec["rel_affines"], np.float64)}
        for kind in ("lq", "gt"):
            paths = [root / kind / rec["name"] / f"{t:05d}.png" for t in range(frames)]
            missing = [p for p in paths if not p.is_file()]
            if missing:
                raise UserError(f"clip {rec['name']} of {root} lacks {len(missing)} {kind} frame(s) "
                                f"(first: {missing[0]}); rebuild the set.")
            clip[kind] = paths
        if clip["rel_affines"].shape != (frames, 2, 3):
            raise UserError(f"clip {rec['name']} of {root} has transforms of shape "
                            f"{clip['rel_affines'].shape}, not ({frames}, 2, 3); rebuild the set.")
        clips.append(clip)
    if not clips:
        raise UserError(f"{root}/manifest.json lists no clips; rebuild the set.")
    return clips


def rescale_affines(rel: np.ndarray, src: int, dst: int) -> np.ndarray:
    """(T, 2, 3) crop-to-crop transforms in pixels of a ``src`` crop, re-expressed for a ``dst`` crop."""
    from gfpgan.motion import compose_affine, invert_affine

    if src == dst:
        return np.asarray(rel, np.float64)
    s = dst / src
    d = np.array([[s, 0.0, (s - 1) / 2], [0.0, s, (s - 1) / 2]])  # pixel centres, as cv2.resize
    return compose_affine(compose_affine(d, rel), invert_affine(d))


class MotionEstimator:
    """The relative transforms the video pipeline would estimate for a clip of aligned crops.

    Landmarks of each degraded frame from the pipeline's tracker stage (MTCNN's O-Net following
    the face's box; frame 0 starts from a full detection, else from the crop's central box; the
    O-Net's landmarks are used whatever its score, since an aligned crop holds the face), smoothed
    as in inference (:class:`~gfpgan.inference.tracks.tracking.LandmarkSmoother` with the
    :class:`~gfpgan.inference.settings.VideoRestorerConfig` defaults), then the similarity
    between consecutive frames' landmarks.
    """

    def __init__(self, device="cpu"):
        from gfpgan.inference.faces.detection import build_detector
        from gfpgan.inference.settings import VideoRestorerConfig

        self.detector = build_detector("mtcnn", device=device, min_face=20, max_side=None)
        cfg = VideoRestorerConfig()
        self.past, self.lookahead = cfg.past, cfg.lookahead

    def landmarks(self, frames: List[np.ndarray]) -> np.ndarray:
        """(T, 5, 2) raw landmarks of the face of each (S, S, 3) uint8 crop, in its pixels."""
        from gfpgan.metrics.landmark import main_face

        s = frames[0].shape[0]
        box = np.array([[0.08 * s, 0.08 * s, 0.92 * s, 0.92 * s]])
        found = main_face(self.detector.detect([frames[0]])[0], frames[0].shape)
        if found is not None:  # a detection's box is not the crop's: start from its landmarks' extent
            lo, hi = found.min(0), found.max(0)
            c, half = (lo + hi) / 2, 0.9 * max(hi - lo)
            box = np.array([[c[0] - half, c[1] - half, c[0] + half, c[1] + half]])
        out = []
        for f in frames:
            tr = self.detector.track(f, box)
            out.append(np.asarray(tr.det.landmarks[0], np.float64))
            box = np.asarray(tr.det.boxes[:1], np.float64)
        return np.stack(out)

    def __call__(self, frames: List[np.ndarray]) -> np.ndarray:
        """(T, 2, 3) float64 crop t-1 -> crop t (identity at t = 0), in pixels of the frames."""
        from gfpgan.inference.tracks.tracking import LandmarkSmoother
        from gfpgan.motion import landmark_motion

        raw = self.landmarks(frames)
        smoother = LandmarkSmoother(past=self.past, lookahead=self.lookahead)
        for t, lm in enumerate(raw):
            smoother.observe(t, 0, lm)
        smooth = [smoother.smoothed(t, 0, raw[t]) for t in range(len(raw))]
        rel = [np.eye(2, 3)] + [landmark_motion(a, b).astype(np.float64) for a, b in zip(smooth, smooth[1:])]
        return np.stack(rel)


class ClipRestorer:
    """A base generator, optionally wrapped by a temporal file, run over one clip at a time.

    Args:
        spec: the base (run folder, checkpoint file or model card).
        temporal: a temporal file, or None for the base frame by frame.
        device: torch device.
    """

    def __init__(self, spec: str, temporal: Optional[str], device):
        from gfpgan.inference.faces.model import TorchFaceModel, load_face_model

        self.device = torch.device(device)
        face = load_face_model(model_spec(spec), device="cpu", precision="fp32", fixed_noise=True)
        if not isinstance(face, TorchFaceModel):
            raise UserError(f"model '{spec}' is not a PyTorch generator; the video evaluation needs one.")
        self.size, net = face.size, face.net
        if temporal is not None:
            from gfpgan.temporal_file import load_temporal

            net = load_temporal(temporal, net)
        self.net, self.temporal = net.to(self.device).eval(), temporal is not None

    @torch.inference_mode()
    def __call__(self, frames: List[np.ndarray], rel_affines: np.ndarray):
        """Restore (S, S, 3) uint8 frames of one clip in order; returns (frames, forward seconds)."""
        from gfpgan.images import img_to_tensor, tensor_to_img

        rel = torch.as_tensor(rel_affines, dtype=torch.float32, device=self.device)
        state, outs, seconds = None, [], 0.0
        for t, frame in enumerate(frames):
            x = img_to_tensor(frame[None]).to(self.device)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            t0 = time.perf_counter()
            if self.temporal:
                out, _, state = self.net(x, state, rel[t:t + 1], randomize_noise=None)
            else:
                out = self.net(x, return_rgb=False, randomize_noise=None)
                out = out[0] if isinstance(out, (tuple, list)) else out
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            seconds += time.perf_counter() - t0
            outs.append(tensor_to_img(out[0].float().cpu()))
        return outs, seconds


def clip_metrics(outs: List[np.ndarray], gts: List[np.ndarray], rel: np.ndarray, metrics: dict) -> dict:
    """Per-frame means and temporal measures of one restored clip against its GT (uint8 frames)."""
    from gfpgan.metrics.identity import embedding_angle
    from gfpgan.metrics.landmark import landmark_distance
    from gfpgan.metrics.temporal import identity_consistency, tlme, warping_error

    def mean(vals):
        vals = [v for v in vals if math.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")

    row = {}
    for m in ("psnr", "ssim", "lpips"):
        if m in metrics:
            row[m] = mean([float(metrics[m](o, g)) for o, g in zip(outs, gts)])
    if "deg" in metrics:
        emb, gemb = metrics["deg"].embed(outs).numpy(), metrics["deg"].embed(gts).numpy()
        row["deg"] = mean(embedding_angle(emb, gemb).tolist())
    if "lmd" in metrics:
        lms, glms = metrics["lmd"].landmarks(outs), metrics["lmd"].landmarks(gts)
        row["lmd"] = mean([landmark_distance(a, b) if a is not None and b is not None else float("nan")
                           for a, b in zip(lms, glms)])
    row["ewarp"] = warping_error(outs, rel_affines=rel)["mean"]
    row["ewarp_gt"] = warping_error(gts, rel_affines=rel)["mean"]
    if "lmd" in metrics:
        row["tlme"] = tlme(lms, glms)["mean"]
    if "deg" in metrics:
        idc = identity_consistency(emb, gemb)
        row["idc"], row["idc_excess"] = idc["mean_deg"], idc["excess_deg"]
    return row


def evaluate_video_set(opt: dict, dname: str, root, restorer_box: dict, dist, force: bool,
                       no_temporal: bool, metrics: dict, out_dir: Path) -> dict:
    """Restore and measure this rank's share of the clips of one set; returns what to gather."""
    from gfpgan.images import read_image, write_image_atomic

    clips = read_video_set(root)
    rows, seconds, restored, reused = [], 0.0, 0, 0
    estimated = opt.get("motion", "estimated") == "estimated" and opt["temporal"] and not no_temporal
    for clip in clips[dist.rank::dist.world_size]:  # whole clips: numbers independent of the world size
        targets = [out_dir / "restored" / clip["name"] / f"{t:05d}.png" for t in range(len(clip["lq"]))]
        gts = [read_image(p) for p in clip["gt"]]
        gt_size = gts[0].shape[0]
        if not force and all(p.is_file() for p in targets):
            outs = [read_image(p) for p in targets]
            reused += len(outs)
        else:
            if restorer_box.get("r") is None:
                restorer_box["r"] = ClipRestorer(opt["model"], None if no_temporal else opt["temporal"],
                                                 dist.device)
            r = restorer_box["r"]
            lqs = [read_image(p) for p in clip["lq"]]
            if estimated:  # the pipeline's estimate, on the degraded frames at the set's size
                if restorer_box.get("motion") is None:
                    restorer_box["motion"] = MotionEstimator()
                motion = restorer_box["motion"](lqs)
            else:  # the manifest's exact transforms (per_frame ignores them)
                motion = clip["rel_affines"]
            lqs = resize_to(lqs, r.size)
            outs, sec = r(lqs, rescale_affines(motion, gt_size, r.size))
            outs = resize_to(outs, gt_size)
            seconds, restored = seconds + sec, restored + len(outs)
            if opt["save_images"]:
                for p, img in zip(targets, outs):
                    write_image_atomic(p, img)
        rows.append({"name": clip["name"], "frames": len(outs),
                     **clip_metrics(outs, gts, clip["rel_affines"], metrics)})
    return {"rows": rows, "seconds": seconds, "restored": restored, "reused": reused, "num": len(clips)}


def reduce_video_set(part: dict, dist) -> Optional[dict]:
    """Gather every rank's clip rows; rank 0 returns the set's summary (means over clips)."""
    from gfpgan.dist import gather_objects

    parts = gather_objects(part, dist)
    if not dist.is_main:
        return None
    rows = sorted((r for p in parts for r in p["rows"]), key=lambda r: r["name"])
    means = {}
    for m in ORDER:
        vals = [r[m] for r in rows if m in r and math.isfinite(r[m])]
        if any(m in r for r in rows):
            means[m] = float(np.mean(vals)) if vals else float("nan")
    restored = sum(p["restored"] for p in parts)
    seconds = sum(p["seconds"] for p in parts)
    return {"num_clips": part["num"], "frames": sum(r["frames"] for r in rows), "restored": restored,
            "reused": sum(p["reused"] for p in parts), "metrics": means,
            "sec_per_face": seconds / restored if restored else None, "rows": rows}


def markdown_table(summary: dict) -> str:
    """One row per set, one column per measured metric (arrows: which way is better)."""
    sets = summary["datasets"]
    cols = [m for m in ORDER if any(m in d["metrics"] for d in sets.values())]
    head = "| dataset | clips | " + " | ".join(f"{m} {'↑' if m in HIGHER_BETTER else '↓'}" for m in cols)
    lines = [head + " | s/face |", "|---|---:|" + "---:|" * (len(cols) + 1)]
    for dname, d in sets.items():
        vals = [f"{d['metrics'][m]:.4f}" if m in d["metrics"] else "–" for m in cols]
        sec = f"{d['sec_per_face']:.4f}" if d["sec_per_face"] is not None else "–"
        lines.append(f"| {dname} | {d['num_clips']} | " + " | ".join(vals) + f" | {sec} |")
    return "\n".join(lines) + "\n"


def evaluate_video(opt: dict, dist, force: bool = False, no_temporal: bool = False, say=print) -> dict:
    """Run the whole video evaluation of validated options; rank 0 writes and returns the summary.

    Returns:
        ``{"run_dir", "mode", "datasets": {name: summary}}`` on rank 0, ``{}`` on the others.
    """
    mode = "temporal" if opt["temporal"] and not no_temporal else "per_frame"
    if mode == "temporal" and opt.get("motion") == "gt":
        mode = "temporal_gt_motion"  # the upper bound: kept apart from the honest results
    run_dir = Path(opt["path"]["results_root"]) / opt["name"] / mode
    metrics, skipped = build_metrics(opt["metrics"], True, dist.device, say)
    for m, needs in (("tlme", "lmd"), ("idc", "deg")):
        if needs not in metrics:
            skipped[m] = f"needs metrics.{needs}"
    box, sets = {}, {}
    for dname, ds in opt["datasets"].items():
        part = evaluate_video_set(opt, dname, ds["dataroot"], box, dist, force, no_temporal, metrics,
                                  run_dir / dname)
        reduced = reduce_video_set(part, dist)
        if reduced is not None:
            sets[dname] = reduced
            say(f"{dname}: {reduced['num_clips']} clips, {reduced['restored']} frames restored, "
                f"{reduced['reused']} reused")
    if not dist.is_main:
        return {}
    for dname, d in sets.items():
        cols = ["name", "frames"] + [m for m in ORDER if any(m in r for r in d["rows"])]
        write_text_atomic(run_dir / dname / "metrics.csv", csv_text(d["rows"], cols))
    summary = {"name": opt["name"], "model": opt["model"], "mode": mode,
               "temporal": opt["temporal"] if mode != "per_frame" else None, "skipped": skipped,
               "motion": None if mode == "per_frame" else opt.get("motion", "estimated"),
               "conventions": {"psnr": opt["metrics"].get("psnr"), "ssim": opt["metrics"].get("ssim"),
                               "ewarp": "x1000 MSE on [0,1], exact flow of the manifest's transforms",
                               "motion": "the temporal module's input: estimated (landmarks on the "
                                         "degraded frames, smoothed) unless gt (upper bound)",
                               "frames": "RGB uint8; LQ resized (bicubic) to the model size when it "
                                         "differs, output back to the GT size; fixed noise"},
               "datasets": {k: {kk: vv for kk, vv in v.items() if kk != "rows"} for k, v in sets.items()}}
    write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2, allow_nan=True))
    write_text_atomic(run_dir / "summary.md", markdown_table(summary))
    return dict(summary, run_dir=str(run_dir), rows={k: v["rows"] for k, v in sets.items()})


def run_video_eval(path, overrides: Sequence[str] = (), force: bool = False,
                   no_temporal: bool = False) -> None:
    """The ``gfpgan.test`` hook for ``mode: video`` options: set up ranks, evaluate, print the table."""
    opt = load_video_options(path, overrides)

    def body(dist, say):
        summary = evaluate_video(opt, dist, force, no_temporal, say)
        if dist.is_main:
            print(markdown_table(summary), end="")
            print(f"results in {summary['run_dir']}")
    run_on_ranks(opt["device"], body)


def metric_row(summary: dict, dataset: str) -> Dict[str, float]:
    """The mean metrics of one set of a summary, with ``sec_per_face`` (for the benchmark)."""
    d = summary["datasets"][dataset]
    return dict(d["metrics"], sec_per_face=d["sec_per_face"])
