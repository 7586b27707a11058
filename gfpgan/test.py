"""Evaluation entry point: restore a test set and measure PSNR, SSIM, LPIPS, FID, NIQE, Deg, LMD.

    python -m gfpgan.test -opt options/test_celeba_test.yml [key.sub=value ...]
    torchrun --nproc_per_node=8 -m gfpgan.test -opt options/test_celeba_test.yml

An options file with ``mode: video`` evaluates a video test set instead (clips restored frame to
frame with an optional temporal module; see :mod:`gfpgan.engine.video_eval`).

The model is a run folder (newest EMA generator), a checkpoint (ours or an official ``.pth``) or a
model card. A paired dataset (``dataroot_lq`` + ``dataroot_gt``, as ``gfpgan.tools.make_testset``
writes) gets every metric; an unpaired one (real-world LQ only: LFW-Test, CelebChild, WebPhoto)
gets FID and NIQE. Outputs under ``<results_root>/<name>/<dataset>/``: ``restored/<stem>.png``,
``metrics.csv`` (one row per image), and per run ``summary.json`` and ``summary.md``. Restored
images that already exist are reused (``--force`` redoes them). Work is split across torchrun
ranks by whole batches (so the batches, hence the numbers, do not depend on the world size), rows
and Inception features are gathered, and rank 0 writes the results. A metric whose weight file
is missing is skipped with one line naming the file; the others still run.
"""

import argparse
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from gfpgan.cli import add_common_arguments
from gfpgan.engine.eval_common import (
    ORDER,
    PAIRED_METRIC_SECTIONS,
    PAIRED_METRICS,
    build_metrics,
    csv_text,
    model_spec,
    resize_to,
    run_on_ranks,
)
from gfpgan.errors import UserError, command
from gfpgan.files import write_text_atomic
from gfpgan.options import Field, MapOf, Section, apply_overrides, load_yaml, validate

IMG_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
HIGHER_BETTER = {"psnr", "ssim"}

TEST_SCHEMA = Section({
    "name": Field(str, required=True, nullable=False, help="results go to <results_root>/<name>"),
    "model": Field(str, required=True, nullable=False, help="run folder, checkpoint file or model card"),
    "device": Field(str, "auto", help="auto | cpu | cuda"),
    "batch_size": Field(int, 4, min=1, help="faces per forward pass"),
    "save_images": Field(bool, True, help="keep the restored images (needed to skip them next time)"),
    "datasets": MapOf(Section({
        "type": Field(str, "paired", choices=["paired", "unpaired"], help="paired: LQ+GT; unpaired: LQ only"),
        "dataroot_lq": Field(str, required=True, nullable=False, path="dir", help="low-quality faces"),
        "dataroot_gt": Field(str, None, path="dir", help="ground truth (paired only)"),
    }), required=True, nullable=False, help="name -> dataset"),
    "metrics": Section({
        **PAIRED_METRIC_SECTIONS,
        "fid": Section({"inception_path": Field(str, None, help="pt_inception-2015-12-05-6726825d.pth"),
                        "stats_path": Field(str, None, help=".npz mu/sigma; null: the GT images")},
                       nullable=True),
        "niqe": Section({"crop_border": Field(int, 0, min=0), "params_path": Field(str, None)},
                        nullable=True),
    }),
    "path": Section({"results_root": Field(str, "results")}),
})


def load_test_options(path, overrides: Sequence[str] = ()) -> dict:
    """Read, override and validate an evaluation YAML."""
    raw = load_yaml(path)
    keys = apply_overrides(raw, overrides)
    opt = validate(raw, TEST_SCHEMA, where=str(path), overridden=keys)
    for dname, ds in opt["datasets"].items():
        if ds["type"] == "paired" and not ds.get("dataroot_gt"):
            raise UserError(f"dataset '{dname}' in {path} is paired but has no dataroot_gt; add it or set "
                            f"type: unpaired")
    return opt


def list_images(folder: str) -> List[Path]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMG_EXT)
    if not files:
        raise UserError(f"no images ({', '.join(IMG_EXT)}) in {folder}; check dataroot_lq")
    return files


def _restore(model, lq_imgs: List[np.ndarray]) -> List[np.ndarray]:
    import torch

    from gfpgan.images import img_to_tensor, tensor_to_img

    batch = resize_to(lq_imgs, model.size)
    with torch.no_grad():
        out = model(img_to_tensor(np.stack(batch)).to(model.device))
    return [tensor_to_img(o) for o in out.cpu()]


def evaluate_dataset(opt: dict, dname: str, ds: dict, dist, model_box: dict, force: bool, say) -> dict:
    """Restore and measure this rank's share of one dataset; returns rows/features to gather."""
    from gfpgan.images import read_image, write_image_atomic

    paired = ds["type"] == "paired"
    out_dir = Path(opt["path"]["results_root"]) / opt["name"] / dname
    rest_dir = out_dir / "restored"
    rest_dir.mkdir(parents=True, exist_ok=True)
    files = list_images(ds["dataroot_lq"])
    gt_of = {}
    if paired:
        gts = {p.stem: p for p in list_images(ds["dataroot_gt"])}
        missing = [p.name for p in files if p.stem not in gts]
        if missing:
            raise UserError(f"{len(missing)} LQ image(s) have no GT of the same name in {ds['dataroot_gt']} "
                            f"(first: {missing[0]}); fix the folders")
        gt_of = {p.stem: gts[p.stem] for p in files}
    bs = opt["batch_size"]
    batches = [files[i:i + bs] for i in range(0, len(files), bs)]
    mine = batches[dist.rank::dist.world_size]  # whole batches: same batches at any world size
    metrics, skipped = build_metrics(opt["metrics"], paired, dist.device, say)
    rows, feats, gt_feats, restored, reused = [], [], [], 0, 0
    for batch in mine:
        targets = [rest_dir / f"{p.stem}.png" for p in batch]
        todo = [i for i, t in enumerate(targets) if force or not t.is_file()]
        outs = {i: read_image(t) for i, t in enumerate(targets) if i not in todo}
        if todo:
            if model_box.get("model") is None:
                from gfpgan.inference.faces.model import load_face_model

                # fp32: the figures are the network's, the same on every CPU (not the CPU default, bf16)
                model_box["model"] = load_face_model(model_spec(opt["model"]), device=str(dist.device),
                                                     precision="fp32", fixed_noise=True)
            res = _restore(model_box["model"], [read_image(batch[i]) for i in todo])
            for i, img in zip(todo, res):
                outs[i] = img
                if opt["save_images"]:
                    write_image_atomic(targets[i], img)
        restored += len(todo)
        reused += len(batch) - len(todo)
        gts = [read_image(gt_of[p.stem]) for p in batch] if paired else []
        for i, p in enumerate(batch):
            row = {"name": p.stem}
            for m in PAIRED_METRICS:
                if m in metrics:
                    row[m] = float(metrics[m](outs[i], gts[i]))
            if "niqe" in metrics:
                row["niqe"] = float(metrics["niqe"](outs[i]))
            rows.append(row)
        if "fid" in metrics:
            feats.append(metrics["fid"].features([outs[i] for i in range(len(batch))]))
            if paired and metrics["fid"].ref is None:
                gt_feats.append(metrics["fid"].features(gts))
    return {"rows": rows, "feats": feats, "gt_feats": gt_feats, "restored": restored, "reused": reused,
            "skipped": skipped, "metrics": list(metrics), "fid": metrics.get("fid"), "out_dir": out_dir,
            "num": len(files)}


def reduce_dataset(part: dict, dist) -> Optional[dict]:
    """Gather every rank's rows and features; rank 0 returns the dataset summary."""
    shared = {k: part[k] for k in ("rows", "feats", "gt_feats", "restored", "reused")}
    from gfpgan.dist import gather_objects

    parts = gather_objects(shared, dist)
    if not dist.is_main:
        return None
    rows = sorted((r for p in parts for r in p["rows"]), key=lambda r: r["name"])
    means, counts = {}, {}
    for m in ORDER:
        vals = [r[m] for r in rows if m in r and math.isfinite(r[m])]
        if any(m in r for r in rows):
            means[m], counts[m] = (float(np.mean(vals)) if vals else float("nan")), len(vals)
    if part["fid"] is not None:
        feats = np.concatenate([f for p in parts for f in p["feats"]])
        gt = [f for p in parts for f in p["gt_feats"]]
        means["fid"] = part["fid"].score(feats, np.concatenate(gt) if gt else None)
        counts["fid"] = len(feats)
    return {"num_images": part["num"], "restored": sum(p["restored"] for p in parts),
            "reused": sum(p["reused"] for p in parts), "metrics": means, "counts": counts,
            "skipped": part["skipped"], "rows": rows}


def markdown_table(summary: dict) -> str:
    """One row per dataset, one column per measured metric (arrows: which way is better)."""
    cols = [m for m in ORDER if any(m in d["metrics"] for d in summary["datasets"].values())]
    arrows = {m: "↑" if m in HIGHER_BETTER else "↓" for m in cols}
    head = "| dataset | images | " + " | ".join(f"{m.upper()} {arrows[m]}" for m in cols)
    lines = [head + " |", "|---|---:|" + "---:|" * len(cols)]
    for dname, d in summary["datasets"].items():
        vals = [f"{d['metrics'][m]:.4f}" if m in d["metrics"] else "–" for m in cols]
        lines.append(f"| {dname} | {d['num_images']} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(opt: dict, summary: dict, out_dirs: Dict[str, Path]) -> Path:
    """Per-image CSV per dataset, then summary.json and summary.md for the run (all atomic)."""
    for dname, d in summary["datasets"].items():
        cols = ["name"] + [m for m in ORDER if m != "fid" and any(m in r for r in d["rows"])]
        write_text_atomic(out_dirs[dname] / "metrics.csv", csv_text(d["rows"], cols))
    run_dir = Path(opt["path"]["results_root"]) / opt["name"]
    public = {"name": opt["name"], "model": opt["model"], "conventions": {
        "psnr": opt["metrics"].get("psnr"), "ssim": opt["metrics"].get("ssim"),
        "images": "RGB uint8; LQ resized (bicubic) to the model size when it differs; fixed noise"},
        "datasets": {k: {kk: vv for kk, vv in v.items() if kk != "rows"}
                     for k, v in summary["datasets"].items()}}
    write_text_atomic(run_dir / "summary.json", json.dumps(public, indent=2, allow_nan=True))
    write_text_atomic(run_dir / "summary.md", markdown_table(summary))
    return run_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gfpgan.test", description=__doc__.split("\n")[0])
    p.add_argument("-opt", "--opt", required=True, help="evaluation options YAML")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. batch_size=8")
    p.add_argument("--force", action="store_true", help="restore again even where results exist")
    p.add_argument("--no-temporal", action="store_true",
                   help="video sets (mode: video): run the base frame by frame, ignoring the temporal file")
    add_common_arguments(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    raw = load_yaml(args.opt)
    if isinstance(raw, dict) and raw.get("mode") == "video":  # a video test set: gfpgan.engine.video_eval
        from gfpgan.engine.video_eval import run_video_eval

        run_video_eval(args.opt, args.overrides, force=args.force, no_temporal=args.no_temporal)
        return 0
    opt = load_test_options(args.opt, args.overrides)

    def body(dist, say):
        model_box, summary, out_dirs = {}, {"datasets": {}}, {}
        for dname, ds in opt["datasets"].items():
            part = evaluate_dataset(opt, dname, ds, dist, model_box, args.force, say)
            out_dirs[dname] = part["out_dir"]
            reduced = reduce_dataset(part, dist)
            if reduced is not None:
                summary["datasets"][dname] = reduced
                say(f"{dname}: {reduced['num_images']} images, restored {reduced['restored']}, "
                    f"reused {reduced['reused']}")
        if dist.is_main:
            run_dir = write_outputs(opt, summary, out_dirs)
            print(markdown_table(summary), end="")
            print(f"results in {run_dir}")
    run_on_ranks(opt["device"], body)
    return 0


cli = command(main)  # the console script

if __name__ == "__main__":
    cli()
