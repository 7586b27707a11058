"""gfpgan.test end to end on a tiny generated paired set with a tiny model: outputs agree, a
missing weight file skips exactly that metric, repeated runs reuse restored images, and a
2-process gloo run under torchrun gives the same numbers as one process."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.helpers import TINY_GFPGAN


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import skimage.data
    import torchvision

    from gfpgan.archs import GFPGANv1Clean
    from gfpgan.images import write_image_atomic
    from gfpgan.tools.export import save_ema_only
    from gfpgan.tools.make_testset import main as make_testset

    root = tmp_path_factory.mktemp("eval")
    hq = root / "hq"
    hq.mkdir()
    faces = skimage.data.lfw_subset()[:5]  # real 25x25 gray faces
    for i, f in enumerate(faces):
        img = np.repeat((f * 255).round().astype(np.uint8)[..., None], 3, axis=2)
        write_image_atomic(hq / f"face{i:02d}.png", img)
    assert make_testset([str(hq), str(root / "set"), "--setting", "blind", "--size", "32", "--quiet"]) == 0
    torch.manual_seed(0)
    (root / "run" / "models").mkdir(parents=True)
    save_ema_only(root / "run" / "models" / "net_g_ema_10.safetensors",
                  GFPGANv1Clean(**TINY_GFPGAN).eval(), "GFPGANv1Clean", TINY_GFPGAN, "test", False)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), root / "alexnet-owt-7be5be79.pth")
    return root


def _options(root: Path, name: str, **metric_over) -> Path:
    metrics = {"psnr": {"crop_border": 0, "test_y_channel": False},
               "ssim": {"crop_border": 2, "test_y_channel": True},
               "lpips": {"net": "alex", "trunk_path": str(root / "alexnet-owt-7be5be79.pth")},
               "fid": {"inception_path": str(root / "missing" / "pt_inception-2015-12-05-6726825d.pth")},
               "niqe": None, "deg": None, "lmd": None}
    metrics.update(metric_over)
    opt = {"name": name, "model": str(root / "run"), "device": "cpu", "batch_size": 2,
           "datasets": {"tiny": {"type": "paired", "dataroot_lq": str(root / "set" / "blind" / "lq"),
                                 "dataroot_gt": str(root / "set" / "blind" / "gt")}},
           "metrics": metrics, "path": {"results_root": str(root / "results")}}
    path = root / f"{name}.yml"
    path.write_text(yaml.safe_dump(opt))
    return path


def test_outputs_agree_and_missing_weight_skips_only_that_metric(setup, capsys):
    from gfpgan.images import read_image
    from gfpgan.metrics import calculate_psnr
    from gfpgan.test import main

    assert main(["-opt", str(_options(setup, "one"))]) == 0
    out = capsys.readouterr().out
    fid_lines = [line for line in out.splitlines() if "FID skipped" in line]
    assert len(fid_lines) == 1 and "pt_inception-2015-12-05-6726825d.pth" in fid_lines[0]
    run = setup / "results" / "one"
    summary = json.loads((run / "summary.json").read_text())
    d = summary["datasets"]["tiny"]
    assert d["num_images"] == 5 and d["restored"] == 5 and d["reused"] == 0
    assert set(d["metrics"]) == {"psnr", "ssim", "lpips"} and set(d["skipped"]) == {"fid"}
    rows = list(csv.DictReader((run / "tiny" / "metrics.csv").open()))
    assert [r["name"] for r in rows] == [f"face{i:02d}" for i in range(5)]
    for m in ("psnr", "ssim", "lpips"):
        assert d["metrics"][m] == pytest.approx(np.mean([float(r[m]) for r in rows]), abs=1e-5)
        assert f"{d['metrics'][m]:.4f}" in (run / "summary.md").read_text()
    assert "| tiny | 5 |" in out  # the table is printed too
    # the CSV's PSNR is the PSNR of the restored file against the GT
    restored = read_image(run / "tiny" / "restored" / "face03.png")
    gt = read_image(setup / "set" / "blind" / "gt" / "face03.png")
    assert float(rows[3]["psnr"]) == pytest.approx(calculate_psnr(restored, gt), abs=1e-5)
    assert 0 < d["metrics"]["lpips"] and 0 < d["metrics"]["psnr"] < 40


def test_repeated_run_restores_nothing_twice(setup, capsys):
    from gfpgan.test import main

    opt = _options(setup, "again")
    assert main(["-opt", str(opt)]) == 0
    first = json.loads((setup / "results" / "again" / "summary.json").read_text())
    files = sorted((setup / "results" / "again" / "tiny" / "restored").glob("*.png"))
    stamps = [f.stat().st_mtime_ns for f in files]
    assert main(["-opt", str(opt)]) == 0
    second = json.loads((setup / "results" / "again" / "summary.json").read_text())
    assert second["datasets"]["tiny"]["restored"] == 0 and second["datasets"]["tiny"]["reused"] == 5
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert second["datasets"]["tiny"]["metrics"] == first["datasets"]["tiny"]["metrics"]


def test_bad_options_are_one_line_errors(setup, tmp_path):
    opt = yaml.safe_load(_options(setup, "bad").read_text())
    opt["metrics"]["psnrr"] = {}
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(opt))
    res = subprocess.run([sys.executable, "-m", "gfpgan.test", "-opt", str(path)], capture_output=True,
                         text=True)
    assert res.returncode != 0 and "psnrr" in res.stderr and "did you mean" in res.stderr
    assert "Traceback" not in res.stderr


def test_two_gloo_ranks_match_one_process(setup):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    opt1, opt2 = _options(setup, "single"), _options(setup, "ddp")
    r1 = subprocess.run([sys.executable, "-m", "gfpgan.test", "-opt", str(opt1)], env=env,
                        capture_output=True, text=True, timeout=300)
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                         "-m", "gfpgan.test", "-opt", str(opt2)], env=env, capture_output=True, text=True,
                        timeout=300)
    assert r2.returncode == 0, r2.stderr[:3000] + " ... " + r2.stderr[-1000:]
    s1 = json.loads((setup / "results" / "single" / "summary.json").read_text())["datasets"]["tiny"]
    s2 = json.loads((setup / "results" / "ddp" / "summary.json").read_text())["datasets"]["tiny"]
    assert s2["restored"] == 5 and s2["metrics"] == s1["metrics"]
    c1 = (setup / "results" / "single" / "tiny" / "metrics.csv").read_text()
    c2 = (setup / "results" / "ddp" / "tiny" / "metrics.csv").read_text()
    assert c1 == c2
