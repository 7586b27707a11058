"""Video evaluation (gfpgan.test with ``mode: video``) and the temporal benchmark on a tiny synthetic
set: an untrained temporal file gives exactly the per-frame numbers, a perturbed one differs, the
metrics are real values (E_warp of the GT is its floor), 2 gloo ranks equal 1 process, and bad
input is one sentence."""

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

    from gfpgan.archs import GFPGANv1Clean
    from gfpgan.archs.temporal_arch import TemporalGFPGAN
    from gfpgan.checkpoint import save_network
    from gfpgan.images import write_image_atomic
    from gfpgan.temporal_file import save_temporal
    from gfpgan.tools.make_video_testset import make_video_testset

    root = tmp_path_factory.mktemp("veval")
    hq = root / "hq"
    hq.mkdir()
    for i, f in enumerate(skimage.data.lfw_subset()[:3]):  # real 25x25 gray faces
        write_image_atomic(hq / f"face{i:02d}.png",
                           np.repeat((f * 255).round().astype(np.uint8)[..., None], 3, axis=2))
    make_video_testset(hq, root / "set", frames=4, size=32, codec_prob=0.0, progress=False)
    torch.manual_seed(0)
    base = GFPGANv1Clean(**TINY_GFPGAN).eval()
    save_network(root / "base.safetensors", base, "GFPGANv1Clean", TINY_GFPGAN)
    net = TemporalGFPGAN(base, num_scales=2, hidden_channels=8).eval()
    save_temporal(root / "untrained.safetensors", net, base_name="base.safetensors")
    with torch.no_grad():
        for p in net.proj.parameters():  # a random projection: the adapter now changes the output
            p.normal_(0, 0.05)
    save_temporal(root / "random.safetensors", net, base_name="base.safetensors")
    return root


def _options(root: Path, name: str, temporal: str = "untrained", **over) -> Path:
    opt = {"mode": "video", "name": name, "model": str(root / "base.safetensors"),
           "temporal": str(root / f"{temporal}.safetensors") if temporal else None, "device": "cpu",
           "datasets": {"tiny": {"dataroot": str(root / "set")}},
           "metrics": {"psnr": {"crop_border": 0, "test_y_channel": False}, "ssim": None,
                       "lpips": {"net": "alex", "trunk_path": str(root / "missing" / "alexnet.pth")},
                       "deg": None, "lmd": None},
           "path": {"results_root": str(root / "results")}, **over}
    path = root / f"{name}.yml"
    path.write_text(yaml.safe_dump(opt))
    return path


def _summary(root: Path, name: str, mode: str) -> dict:
    return json.loads((root / "results" / name / mode / "summary.json").read_text())


def test_untrained_file_equals_per_frame_and_random_one_differs(setup, capsys):
    from gfpgan.test import main

    assert main(["-opt", str(_options(setup, "untrained"))]) == 0
    assert main(["-opt", str(_options(setup, "untrained")), "--no-temporal"]) == 0
    assert main(["-opt", str(_options(setup, "random", "random"))]) == 0
    out = capsys.readouterr().out
    assert "alexnet.pth" in out  # LPIPS skipped with a line naming its file, the rest measured
    t, f = _summary(setup, "untrained", "temporal"), _summary(setup, "untrained", "per_frame")
    r = _summary(setup, "random", "temporal")
    assert t["mode"] == "temporal" and f["mode"] == "per_frame" and f["temporal"] is None
    tm, fm, rm = (s["datasets"]["tiny"]["metrics"] for s in (t, f, r))
    assert set(tm) == {"psnr", "ewarp", "ewarp_gt"} and "lpips" not in tm
    assert tm == fm and rm["psnr"] != fm["psnr"] and rm["ewarp"] != fm["ewarp"]
    assert 5 < fm["psnr"] < 40 and fm["ewarp"] > 0 and rm["ewarp_gt"] == fm["ewarp_gt"]
    assert fm["ewarp_gt"] < fm["ewarp"]  # exact flow: the GT's own warping error is the floor
    d = t["datasets"]["tiny"]
    assert d["num_clips"] == 3 and d["frames"] == 12 and d["restored"] == 12 and d["sec_per_face"] > 0
    tdir = setup / "results" / "untrained" / "temporal" / "tiny"
    rows = list(csv.DictReader((tdir / "metrics.csv").open()))
    assert [r["name"] for r in rows] == ["face00", "face01", "face02"]
    assert np.isclose(np.mean([float(r["psnr"]) for r in rows]), tm["psnr"], atol=1e-5)
    restored = sorted((setup / "results" / "untrained" / "temporal" / "tiny" / "restored").rglob("*.png"))
    assert len(restored) == 12
    md = (setup / "results" / "untrained" / "temporal" / "summary.md").read_text()
    assert "| tiny | 3 |" in md and "ewarp ↓" in md


def test_repeat_reuses_frames_and_bad_input_is_one_sentence(setup, tmp_path, capsys):
    import shutil

    from gfpgan.errors import UserError
    from gfpgan.test import main

    assert main(["-opt", str(_options(setup, "again", None))]) == 0
    assert main(["-opt", str(_options(setup, "again", None))]) == 0
    s = _summary(setup, "again", "per_frame")["datasets"]["tiny"]
    assert s["restored"] == 0 and s["reused"] == 12 and s["sec_per_face"] is None
    # a temporal file for another base
    torch.manual_seed(5)
    from gfpgan.archs import GFPGANv1Clean
    from gfpgan.checkpoint import save_network

    save_network(tmp_path / "other.safetensors", GFPGANv1Clean(**TINY_GFPGAN), "GFPGANv1Clean", TINY_GFPGAN)
    bad = _options(setup, "other", model=str(tmp_path / "other.safetensors"))
    with pytest.raises(UserError, match="was trained on base.safetensors"):
        main(["-opt", str(bad), "--force"])
    # a missing frame
    broken = tmp_path / "broken"
    shutil.copytree(setup / "set", broken)
    (broken / "lq" / "face01" / "00002.png").unlink()
    opt = _options(setup, "broken", datasets={"tiny": {"dataroot": str(broken)}})
    with pytest.raises(UserError, match=r"clip face01 .* lacks 1 lq frame"):
        main(["-opt", str(opt)])
    assert not (setup / "results" / "broken" / "temporal" / "summary.json").exists()


def test_two_gloo_ranks_match_one_process(setup):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    r2 = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                         "-m", "gfpgan.test", "-opt", str(_options(setup, "ddp", "random"))], env=env,
                        capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0, r2.stderr[:3000] + " ... " + r2.stderr[-1000:]
    from gfpgan.test import main

    assert main(["-opt", str(_options(setup, "single", "random"))]) == 0
    s1, s2 = _summary(setup, "single", "temporal"), _summary(setup, "ddp", "temporal")
    assert s2["datasets"]["tiny"]["metrics"] == s1["datasets"]["tiny"]["metrics"]
    c1 = (setup / "results" / "single" / "temporal" / "tiny" / "metrics.csv").read_text()
    c2 = (setup / "results" / "ddp" / "temporal" / "tiny" / "metrics.csv").read_text()
    assert c1 == c2 and c1.count("\n") == 4


def test_bench_temporal_untrained_equals_per_frame(setup, tmp_path, capsys):
    """The benchmark's two rows come from the same base: an untrained adapter matches frame by frame
    exactly on every metric; a random one does not; the cost rows are real timings."""
    from gfpgan.tools.bench_temporal import main

    common = ["--model", str(setup / "base.safetensors"), "--set", str(setup / "set"), "--repeats", "3",
              "--lpips-trunk", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "work")]
    for name, out in (("untrained", "u.json"), ("random", "r.json")):
        temporal = str(setup / f"{name}.safetensors")
        assert main([*common, "--temporal", temporal, "--json", str(tmp_path / out)]) == 0
    out = capsys.readouterr().out
    assert "| frame by frame |" in out and "| change (estimated motion) |" in out and "cost at 32 px" in out
    assert "| temporal (estimated motion) |" in out and "| ground truth (E_warp floor) |" in out
    assert "upper bound" not in out  # the exact motion only when asked
    u, r = (json.loads((tmp_path / f"{k}.json").read_text()) for k in ("u", "r"))
    uq, rq = u["quality"], r["quality"]
    keys = {"psnr", "ssim", "ewarp", "ewarp_gt"}
    assert keys <= set(uq["temporal"]) and "lpips" not in uq["temporal"]  # its trunk file is missing
    assert all(uq["temporal"][k] == uq["per_frame"][k] for k in keys)
    assert rq["per_frame"]["psnr"] == uq["per_frame"]["psnr"]  # same base, same set
    assert rq["temporal"]["psnr"] != rq["per_frame"]["psnr"]
    assert rq["temporal"]["ewarp"] != rq["per_frame"]["ewarp"]
    assert u["quality"]["ground_truth"]["ewarp"] == uq["per_frame"]["ewarp_gt"] > 0
    assert u["motion"] == "estimated" and "temporal_gt_motion" not in uq
    c = u["cost"]["model"]
    assert c["size"] == 32 and c["per_frame_s"] > 0 and c["temporal_s"] > 0
    assert c["state_bytes_per_track"] == 4 * (8 * 8 * 8 + 8 * 16 * 16 + 3 * 16 * 16)


def test_bench_temporal_cost_512_wraps_the_v14_architecture_with_the_512_recipes_module():
    """--cost-512 times the 512 recipe's own module (its network_g) around the GFPGANv1.4
    architecture, every added path live (no zero projection left)."""
    from gfpgan.archs import GFPGANv1Clean
    from gfpgan.options import load_yaml
    from gfpgan.tools.bench_temporal import adapter_at_512

    recipe = "options/train_temporal_512.yml"
    big = adapter_at_512(os.path.join(os.path.dirname(__file__), "..", recipe))
    want = load_yaml(os.path.join(os.path.dirname(__file__), "..", recipe))["network_g"]
    assert isinstance(big.base, GFPGANv1Clean) and big.out_size == 512 and not big.training
    assert (big.num_scales, big.hidden_channels, big.fusion) == (want["num_scales"], want["hidden_channels"],
                                                                 want.get("fusion", False))
    assert big.base.conv_body_first.weight.shape[0] == 32  # channel_multiplier 2 at 512 px: 32 channels
    assert all(p.any() for n, p in big.named_parameters() if not n.startswith("base."))


def test_bench_temporal_exact_motion_is_a_labelled_extra_row(setup, tmp_path, capsys):
    from gfpgan.tools.bench_temporal import main

    assert main(["--model", str(setup / "base.safetensors"), "--set", str(setup / "set"), "--repeats", "1",
                 "--lpips-trunk", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "work"),
                 "--temporal", str(setup / "random.safetensors"), "--gt-motion",
                 "--json", str(tmp_path / "g.json")]) == 0
    out = capsys.readouterr().out
    assert "| temporal, exact motion (upper bound) |" in out and "| temporal (estimated motion) |" in out
    q = json.loads((tmp_path / "g.json").read_text())["quality"]
    assert q["temporal_gt_motion"]["psnr"] != q["temporal"]["psnr"]  # the two motions differ
    assert q["temporal_gt_motion"]["ewarp_gt"] == q["temporal"]["ewarp_gt"]  # the same floor


def test_bench_temporal_refuses_a_file_for_another_base(setup, tmp_path):
    from gfpgan.archs import GFPGANv1Clean
    from gfpgan.checkpoint import save_network
    from gfpgan.errors import UserError
    from gfpgan.tools.bench_temporal import main

    torch.manual_seed(7)
    save_network(tmp_path / "other.safetensors", GFPGANv1Clean(**TINY_GFPGAN), "GFPGANv1Clean", TINY_GFPGAN)
    with pytest.raises(UserError, match="was trained on base.safetensors"):
        main(["--model", str(tmp_path / "other.safetensors"), "--temporal",
              str(setup / "untrained.safetensors"), "--set", str(setup / "set"),
              "--out", str(tmp_path / "work")])
    assert not (tmp_path / "work").exists()
