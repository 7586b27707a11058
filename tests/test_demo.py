"""The main job (`make demo` = `python -m gfpgan.demo`) in a smaller setting, end to end."""

import json
import subprocess
import sys

import av
import pytest
import torch

import gfpgan.archs  # noqa: F401  (registers the architectures)
from gfpgan.checkpoint import save_network
from gfpgan.registry import ARCH_REGISTRY

OUTPUTS = ("restored.mp4", "side_by_side.mp4", "restored_no_stabilization.mp4", "metrics.json",
           "metrics.md", "demo.png")


def _demo(tmp_path, *args):
    cmd = [sys.executable, "-m", "gfpgan.demo", "--out", str(tmp_path / "out"), "--frames", "6",
           "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "faces"),
           "--heldout-dir", str(tmp_path / "heldout"), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return tmp_path / "out"


def _check_outputs(out, trained: bool):
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "metrics.json").read_text())
    metrics = summary["metrics"]
    versions = {"degraded input", "restored, frame by frame", "restored, no stabilization"}
    assert set(metrics) == versions | ({"restored, temporal"} if trained else set())
    for row in metrics.values():
        assert 5 < row["psnr"] < 60 and 0 < row["ssim"] <= 1 and row["frames"] == 6
        # the face's window is a part of the frame: its scores differ from the whole frame's
        assert 5 < row["face_psnr"] < 60 and row["face_psnr"] != row["psnr"]
    # the restored clip is really another video than the degraded input
    assert metrics["restored, frame by frame"]["psnr"] != metrics["degraded input"]["psnr"]
    table = (out / "metrics.md").read_text()
    assert f"{metrics['restored, frame by frame']['face_psnr']:.4f}" in table
    with av.open(str(out / "restored.mp4")) as c:  # frames and audio survive
        assert c.streams.video[0].frames in (0, 6) and len(c.streams.audio) == 1
        assert sum(1 for _ in c.decode(video=0)) == 6
    with av.open(str(out / "side_by_side.mp4")) as c:
        v = c.streams.video[0]
        assert v.width == 2 * v.height  # input | restored
    assert ("train_s" in summary["steps"]) == trained
    # personalization: an unseen person's near frames teach the base, its far frames are scored
    personal = summary["bench_personal"]
    assert set(personal["rows"]) == {"input", "base", "personal (adapter)", "personal (adapter, ungated)"}
    assert personal["targets"] > 0 and max(personal["target_frames"]) < 3  # near frames only
    assert "| personal (adapter) |" in table


@pytest.mark.slow
def test_demo_trains_exports_restores_and_evaluates(tmp_path):
    out = _demo(tmp_path, "--iters", "4", "--temporal-iters", "4", "--procs", "1")
    _check_outputs(out, trained=True)
    assert (out / "model" / "generator.safetensors").exists()
    assert list((tmp_path / "runs" / "demo_tiny" / "models").glob("net_g_ema_*.safetensors"))
    assert len(list((tmp_path / "faces").glob("*.png"))) == 200  # 80 LFW faces + 120 astronaut crops
    heldout = sorted(f.name for f in (tmp_path / "heldout").glob("*.png"))
    assert heldout == [f"lfw_{i:03d}.png" for i in range(80, 100)]  # never seen in training
    # the temporal module: trained around the frozen base, restored with, benchmarked on held-out clips
    assert (out / "model" / "temporal.safetensors").exists()
    with av.open(str(out / "restored_temporal.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 6 and len(c.streams.audio) == 1
    bench = json.loads((out / "bench_temporal.json").read_text())
    # estimated motion (what inference has), the exact-motion bound, labelled, and the E_warp floor
    assert set(bench["quality"]) == {"per_frame", "temporal", "temporal_gt_motion", "ground_truth"}
    assert bench["end_to_end"]  # the held-out clips through infer_video
    assert "| frame by frame |" in (out / "metrics.md").read_text()


def test_demo_with_given_weights_skips_training(tmp_path):
    kwargs = dict(out_size=64, num_style_feat=32, channel_multiplier=1, fix_decoder=False,
                  input_is_latent=True, different_w=True, narrow=0.125, sft_half=True)
    torch.manual_seed(0)
    net = ARCH_REGISTRY.build(dict(type="GFPGANv1Clean", **kwargs))
    save_network(tmp_path / "given.safetensors", net, "GFPGANv1Clean", kwargs)
    out = _demo(tmp_path, "--weights", str(tmp_path / "given.safetensors"))
    _check_outputs(out, trained=False)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "faces").exists()
    assert not (out / "restored_temporal.mp4").exists() and not (tmp_path / "heldout").exists()


def test_demo_bad_weights_is_one_sentence(tmp_path):
    res = subprocess.run([sys.executable, "-m", "gfpgan.demo", "--out", str(tmp_path / "out"),
                          "--weights", str(tmp_path / "missing.pth")], capture_output=True, text=True)
    assert res.returncode == 2 and "missing.pth" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out" / "restored.mp4").exists()
