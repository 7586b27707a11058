"""Frechet distance vs SciPy, FID Inception loading/skipping, Deg and LMD values."""

import numpy as np
import pytest
import scipy.linalg
import torch

from gfpgan.inference.faces.detection import Detections
from gfpgan.metrics import (
    FIDMetric,
    IdentityMetric,
    LandmarkMetric,
    MissingWeightsError,
    embedding_angle,
    frechet_distance,
    landmark_distance,
)
from gfpgan.metrics.fid import (
    build_fid_inception,
    feature_stats,
    frechet_distance_features,
    frechet_distance_to_stats,
)


def _scipy_fd(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_distance_matches_scipy_and_is_zero_on_itself():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 16))
    b = rng.normal(size=(150, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 0.3
    mu1, s1 = feature_stats(a)
    mu2, s2 = feature_stats(b)
    ref = _scipy_fd(mu1, s1, mu2, s2)
    assert ref > 1
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)
    # rank-deficient covariances (fewer samples than dimensions) as with small test sets
    c = rng.normal(size=(10, 16))
    mu3, s3 = feature_stats(c)
    assert frechet_distance(mu3, s3, mu3, s3) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(mu3, s3, mu2, s2) == pytest.approx(_scipy_fd(mu3, s3, mu2, s2), rel=1e-5)
    # the feature-space form (used when both sets' features are at hand) is the same number
    for x, y in ((a, b), (c, b), (c, c[::-1])):
        ref = _scipy_fd(*feature_stats(x), *feature_stats(y))
        assert frechet_distance_features(x, y) == pytest.approx(ref, rel=1e-6, abs=1e-5)  # sqrtm: ~1e-7
        assert frechet_distance_to_stats(x, *feature_stats(y)) == pytest.approx(ref, rel=1e-6, abs=1e-5)


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "pt_inception-2015-12-05-6726825d.pth"
    torch.manual_seed(0)
    net = build_fid_inception()
    for m in net.modules():  # He init keeps activations alive (and out of slow denormals)
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(m.weight)
    torch.save(net.state_dict(), path)
    return path


def test_fid_of_a_set_against_itself_is_zero(inception_file, tmp_path):
    from gfpgan.metrics.fid import load_stats

    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(3)]
    imgs += [np.clip(i.astype(int) // 2 + 60, 0, 255).astype(np.uint8) for i in imgs]
    metric = FIDMetric(inception_path=str(inception_file), batch_size=6)
    feats = metric.features(imgs)
    assert feats.shape == (6, 2048) and np.isfinite(feats).all() and feats.std() > 0
    # each 2048-d Frechet distance costs two eigendecompositions: keep to two of them
    assert metric.score(feats[3:], feats[:3]) > 1e-3
    stats = tmp_path / "ref.npz"
    np.savez(stats, mu=feats[:3].mean(0), sigma=np.cov(feats[:3], rowvar=False))
    metric.ref = load_stats(str(stats))
    assert metric.score(feats[:3]) == pytest.approx(0.0, abs=1e-6)  # a set against its own statistics


def test_fid_missing_inception_names_file(tmp_path):
    with pytest.raises(MissingWeightsError, match="FID skipped.*pt_inception-2015-12-05-6726825d.pth.*https://"):
        FIDMetric(inception_path=str(tmp_path / "pt_inception-2015-12-05-6726825d.pth"))


def test_embedding_angle_zero_and_follows_rotation():
    rng = np.random.default_rng(0)
    e = torch.from_numpy(rng.normal(size=(1, 512)))
    assert float(embedding_angle(e, e)[0]) == pytest.approx(0.0, abs=1e-5)
    assert float(embedding_angle(e, 3.7 * e)[0]) == pytest.approx(0.0, abs=1e-5)
    # rotate e by theta inside the plane spanned by e and an orthogonal unit vector
    u = e[0] / e[0].norm()
    v = torch.from_numpy(rng.normal(size=512))
    v = v - (v @ u) * u
    v = v / v.norm()
    angles = []
    for theta in (5.0, 30.0, 90.0, 150.0):
        t = np.deg2rad(theta)
        rotated = e[0].norm() * (np.cos(t) * u + np.sin(t) * v)
        angles.append(float(embedding_angle(e, rotated[None])[0]))
        assert angles[-1] == pytest.approx(theta, abs=1e-6)
    assert angles == sorted(angles)


class _TinyEmbedder(torch.nn.Module):
    def forward(self, x):  # (B,1,128,128) -> (B,8): pooled intensities are a stable "identity"
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1).repeat(1, 2) + 0.1


def test_identity_metric_deg(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    metric = IdentityMetric(net=_TinyEmbedder())
    assert metric(img, img) == pytest.approx(0.0, abs=1e-4)
    assert metric(255 - img, img) > 1.0
    with pytest.raises(MissingWeightsError, match="Deg.*arcface_resnet18.pth"):
        IdentityMetric(arcface_path=str(tmp_path / "arcface_resnet18.pth"))


def test_identity_metric_loads_arcface_file(tmp_path):
    from gfpgan.archs.arcface_arch import ResNetArcFace

    torch.manual_seed(0)
    net = ResNetArcFace(block="IRBlock", layers=(2, 2, 2, 2), use_se=False).eval()
    torch.save(net.state_dict(), tmp_path / "arcface_resnet18.pth")
    metric = IdentityMetric(arcface_path=str(tmp_path))
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1
    gray = (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]  # already 128 px: no resize
    with torch.no_grad():
        ref = net(gray).double()
    assert torch.allclose(metric.embed([img]), ref, atol=1e-4)
    assert metric(img, img) == pytest.approx(0.0, abs=1e-3)


def test_landmark_distance_by_hand():
    a = np.array([[10.0, 10.0], [20.0, 10.0], [15.0, 15.0], [11.0, 20.0], [19.0, 20.0]])
    b = a.copy()
    b[0] += [3.0, 4.0]   # 5 px
    b[2] += [0.0, -2.0]  # 2 px
    assert landmark_distance(a, b) == pytest.approx((5.0 + 2.0) / 5)
    assert landmark_distance(a, a) == 0.0
    with pytest.raises(ValueError):
        landmark_distance(a, a[:4])


class _FakeDetector:
    """Returns preset landmarks for each image, keyed by the image's mean value."""

    def __init__(self, table):
        self.table = table

    def detect(self, images):
        out = []
        for img in images:
            lm = self.table.get(int(img.mean()))
            if lm is None:
                out.append(Detections())
            else:
                box = np.array([[*(lm.min(0) - 5), *(lm.max(0) + 5)]])
                out.append(Detections(box.astype(np.float32), np.ones(1, np.float32),
                                      lm[None].astype(np.float32)))
        return out


def test_landmark_metric_uses_detector_and_handles_misses():
    lm = np.array([[20.0, 25.0], [44.0, 25.0], [32.0, 35.0], [22.0, 45.0], [42.0, 45.0]])
    det = _FakeDetector({10: lm, 20: lm + [1.0, 0.0], 30: None})
    metric = LandmarkMetric(detector=det)
    imgs = {v: np.full((64, 64, 3), v, np.uint8) for v in (10, 20, 30)}
    assert metric(imgs[20], imgs[10]) == pytest.approx(1.0)
    assert np.isnan(metric(imgs[30], imgs[10]))


def test_landmark_metric_with_mtcnn_on_a_real_face():
    import skimage.data

    face = skimage.data.astronaut()
    metric = LandmarkMetric(detector="mtcnn")
    assert metric(face, face) == 0.0
    shifted = np.roll(face, 4, axis=1)  # every landmark moves 4 px to the right
    assert metric(shifted, face) == pytest.approx(4.0, abs=1.0)
