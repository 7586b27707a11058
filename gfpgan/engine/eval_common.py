"""What the image and the video evaluations share: the paired metric options, building the metrics,
the model spec of a run folder, resizing and CSV text. Both entry points import it (neither
imports the other's module)."""

import csv
import io
import os
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

from gfpgan.options import Field, Section

PAIRED_METRICS = ("psnr", "ssim", "lpips", "deg", "lmd")
ORDER = ("psnr", "ssim", "lpips", "fid", "niqe", "deg", "lmd")

_CONV = Section({"crop_border": Field(int, 0, min=0, help="pixels removed on each side"),
                 "test_y_channel": Field(bool, False, help="measure BT.601 Y instead of RGB")}, nullable=True)
# the metric sections of paired sets (images and video)
PAIRED_METRIC_SECTIONS = {
    "psnr": _CONV, "ssim": _CONV,
    "lpips": Section({"net": Field(str, "alex", choices=["alex", "vgg"]),
                      "trunk_path": Field(str, None, help="alexnet-owt-7be5be79.pth (or folder)")},
                     nullable=True),
    "deg": Section({"arcface_path": Field(str, None, help="arcface_resnet18.pth (or folder)")},
                   nullable=True),
    "lmd": Section({"detector": Field(str, "mtcnn", choices=["mtcnn", "retinaface"]),
                    "weights": Field(str, None, help="RetinaFace weights")}, nullable=True),
}

def build_metrics(mopt: dict, paired: bool, device, say) -> Dict[str, object]:
    """Instantiate the enabled metrics; a missing weight file skips only that metric (one line)."""
    from gfpgan import metrics as M

    builders = {
        "psnr": lambda o: (lambda a, b: M.calculate_psnr(a, b, **o)),
        "ssim": lambda o: (lambda a, b: M.calculate_ssim(a, b, **o)),
        "lpips": lambda o: M.LPIPSMetric(net=o["net"], trunk_path=o["trunk_path"], device=str(device)),
        "fid": lambda o: M.FIDMetric(inception_path=o["inception_path"], stats_path=o["stats_path"],
                                     device=str(device)),
        "niqe": lambda o: M.NIQE(crop_border=o["crop_border"], params_path=o["params_path"]),
        "deg": lambda o: M.IdentityMetric(arcface_path=o["arcface_path"], device=str(device)),
        "lmd": lambda o: M.LandmarkMetric(detector=o["detector"], weights=o["weights"], device=str(device)),
    }
    out, skipped = {}, {}
    for name in ORDER:
        o = mopt.get(name)
        if o is None or (not paired and name in PAIRED_METRICS):
            continue
        if name == "fid" and not paired and not o.get("stats_path"):
            skipped[name] = "an unpaired set needs metrics.fid.stats_path (python -m gfpgan.tools.fid_stats)"
            say(f"FID skipped: {skipped[name]}")
            continue
        try:
            out[name] = builders[name](o)
        except M.MissingWeightsError as exc:
            skipped[name] = str(exc)
            say(str(exc))
    return out, skipped


def resize_to(imgs: List[np.ndarray], s: int) -> List[np.ndarray]:
    """Images resized (bicubic) to ``s`` x ``s`` where they differ."""
    import cv2

    return [im if im.shape[:2] == (s, s) else cv2.resize(im, (s, s), interpolation=cv2.INTER_CUBIC)
            for im in imgs]


def model_spec(spec: str) -> str:
    """The model file of a spec: a run folder gives its newest EMA generator, else ``spec`` itself."""
    if os.path.isdir(spec):
        from gfpgan.tools.export import find_run_checkpoint

        return str(find_run_checkpoint(Path(spec)))
    return spec


def csv_text(rows: List[dict], cols: List[str]) -> str:
    """CSV of ``rows`` (dicts) with the columns ``cols``; floats with 6 decimals."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def run_on_ranks(device: str, body: Callable) -> None:
    """Run ``body(dist, say)`` on every torchrun rank (or the one process): ``say`` prints on rank 0
    only; the process group is torn down after (with a barrier only on success: a failed rank's
    peers may never reach one)."""
    from gfpgan.dist import cleanup, init_dist

    dist = init_dist(device)

    def say(msg):
        if dist.is_main:
            print(msg, flush=True)

    failed = False
    try:
        body(dist, say)
    except BaseException:
        failed = True
        raise
    finally:
        cleanup(synchronize=not failed)
