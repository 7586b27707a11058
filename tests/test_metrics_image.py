"""PSNR/SSIM against scikit-image, NIQE against BasicSR, LPIPS trunk loading and skipping."""

import os

import numpy as np
import pytest
import skimage.data
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gfpgan.metrics import NIQE, LPIPSMetric, MissingWeightsError, calculate_psnr, calculate_ssim
from gfpgan.metrics.common import rgb_to_y
from gfpgan.registry import METRIC_REGISTRY


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    gt = np.ascontiguousarray(skimage.data.astronaut()[60:188, 150:278])
    out = np.clip(gt.astype(np.float64) + rng.normal(0, 12, gt.shape), 0, 255).astype(np.uint8)
    return out, gt


def test_psnr_matches_skimage_rgb_and_y(pair):
    out, gt = pair
    ref = peak_signal_noise_ratio(gt, out, data_range=255)
    assert calculate_psnr(out, gt) == pytest.approx(ref, abs=1e-9)
    ref_y = peak_signal_noise_ratio(rgb_to_y(gt)[4:-4, 4:-4], rgb_to_y(out)[4:-4, 4:-4], data_range=255)
    assert calculate_psnr(out, gt, crop_border=4, test_y_channel=True) == pytest.approx(ref_y, abs=1e-9)
    assert calculate_psnr(gt, gt) == float("inf")


def test_ssim_matches_skimage(pair):
    out, gt = pair
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    ref = structural_similarity(gt, out, channel_axis=2, **kw)
    assert calculate_ssim(out, gt) == pytest.approx(ref, abs=1e-6)
    ref_y = structural_similarity(rgb_to_y(gt)[3:-3, 3:-3], rgb_to_y(out)[3:-3, 3:-3], **kw)
    assert calculate_ssim(out, gt, crop_border=3, test_y_channel=True) == pytest.approx(ref_y, abs=1e-6)
    assert calculate_ssim(gt, gt) == pytest.approx(1.0)
    assert 0.2 < calculate_ssim(out, gt) < 0.95


def test_metrics_are_registered():
    for name in ("calculate_psnr", "calculate_ssim", "NIQE", "LPIPSMetric", "FIDMetric", "IdentityMetric",
                 "LandmarkMetric"):
        assert name in METRIC_REGISTRY
    with pytest.raises(KeyError, match="did you mean"):
        METRIC_REGISTRY.get("calculate_psnrr")


def test_niqe_matches_basicsr(monkeypatch):
    import basicsr.metrics.niqe as bniqe
    from basicsr.metrics.metric_util import to_y_channel
    from basicsr.utils.matlab_functions import imresize

    from gfpgan.metrics.niqe import imresize_matlab

    img = np.ascontiguousarray(skimage.data.astronaut()[:250, :300])
    metric = NIQE()
    ours = metric(img)
    # the public entry point works in float32 internally, which can move the AGGD grid search
    # by one step: agreement to ~1e-2
    assert ours == pytest.approx(bniqe.calculate_niqe(img[..., ::-1].copy(), 0), abs=2e-2)
    # MATLAB-style resize alone: ours (float64) vs BasicSR's (float32)
    gray = np.squeeze(to_y_channel(img[..., ::-1].astype(np.float32))).round().astype(np.float64)
    ref_half = imresize(gray[:192, :288] / 255.0, scale=0.5, antialiasing=True)
    assert np.abs(imresize_matlab(gray[:192, :288] / 255.0, 0.5) - ref_half).max() < 1e-5
    # with the resize in float64 on both sides, BasicSR's per-block loop agrees to round-off
    monkeypatch.setattr(bniqe, "imresize", lambda x, scale, antialiasing: imresize_matlab(x, scale))
    assert ours == pytest.approx(bniqe.niqe(gray, metric.mu, metric.cov, metric.window), abs=1e-6)
    rng = np.random.default_rng(1)
    noisy = np.clip(img + rng.normal(0, 25, img.shape), 0, 255).astype(np.uint8)
    assert metric(noisy) > ours + 2  # noise looks unnatural
    gray_n = np.squeeze(to_y_channel(noisy[..., ::-1].astype(np.float32))).round().astype(np.float64)
    assert metric(noisy) == pytest.approx(bniqe.niqe(gray_n, metric.mu, metric.cov, metric.window), abs=1e-6)


def test_niqe_missing_params_file_is_reported(tmp_path):
    with pytest.raises(MissingWeightsError, match="NIQE skipped.*nope.npz"):
        NIQE(params_path=str(tmp_path / "nope.npz"))


def _fake_alexnet(path):
    import torchvision

    torch.manual_seed(0)
    sd = torchvision.models.alexnet().state_dict()
    torch.save(sd, path)
    return sd


def test_lpips_loads_local_trunk_and_measures(tmp_path, pair):
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    sd = _fake_alexnet(path)
    metric = LPIPSMetric(net="alex", trunk_path=str(tmp_path))  # a folder holding the file works too
    trunk = dict(metric.model.net.named_parameters())
    for idx in (0, 3, 6, 8, 10):  # every conv of features[] lands in its slice
        slice_name = next(k for k in trunk if k.endswith(f".{idx}.weight"))
        assert torch.equal(trunk[slice_name], sd[f"features.{idx}.weight"])
    lin = torch.load(os.path.join(os.path.dirname(__import__("lpips").__file__), "weights/v0.1/alex.pth"),
                     map_location="cpu", weights_only=True)
    assert torch.equal(metric.model.lin0.model[1].weight, lin["lin0.model.1.weight"])
    out, gt = pair
    assert metric(gt, gt) == 0.0
    blurred = np.asarray(torch.nn.functional.avg_pool2d(torch.from_numpy(gt).permute(2, 0, 1).float()[None],
                                                        5, 1, 2)[0].permute(1, 2, 0).round().byte())
    assert metric(out, gt) > 0 and metric(blurred, gt) > 0
    assert metric(out, gt) != pytest.approx(metric(blurred, gt))


def test_lpips_missing_trunk_names_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError) as exc:
        LPIPSMetric()
    msg = str(exc.value)
    assert "LPIPS skipped" in msg and "alexnet-owt-7be5be79.pth" in msg and "https://" in msg
    assert "\n" not in msg
