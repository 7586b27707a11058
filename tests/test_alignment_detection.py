"""Alignment (least-squares similarity to the FFHQ template), MTCNN detection and image helpers."""

import cv2
import numpy as np
import pytest
import skimage.data

from gfpgan.errors import UserError
from gfpgan.files import atomic_path
from gfpgan.images import decode_image, encode_image, img_to_tensor, read_image, tensor_to_img
from gfpgan.inference.faces import alignment as al
from gfpgan.inference.faces.detection import Detections, build_detector


def _rot(theta):
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


def test_similarity_recovers_a_known_transform():
    t = al.face_template(256)
    src = (t - 128) @ _rot(0.4).T * 0.37 + [55.5, 20.25]
    m = al.estimate_affine(src, 256)
    np.testing.assert_allclose(al.transform_points(src, m), t, atol=1e-9)
    # The inverse maps the template back onto the landmarks.
    np.testing.assert_allclose(al.transform_points(t, al.invert_affine(m)), src, atol=1e-9)
    # Agrees with OpenCV's estimator on exact data, but is deterministic by construction.
    ref, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), t.astype(np.float32))
    np.testing.assert_allclose(m, ref, atol=1e-3)


def test_similarity_is_the_least_squares_fit_under_noise():
    rng = np.random.default_rng(0)
    t = al.face_template(512)
    src = t * 0.5 + rng.normal(0, 2.0, t.shape)
    m = al.estimate_affine(src, 512)
    err = np.square(al.transform_points(src, m) - t).sum()
    for _ in range(50):  # no random perturbation of the parameters does better
        p = m.copy()
        a, b = m[0, 0], m[1, 0]
        da, db = rng.normal(0, 1e-3, 2)
        p[:, :2] = [[a + da, -(b + db)], [b + db, a + da]]
        p[:, 2] += rng.normal(0, 0.05, 2)
        assert np.square(al.transform_points(src, p) - t).sum() >= err - 1e-9


def test_degenerate_landmarks_are_rejected():
    with pytest.raises(ValueError):
        al.estimate_affine(np.ones((5, 2)), 512)


def test_warp_face_and_crop_box():
    img = np.zeros((200, 300, 3), np.uint8)
    img[50:150, 100:200] = 255
    m = np.array([[1.0, 0, -100], [0, 1.0, -50]])
    crop = al.warp_face(img, m, 100)
    assert crop.shape == (100, 100, 3) and crop.min() == 255
    assert al.crop_box(m, 100) == pytest.approx((100, 50, 200, 150))


@pytest.fixture(scope="module")
def mtcnn():
    return build_detector("mtcnn")


def test_mtcnn_finds_the_astronaut_face_with_ordered_landmarks(mtcnn):
    img = skimage.data.astronaut()
    det, det_flip = mtcnn.detect([img, np.ascontiguousarray(img[:, ::-1])])
    assert len(det) == 1 and det.scores[0] > 0.99
    x1, y1, x2, y2 = det.boxes[0]
    assert 150 < x1 < 230 and 240 < x2 < 300 and 40 < y1 < 100 and 150 < y2 < 200
    lm = det.landmarks[0]
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # left = smaller x
    assert lm[2, 1] > lm[:2, 1].max() and lm[3:, 1].min() > lm[2, 1]  # eyes above nose above mouth
    # On the mirrored image the detector still orders by x, and finds the mirrored points.
    mirrored = lm.copy()
    mirrored[:, 0] = img.shape[1] - 1 - mirrored[:, 0]
    mirrored = mirrored[[1, 0, 2, 4, 3]]
    np.testing.assert_allclose(det_flip.landmarks[0], mirrored, atol=4.0)


def test_mtcnn_on_a_frame_without_face_and_downscaling(mtcnn):
    empty = mtcnn.detect([np.full((120, 160, 3), 90, np.uint8)])[0]
    assert len(empty) == 0 and empty.landmarks.shape == (0, 5, 2)
    big = cv2.resize(skimage.data.astronaut(), (1536, 1536))
    small = build_detector("mtcnn", max_side=512).detect([big])[0]
    assert len(small) == 1
    ref = mtcnn.detect([skimage.data.astronaut()])[0]
    np.testing.assert_allclose(small.landmarks[0] / 3.0, ref.landmarks[0], atol=3.0)


def test_detections_filter_by_eye_distance():
    lm = np.zeros((2, 5, 2), np.float32)
    lm[0, 1, 0] = 30
    lm[1, 1, 0] = 5
    det = Detections(np.zeros((2, 4), np.float32), np.array([0.99, 0.98], np.float32), lm)
    assert len(det.filter(min_face=10)) == 1 and det.filter(min_face=10).landmarks[0, 1, 0] == 30


def test_retinaface_without_weights_names_the_file(tmp_path):
    with pytest.raises(UserError, match="detection_Resnet50_Final.pth"):
        build_detector("retinaface", weights=str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="bad.pth"):
        build_detector("retinaface", weights=str(bad))


def test_image_round_trip_and_conversions(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    assert np.array_equal(tensor_to_img(img_to_tensor(img))[0], img)
    assert np.array_equal(decode_image(encode_image(img)), img)
    gray = cv2.imencode(".png", img[:, :, 0])[1].tobytes()
    assert np.array_equal(decode_image(gray), np.repeat(img[:, :, :1], 3, axis=2))
    rgba = cv2.imencode(".png", np.dstack([img[:, :, ::-1], np.full((9, 11), 7, np.uint8)]))[1].tobytes()
    assert np.array_equal(decode_image(rgba), img)
    deep = cv2.imencode(".png", img[:, :, ::-1].astype(np.uint16) * 257)[1].tobytes()
    assert np.array_equal(decode_image(deep), img)
    for name, data in [("empty.png", b""), ("junk.png", b"definitely not an image")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError, match=name):
            read_image(tmp_path / name)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    dest = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"done")
    assert dest.read_bytes() == b"done" and list(tmp_path.iterdir()) == [dest]
