"""Video clip datasets: determinism, drift bounds, the returned transforms match the motion, the
codec pass, disk == LMDB, and face-track folders (bad input included)."""

import json

import cv2
import numpy as np
import pytest
import torch

from gfpgan.data import FaceTrackClipDataset, FFHQClipDataset, LmdbWriter
from gfpgan.data.clip_degradations import DEFAULT_DRIFT, render_clip, x264_roundtrip
from gfpgan.errors import UserError
from gfpgan.motion import similarity, valid_mask, warp_previous
from gfpgan.registry import DATASET_REGISTRY

S, T = 64, 4
DEG = dict(blur_kernel_size=7, blur_sigma=[0.5, 3], downsample_range=[1, 4], noise_range=[0, 10],
           jpeg_range=[60, 95])
OFF = dict(blur_sigma=None, downsample_range=None, noise_range=None, jpeg_range=None)


def _face(seed, size=S):
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), (size, size),
                     interpolation=cv2.INTER_CUBIC)
    cv2.circle(img, (size // 3, size // 3), size // 10, (250, 250, 250), -1)  # an "eye": sharp detail
    return img


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "faces"
    root.mkdir()
    for i in range(3):
        cv2.imwrite(str(root / f"{i:05d}.png"), _face(i)[:, :, ::-1])
    return root


def _clips(root, **kw):
    kw = dict(dict(out_size=S, rank=0, num_frames=T, use_hflip=True), **kw)
    return FFHQClipDataset(dataroot_gt=str(root), **kw)


def test_items_are_deterministic_per_seed_epoch_and_index(folder):
    ds = _clips(folder, seed=3, **DEG)
    a, b = ds[1], ds[1]
    assert a["lq"].shape == a["gt"].shape == (T, 3, S, S) and a["rel_affine"].shape == (T, 2, 3)
    assert all(torch.equal(a[k], b[k]) for k in ("lq", "gt", "rel_affine"))
    assert not torch.equal(ds[2]["lq"], a["lq"])
    ds.set_epoch(1)
    assert not torch.equal(ds[1]["rel_affine"], a["rel_affine"])
    built = DATASET_REGISTRY.build(dict(type="FFHQClipDataset", dataroot_gt=str(folder), out_size=S, rank=0,
                                        num_frames=T, seed=3, **DEG))
    assert torch.equal(built[1]["lq"], a["lq"])


def test_disk_and_lmdb_give_identical_clips(folder, tmp_path):
    with LmdbWriter(tmp_path / "faces.lmdb") as w:
        for p in sorted(folder.iterdir()):
            w.add(p.stem, p.read_bytes())
    disk = _clips(folder, seed=1, **DEG)
    lm = _clips(tmp_path / "faces.lmdb", io_backend={"type": "lmdb"}, seed=1, **DEG)
    assert torch.equal(disk[0]["lq"], lm[0]["lq"]) and torch.equal(disk[0]["gt"], lm[0]["gt"])


def test_degradation_parameters_drift_within_bounds_with_fresh_noise(folder):
    ds = _clips(folder, num_frames=12, seed=0, **DEG)
    moved = 0
    for i in range(3):
        ps = ds.sample(i)["params"]
        for p, q in zip(ps, ps[1:]):
            assert abs(q["blur"]["sigma_x"] - p["blur"]["sigma_x"]) <= DEFAULT_DRIFT["blur_sigma"] + 1e-9
            assert abs(q["scale"] - p["scale"]) <= DEFAULT_DRIFT["scale"] + 1e-9
            assert abs(q["noise"]["sigma"] - p["noise"]["sigma"]) <= DEFAULT_DRIFT["noise"] + 1e-9
            assert abs(q["jpeg"] - p["jpeg"]) <= DEFAULT_DRIFT["jpeg"]
            assert q["noise"]["noise_seed"] != p["noise"]["noise_seed"]
            assert q["blur"]["kernel"] == p["blur"]["kernel"]  # one kernel type per clip
            moved += q["scale"] != p["scale"]
        for p in ps:
            assert 0.5 <= p["blur"]["sigma_x"] <= 3 and 1 <= p["scale"] <= 4
            assert 0 <= p["noise"]["sigma"] <= 10 and 60 <= p["jpeg"] <= 95
    assert moved > 20  # the parameters do drift
    frozen = _clips(folder, num_frames=5, seed=0, drift=dict(blur_sigma=0, scale=0, noise=0, jpeg=0), **DEG)
    ps = frozen.sample(0)["params"]
    assert all(p["scale"] == ps[0]["scale"] and p["jpeg"] == ps[0]["jpeg"] for p in ps)


@pytest.mark.parametrize("nonrigid,tol", [(0.0, 0.01), (0.01, 0.04)])
def test_returned_transforms_match_the_motion_of_the_gt(folder, nonrigid, tol):
    ds = _clips(folder, num_frames=6, seed=2, nonrigid=nonrigid, max_angle=8, max_shift=0.08, **OFF)
    item = ds[0]
    gt, rel = item["gt"], item["rel_affine"]
    assert torch.equal(rel[0], torch.eye(2, 3))
    for t in range(1, 6):
        warped, cover = warp_previous(gt[t - 1:t], rel[t:t + 1], S)
        m = valid_mask(cover)[0].expand(3, -1, -1)
        err = (warped[0] - gt[t]).abs()[m].mean()
        still = (gt[t - 1] - gt[t]).abs()[m].mean()  # not warping at all: the motion is real
        assert err < tol and still > 3 * err
    assert torch.equal(item["lq"], item["gt"])  # degradations off: the LQ is the GT


def test_rigid_rendering_is_exactly_a_warp_of_the_still():
    img = _face(0).astype(np.float32) / 255.0
    aff = np.stack([similarity(0, 1, 0, 0, S), similarity(10, 1.1, 3, -2, S)])
    frames = render_clip(img, aff)
    ref = cv2.warpAffine(img, aff[1], (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    assert np.abs(frames[0] - img).max() < 1e-5 and np.abs(frames[1] - ref).max() < 1e-3


def test_codec_pass_is_deterministic_and_changes_the_lq(folder):
    kw = dict(seed=4, blur_sigma=None, downsample_range=[2, 2], noise_range=None, jpeg_range=None)
    plain = _clips(folder, **kw)[0]
    coded = _clips(folder, codec_prob=1.0, crf_range=[30, 30], **kw)
    a, b = coded[0], coded[0]
    assert a["crf"] == 30 and plain["crf"] == -1
    assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], plain["gt"])
    assert 0.003 < (a["lq"] - plain["lq"]).abs().mean() < 0.2
    frames = [_face(i, 33) for i in range(3)]  # odd sides are padded and cropped back
    assert [f.shape for f in x264_roundtrip(frames, 20)] == [(33, 33, 3)] * 3


def _track(root, name, numbers, motion=None):
    d = root / name
    d.mkdir(parents=True)
    still = _face(len(name)).astype(np.float32) / 255.0
    aff = np.stack([similarity(2 * n, 1.0, n, 0, S) for n in numbers])
    for n, f in zip(numbers, render_clip(still, aff)):
        cv2.imwrite(str(d / f"{n:05d}.png"), np.round(f * 255).astype(np.uint8)[:, :, ::-1])
    if motion:  # landmarks sidecar: five points moved by each frame's similarity
        pts = np.array([[20, 24], [44, 24], [32, 34], [24, 46], [40, 46]], np.float64)
        lms = {f"{n:05d}": (pts @ a[:, :2].T + a[:, 2]).tolist() for n, a in zip(numbers, aff)}
        (d / "landmarks.json").write_text(json.dumps({"format": "gfpgan-landmarks5", "size": S,
                                                      "landmarks": lms}))
    return aff


def test_track_folders_give_windows_with_landmark_motion(tmp_path):
    _track(tmp_path / "tracks", "a", range(6), motion=True)
    _track(tmp_path / "tracks", "bb", range(3, 8))
    ds = FaceTrackClipDataset(str(tmp_path / "tracks"), num_frames=T, out_size=S, rank=0, seed=0, **DEG)
    assert len(ds) == 2
    a, b = ds[0], ds[0]
    assert a["lq"].shape == (T, 3, S, S) and torch.equal(a["lq"], b["lq"])
    assert not torch.equal(a["lq"], a["gt"])
    gt, rel = a["gt"], a["rel_affine"]
    for t in range(1, T):  # the landmark similarity moves frame t-1 onto frame t
        warped, cover = warp_previous(gt[t - 1:t], rel[t:t + 1], S)
        m = valid_mask(cover)[0].expand(3, -1, -1)
        assert (warped[0] - gt[t]).abs()[m].mean() < 0.02 < (gt[t - 1] - gt[t]).abs()[m].mean()
    assert torch.equal(ds[1]["rel_affine"], torch.eye(2, 3).expand(T, 2, 3))  # no sidecar: identity


def test_track_folder_errors_are_one_sentence(tmp_path):
    _track(tmp_path / "short", "a", range(3))
    with pytest.raises(UserError, match=r"has 3 frames, fewer than num_frames=4"):
        FaceTrackClipDataset(str(tmp_path / "short"), num_frames=4, out_size=S, rank=0)
    _track(tmp_path / "gap", "a", [0, 1, 2, 4, 5])
    with pytest.raises(UserError, match=r"is missing frame 3 \(after 00002.png\)"):
        FaceTrackClipDataset(str(tmp_path / "gap"), num_frames=4, out_size=S, rank=0)
    with pytest.raises(UserError, match="does not exist"):
        FaceTrackClipDataset(str(tmp_path / "nowhere"), num_frames=4, rank=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no clip folders"):
        FaceTrackClipDataset(str(tmp_path / "empty"), num_frames=4, rank=0)
    with pytest.raises(UserError, match="crop_components is not supported"):
        FFHQClipDataset(str(tmp_path), crop_components=True)
