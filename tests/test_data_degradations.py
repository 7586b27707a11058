"""Degradation functions: kernel normalisation and shape, seeded sampling, replay, disabled steps."""

import math

import numpy as np
import pytest
import torch

from gfpgan.data import degradations as deg


def _moments(k):
    xx, yy = deg.kernel_grid(k.shape[0])
    k = k.astype(np.float64)
    mx, my = (k * xx).sum(), (k * yy).sum()
    cov = np.array([[(k * (xx - mx) ** 2).sum(), (k * (xx - mx) * (yy - my)).sum()],
                    [(k * (xx - mx) * (yy - my)).sum(), (k * (yy - my) ** 2).sum()]])
    return mx, my, cov


@pytest.mark.parametrize("size,sx,sy,theta", [(21, 2.0, None, 0.0), (41, 3.0, 1.5, 0.6), (41, 0.1, 0.1, 0.0),
                                              (31, 4.0, 2.0, -2.0)])
def test_kernel_sums_to_one_and_has_its_covariance(size, sx, sy, theta):
    k = deg.gaussian_kernel(size, sx, sy, theta)
    assert k.shape == (size, size) and k.dtype == np.float32
    assert abs(float(k.sum()) - 1.0) < 1e-5
    mx, my, cov = _moments(k)
    assert abs(mx) < 1e-6 and abs(my) < 1e-6  # centred
    sy = sx if sy is None else sy
    if sx >= 1:  # below ~1 px the grid cannot resolve the variance
        c, s = math.cos(theta), math.sin(theta)
        rot = np.array([[c, -s], [s, c]])
        want = rot @ np.diag([sx ** 2, sy ** 2]) @ rot.T
        np.testing.assert_allclose(cov, want, atol=0.02 * sx ** 2)
    else:
        assert k[size // 2, size // 2] > 0.99  # a tiny sigma is (almost) the identity


def test_isotropic_kernel_is_rotation_invariant_and_wider_sigma_is_wider():
    a = deg.gaussian_kernel(21, 2.0, None, 0.0)
    np.testing.assert_allclose(a, deg.gaussian_kernel(21, 2.0, 2.0, 1.1), atol=1e-7)
    np.testing.assert_allclose(a, a.T, atol=1e-7)
    assert _moments(deg.gaussian_kernel(21, 3.0))[2][0, 0] > _moments(a)[2][0, 0] * 2


def test_bad_kernel_arguments_are_rejected():
    with pytest.raises(ValueError):
        deg.gaussian_kernel(20, 1.0)
    with pytest.raises(ValueError):
        deg.sample_kernel_params(np.random.default_rng(0), ["iso", "sinc"], [0.5, 0.5], [1, 2])


def test_kernel_sampling_respects_probabilities_and_ranges():
    rng = np.random.default_rng(0)
    draws = [deg.sample_kernel_params(rng, ["iso", "aniso"], [0.8, 0.2], [0.5, 4]) for _ in range(2000)]
    frac_iso = np.mean([d["kernel"] == "iso" for d in draws])
    assert 0.76 < frac_iso < 0.84
    for d in draws:
        assert 0.5 <= d["sigma_x"] <= 4 and 0.5 <= d["sigma_y"] <= 4 and -math.pi <= d["theta"] <= math.pi
        if d["kernel"] == "iso":
            assert d["sigma_x"] == d["sigma_y"] and d["theta"] == 0.0
    # a fixed sigma is allowed (BasicSR asserts low < high)
    d = deg.sample_kernel_params(rng, ["aniso"], [1.0], [2.0, 2.0])
    assert d["sigma_x"] == d["sigma_y"] == 2.0


def test_sampling_is_a_pure_function_of_the_generator():
    kw = dict(color_jitter_prob=0.5, color_jitter_pt_prob=0.5, gray_prob=0.5)
    a = deg.sample_degradation(np.random.default_rng([1, 2, 3]), **kw)
    np.random.seed(123)  # global state must not matter
    b = deg.sample_degradation(np.random.default_rng([1, 2, 3]), **kw)
    c = deg.sample_degradation(np.random.default_rng([1, 2, 4]), **kw)
    assert a == b and a != c
    assert 60 <= a["jpeg"] <= 100 and isinstance(a["jpeg"], int)


def test_jpeg_quality_range_is_inclusive_integers():
    rng = np.random.default_rng(0)
    qs = {deg.sample_degradation(rng, jpeg_range=[98, 100])["jpeg"] for _ in range(200)}
    assert qs == {98, 99, 100}


def _img(h=48, w=48, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.random((h // 8, w // 8, 3)).astype(np.float32)
    import cv2

    return np.clip(cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)


def test_apply_is_deterministic_and_replayable_from_params():
    img = _img()
    p = deg.sample_degradation(np.random.default_rng(5), blur_kernel_size=7, color_jitter_prob=1,
                               color_jitter_pt_prob=1, gray_prob=0)
    a, b = deg.apply_degradation(img, p), deg.apply_degradation(img, p)
    np.testing.assert_array_equal(a, b)
    assert a.shape == img.shape and a.dtype == np.float32
    np.testing.assert_allclose(a * 255, np.round(a * 255), atol=1e-3)  # on the 8-bit grid
    assert not np.allclose(a, img, atol=1 / 255)


def test_all_disabled_is_identity_on_8bit_images():
    img = np.round(_img() * 255) / 255
    p = deg.sample_degradation(np.random.default_rng(0), blur_sigma=None, downsample_range=None,
                               noise_range=None, jpeg_range=None)
    assert p == {"gray": False}
    np.testing.assert_array_equal(deg.apply_degradation(img.astype(np.float32), p), img.astype(np.float32))


def test_each_step_changes_the_image_the_way_it_should():
    img = _img()
    rough = np.random.default_rng(1).random((32, 32, 3)).astype(np.float32)
    blurred = deg.blur(rough, deg.gaussian_kernel(9, 2.0))
    assert np.var(np.diff(blurred, axis=1)) < 0.1 * np.var(np.diff(rough, axis=1))
    np.testing.assert_allclose(blurred.mean(), rough.mean(), atol=0.01)  # sum-1 kernel keeps the mean
    noisy = deg.add_gaussian_noise(np.full((64, 64, 3), 0.5, np.float32), 10.0, noise_seed=3)
    assert abs(float(noisy.std()) * 255 - 10.0) < 0.5
    again = deg.add_gaussian_noise(np.full((64, 64, 3), 0.5, np.float32), 10.0, 3)
    np.testing.assert_array_equal(noisy, again)
    j = deg.jpeg_compress(img, 10)
    assert 0 < np.abs(j - img).mean() < 0.1
    shifted = deg.rgb_shift(np.full((4, 4, 3), 0.5, np.float32), [0.1, -0.1, 0.0])
    np.testing.assert_allclose(shifted[0, 0], [0.6, 0.4, 0.5], atol=1e-6)
    g = deg.to_gray(np.array([[[1.0, 0.0, 0.0]]], np.float32))
    np.testing.assert_allclose(g[0, 0], [0.299] * 3, atol=1e-3)  # red weighs 0.299 in RGB order
    assert deg.downsampled_size(512, 512, 8.0) == (64, 64)
    assert deg.downsampled_size(512, 512, 0.8) == (639, 639)  # the reference's floor division (512 // 0.8)


@pytest.mark.parametrize("size", [7, 21, 41])
def test_blur_equals_opencv_filter2d(size):
    import cv2

    rng = np.random.default_rng(size)
    img = rng.random((50, 37, 3)).astype(np.float32)
    for _ in range(3):
        k = deg.make_kernel(size, deg.sample_kernel_params(rng, ["iso", "aniso"], [0.5, 0.5], [0.1, 10]))
        np.testing.assert_allclose(deg.blur(img, k), cv2.filter2D(img, -1, k), atol=2e-6)


def test_color_jitter_pt_factors_and_order():
    p = deg.sample_color_jitter_pt(np.random.default_rng(0), brightness=(2.0, 2.0), contrast=None,
                                   saturation=None, hue=None)
    assert p["order"] == ["brightness"] and p["brightness"] == 2.0
    np.testing.assert_allclose(deg.color_jitter_pt(np.full((4, 4, 3), 0.25, np.float32), p), 0.5, atol=1e-6)
    orders = {tuple(deg.sample_color_jitter_pt(np.random.default_rng(i))["order"]) for i in range(60)}
    names = ["brightness", "contrast", "hue", "saturation"]
    assert len(orders) > 10 and all(sorted(o) == names for o in orders)


@pytest.mark.parametrize("name,factor", [("brightness", 1.3), ("contrast", 0.6), ("saturation", 1.4),
                                         ("hue", 0.08), ("hue", -0.1)])
def test_color_jitter_matches_torchvision(name, factor):
    from torchvision.transforms import functional as TF

    img = _img(32, 32, seed=4)
    img[:4] = 0.5  # gray pixels have no hue
    chw = torch.from_numpy(img).permute(2, 0, 1)
    want = getattr(TF, f"adjust_{name}")(chw, factor).permute(1, 2, 0).numpy()
    got = deg.color_jitter_pt(img, {"order": [name], name: factor})
    np.testing.assert_allclose(got, want, atol=2e-5)
