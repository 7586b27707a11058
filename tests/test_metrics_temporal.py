"""Temporal metrics (flow-warping error, track jitter, identity drift), compare_videos and fid_stats."""

import json

import numpy as np
import pytest
import skimage.data
import torch

from gfpgan.inference.faces.detection import Detections
from gfpgan.metrics import temporal


def _pan(n=5, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    img = skimage.data.astronaut()
    frames = []
    for i in range(n):
        f = img[40 + 2 * i:168 + 2 * i, 150 + 3 * i:278 + 3 * i].astype(np.float64)
        if noise:
            f = f + rng.normal(0, noise, f.shape)
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return frames


def test_warp_follows_a_known_shift():
    frames = _pan(2)
    flow = temporal.optical_flow(frames[1], frames[0])  # frame1(x) ~ frame0(x + (3, 2))
    centre = flow[30:-30, 30:-30].reshape(-1, 2)
    assert np.median(centre[:, 0]) == pytest.approx(3.0, abs=0.3)
    assert np.median(centre[:, 1]) == pytest.approx(2.0, abs=0.3)
    warped = temporal.warp(frames[0], np.tile(np.array([3.0, 2.0], np.float32), (128, 128, 1)))
    assert np.abs(warped[:-4, :-4] - frames[1][:-4, :-4]).max() < 1e-3


@pytest.mark.parametrize("method", temporal.FLOW_METHODS)
def test_warping_error_separates_steady_from_flicker(method):
    steady, flicker = _pan(), _pan(noise=10)
    e_steady = temporal.warping_error(steady, method=method)
    e_flicker = temporal.warping_error(flicker, flow_frames=steady, method=method)
    assert len(e_steady["per_pair"]) == 4
    assert e_steady["mean"] < 0.3
    # independent noise of sigma 10/255 per frame: E|a-b|^2 = 2 sigma^2 -> ~3.1 (x1000)
    assert e_flicker["mean"] == pytest.approx(2 * (10 / 255) ** 2 * 1000, rel=0.25)
    # an occluded region is left out: a frame with a pasted block changes the mask, not the error scale
    assert temporal.occlusion_mask(np.zeros((8, 8, 2), np.float32), np.zeros((8, 8, 2), np.float32)).all()


def test_tracks_jitter_and_identity_drift():
    lm = np.array([[20.0, 25.0], [44.0, 25.0], [32.0, 35.0], [22.0, 45.0], [42.0, 45.0]])
    rng = np.random.default_rng(0)
    dets, shaky = [], []
    for t in range(12):
        a = lm + [t * 1.0, 0]                        # face 1 moves smoothly
        b = lm + [100, 0] + rng.normal(0, 2, (5, 2))  # face 2 shakes
        boxes = np.array([[a[:, 0].min() - 8, 15, a[:, 0].max() + 8, 55],
                          [b[:, 0].min() - 8, 15, b[:, 0].max() + 8, 55]], np.float32)
        dets.append(Detections(boxes, np.ones(2, np.float32), np.stack([a, b]).astype(np.float32)))
        shaky.append(b)
    tracks = temporal.face_tracks(dets)
    assert len(tracks) == 2 and all(len(tr["frames"]) == 12 for tr in tracks.values())
    jit = temporal.track_jitter(tracks)
    smooth_id = min(tracks, key=lambda k: tracks[k]["landmarks"][0][0, 0])
    assert jit[smooth_id] < 0.05 and min(v for k, v in jit.items() if k != smooth_id) > 1.0
    emb = np.tile(np.array([1.0, 0.0, 0.0]), (4, 1))
    assert temporal.identity_consistency(emb)["mean_deg"] == pytest.approx(0.0, abs=1e-6)
    turned = np.array([[np.cos(np.deg2rad(a)), np.sin(np.deg2rad(a)), 0.0] for a in (0, 10, 20, 40)])
    drift = temporal.identity_consistency(turned)
    assert drift["mean_deg"] == pytest.approx(40 / 3, abs=1e-6)
    assert drift["max_deg"] == pytest.approx(20, abs=1e-6)


def test_compare_videos_writes_table_json_and_plot(tmp_path):
    from gfpgan.images import write_image_atomic
    from gfpgan.tools.compare_videos import main

    for name, frames in (("gt", _pan()), ("steady", _pan()), ("flicker", _pan(noise=10))):
        (tmp_path / name).mkdir()
        for i, f in enumerate(frames):
            write_image_atomic(tmp_path / name / f"{i:04d}.png", f)
    out = tmp_path / "cmp"
    assert main([str(tmp_path / "steady"), str(tmp_path / "flicker"), "--labels", "on,off", "--gt",
                 str(tmp_path / "gt"), "--no-landmarks", "--out", str(out)]) == 0
    res = json.loads((out / "compare.json").read_text())
    assert res["on"]["warping_error"] < res["off"]["warping_error"]
    assert res["on"]["psnr"] == float("inf") and res["off"]["psnr"] < 35
    md = (out / "compare.md").read_text()
    assert "| on | 5 |" in md and "| off | 5 |" in md
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_fid_stats_tool(tmp_path):
    from gfpgan.images import write_image_atomic
    from gfpgan.metrics.fid import build_fid_inception
    from gfpgan.tools.fid_stats import main

    torch.manual_seed(0)
    net = build_fid_inception()
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(m.weight)
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), weights)
    (tmp_path / "imgs").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        write_image_atomic(tmp_path / "imgs" / f"{i}.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    out = tmp_path / "stats.npz"
    args = ["--input", str(tmp_path / "imgs"), "--out", str(out), "--inception", str(weights), "--quiet"]
    assert main(args) == 0
    with np.load(out) as d:
        assert d["mu"].shape == (2048,) and d["sigma"].shape == (2048, 2048) and int(d["num"]) == 3
        assert np.allclose(d["sigma"], d["sigma"].T) and d["mu"].std() > 0
