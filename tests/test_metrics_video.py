"""Video metrics against the ground truth's motion: E_warp with exact (transform) or estimated (GT)
flow, TLME and identity consistency relative to the ground truth, on values."""

import numpy as np
import pytest
import skimage.data

from gfpgan.data.clip_degradations import render_clip
from gfpgan.metrics import temporal
from gfpgan.motion import relative_affine, similarity

S = 128


def _clip(n=5, noise=0.0, seed=0):
    """A rotating, zooming, shifting face crop (uint8 frames) and its exact relative transforms."""
    img = skimage.data.astronaut()[20:276, 120:376]
    img = np.ascontiguousarray(img[::2, ::2])  # 128 x 128
    aff = np.stack([similarity(1.5 * t, 1 + 0.01 * t, 1.3 * t, -0.7 * t, S) for t in range(n)])
    frames = render_clip(img.astype(np.float32), aff)
    rng = np.random.default_rng(seed)
    if noise:
        frames = [f + rng.normal(0, noise, f.shape) for f in frames]
    rel = np.concatenate([np.eye(2, 3)[None], relative_affine(aff[:-1], aff[1:])])
    return [np.clip(np.round(f), 0, 255).astype(np.uint8) for f in frames], rel


def test_warping_error_with_exact_flow_from_the_transforms():
    steady, rel = _clip()
    flicker, _ = _clip(noise=10)
    e_steady = temporal.warping_error(steady, rel_affines=rel)
    e_flicker = temporal.warping_error(flicker, rel_affines=rel)
    assert len(e_steady["per_pair"]) == 4
    assert e_steady["mean"] < 0.5  # only the interpolation of the renders differs
    # independent noise sigma 10/255 per frame: E|a - W b|^2 ~ (1 + bilinear's 0.25..1) sigma^2
    assert 1.2 < e_flicker["mean"] < 3.3
    # a frozen output (the first frame repeated) is not steady against the true motion
    frozen = temporal.warping_error([steady[0]] * 5, rel_affines=rel)
    assert frozen["mean"] > 5 * e_steady["mean"] + 1
    # the output's own flow would call the frozen clip perfect: the GT's motion does not
    assert temporal.warping_error([steady[0]] * 5)["mean"] < 0.01


def test_warping_error_with_flow_estimated_on_the_gt_agrees_with_the_exact_flow():
    steady, rel = _clip()
    flicker, _ = _clip(noise=10)
    exact = temporal.warping_error(flicker, rel_affines=rel)["mean"]
    estimated = temporal.warping_error(flicker, flow_frames=steady, method="dis")["mean"]
    assert estimated == pytest.approx(exact, rel=0.3)
    with pytest.raises(ValueError, match="4 transforms for 5 frames"):
        temporal.warping_error(steady, rel_affines=rel[:4])


def test_warping_error_restricted_to_a_region_measures_only_its_pixels():
    steady, rel = _clip()
    noisy = [f.copy() for f in steady]
    rng = np.random.default_rng(1)
    for f in noisy[1:]:  # flicker only in the left half
        half = f[:, :S // 2]
        f[:, :S // 2] = np.clip(half + rng.normal(0, 12, half.shape), 0, 255).astype(np.uint8)
    left, right = np.zeros((S, S), bool), np.zeros((S, S), bool)
    left[:, 8:S // 2 - 4], right[:, S // 2 + 4:S - 8] = True, True
    e_left = temporal.warping_error(noisy, rel_affines=rel, regions=[left] * 5)["mean"]
    e_right = temporal.warping_error(noisy, rel_affines=rel, regions=[right] * 5)["mean"]
    e_all = temporal.warping_error(noisy, rel_affines=rel)["mean"]
    assert e_right < 0.5 < e_all < e_left  # the right half is as steady as the clean clip
    est = temporal.warping_error(noisy, flow_frames=steady, regions=[right] * 5)["mean"]
    assert est < e_left / 3
    with pytest.raises(ValueError, match="4 region masks for 5 frames"):
        temporal.warping_error(noisy, rel_affines=rel, regions=[right] * 4)


def test_tlme_counts_landmark_motion_the_gt_does_not_have():
    gt = [np.array([[10.0 + t, 20.0], [30.0 + t, 20.0]]) for t in range(5)]
    assert temporal.tlme(gt, gt)["mean"] == 0.0
    shifted = [g + 3.0 for g in gt]  # a constant offset is an LMD matter, not a temporal one
    assert temporal.tlme(shifted, gt)["mean"] == pytest.approx(0.0, abs=1e-12)
    jitter = [g + np.array([(-1) ** t, 0.0]) for t, g in enumerate(gt)]  # +-1 px: 2 px per pair
    res = temporal.tlme(jitter, gt)
    assert res["mean"] == pytest.approx(2.0) and res["per_pair"] == pytest.approx([2.0] * 4)
    frozen = [gt[0]] * 5
    assert temporal.tlme(frozen, gt)["mean"] == pytest.approx(1.0)
    missing = temporal.tlme([jitter[0], None, jitter[2], jitter[3], jitter[4]], gt)
    assert np.isnan(missing["per_pair"][0]) and np.isnan(missing["per_pair"][1])
    assert missing["mean"] == pytest.approx(2.0)


def test_identity_consistency_against_the_gt():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=16) + 0.05 * np.arange(5)[:, None] * rng.normal(size=16)  # one identity, drifting
    same = temporal.identity_consistency(gt, gt)
    assert same["excess_deg"] == pytest.approx(0.0, abs=1e-6) and same["gt_mean_deg"] > 0
    flick = gt + rng.normal(scale=0.5, size=gt.shape)
    res = temporal.identity_consistency(flick, gt)
    assert res["excess_deg"] > 5 and res["mean_deg"] == pytest.approx(res["gt_mean_deg"] + res["excess_deg"])
    assert set(temporal.identity_consistency(gt)) == {"mean_deg", "max_deg"}
    with pytest.raises(ValueError, match="do not match"):
        temporal.identity_consistency(gt, gt[:4])
