"""Batched restoration (strength, chunking, quantisation) and bbox-local paste-back geometry."""

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from gfpgan.errors import UserError
from gfpgan.inference.faces.alignment import estimate_affine, face_template, warp_face
from gfpgan.inference.faces.batch import FaceBatchRestorer, crops_to_tensor, tensor_to_crops
from gfpgan.inference.faces.model import FaceModel
from gfpgan.inference.faces.paste import MaskSmoother, ParseMasker, feather_mask, paste_face, scale_affine


class Negate(FaceModel):
    """A FaceModel that inverts the image and counts its calls and batch sizes."""

    def __init__(self, size=16):
        self.size, self.device, self.batches = size, torch.device("cpu"), []

    def __call__(self, x):
        self.batches.append(x.shape[0])
        return -x


def crops(n, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def test_quantisation_round_trip_and_rounding():
    c = crops(3)
    t = crops_to_tensor(c, torch.device("cpu"))
    assert t.shape == (3, 3, 16, 16) and float(t.min()) >= -1 and float(t.max()) <= 1
    assert np.array_equal(tensor_to_crops(t), np.stack(c))
    # values are rounded to nearest and clipped, not truncated
    v = torch.tensor([-2.0, -1.0, 0.0, 0.004, 1.0, 3.0]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    assert tensor_to_crops(v)[0, 0, :, 0].tolist() == [0, 0, 128, 128, 255, 255]


def test_batching_in_chunks_keeps_order():
    model = Negate()
    r = FaceBatchRestorer(model, batch_faces=4)
    c = crops(10)
    out = r.restore(c)
    assert model.batches == [4, 4, 2]
    for a, b in zip(c, out):  # -x in [-1,1] is 255 - x in uint8, up to rounding
        assert np.abs(b.astype(int) - (255 - a.astype(int))).max() <= 1


@pytest.mark.parametrize("s", [0.0, 0.25, 0.5, 1.0])
def test_strength_blends_restored_with_input(s):
    model = Negate()
    c = crops(3)
    out = FaceBatchRestorer(model, strength=s).restore(c)
    for a, b in zip(c, out):
        expect = s * (255.0 - a) + (1 - s) * a
        assert np.abs(b.astype(float) - expect).max() <= 1.0
    if s == 0.0:
        assert model.batches == [] and all(np.array_equal(a, b) for a, b in zip(c, out))


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="strength"):
        FaceBatchRestorer(Negate(), strength=1.5)
    with pytest.raises(UserError, match="batch-faces"):
        FaceBatchRestorer(Negate(), batch_faces=0)


def test_feather_mask_shape_and_smoothness():
    m = feather_mask(64)
    assert m.shape == (64, 64) and m.dtype == np.float32
    assert m[0].max() == 0 and m[:, 0].max() == 0 and m[32, 32] == 1.0
    row = m[32]
    assert np.all(np.diff(row[:32]) >= 0)  # rises monotonically towards the centre
    # no hard step (no visible seam): at 512 px the ramp spans ~50 px
    assert np.abs(np.diff(feather_mask(512)[256])).max() < 0.05
    assert feather_mask(64) is m  # computed once per size


def astronaut_face(size):
    img = skimage.data.astronaut()
    lm = np.array([[212.0, 114.0], [251.0, 114.0], [233.0, 137.0], [215.0, 157.0], [249.0, 157.0]])
    return img, estimate_affine(lm, size)


def test_paste_of_unchanged_crop_restores_the_frame_and_touches_only_the_box():
    img, m = astronaut_face(128)
    crop = warp_face(img, m, 128)
    out = img.copy()
    paste_face(out, crop, m)
    diff = np.abs(out.astype(int) - img.astype(int)).max(-1)
    inv = cv2.invertAffineTransform(m)
    pts = np.array([[0, 0, 1], [127, 0, 1], [0, 127, 1], [127, 127, 1]], float) @ inv.T
    x0, y0 = np.floor(pts.min(0)).astype(int) - 1
    x1, y1 = np.ceil(pts.max(0)).astype(int) + 2
    outside = np.ones_like(diff, bool)
    outside[max(y0, 0):y1, max(x0, 0):x1] = False
    assert diff[outside].max() == 0, "paste-back must not touch pixels outside the face box"
    # inside the face the round trip crop -> frame only costs interpolation error
    cy, cx = 135, 232
    assert np.abs(out[cy - 20:cy + 20, cx - 20:cx + 20].astype(int)
                  - img[cy - 20:cy + 20, cx - 20:cx + 20]).mean() < 4


def test_paste_puts_the_face_where_the_landmarks_were():
    img, m = astronaut_face(64)
    face = np.zeros((64, 64, 3), np.uint8)
    for x, y in face_template(64):  # bright dots on the template points of the crop
        face[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2] = 255
    out = np.zeros_like(img)
    paste_face(out, face, m, mask=np.ones((64, 64), np.float32))
    inv = cv2.invertAffineTransform(m)
    for x, y in face_template(64) @ inv[:, :2].T + inv[:, 2]:
        assert out[int(round(y)), int(round(x))].max() > 100


def test_scale_affine_matches_a_resized_frame():
    img, m = astronaut_face(64)
    big = cv2.resize(img, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    a = warp_face(img, m, 64).astype(int)
    b = warp_face(big, scale_affine(m, 2.0), 64).astype(int)
    assert np.abs(a - b)[8:-8, 8:-8].mean() < 3  # same face region, same place
    shifted = m.copy()
    shifted[:, 2] += 2.0
    c = warp_face(big, scale_affine(shifted, 2.0), 64).astype(int)
    assert np.abs(a - c)[8:-8, 8:-8].mean() > np.abs(a - b)[8:-8, 8:-8].mean() + 2


def test_paste_of_a_face_outside_the_frame_is_a_noop():
    frame = np.full((40, 40, 3), 7, np.uint8)
    m = np.array([[1.0, 0, 500], [0, 1.0, 500]])  # crop origin far away from the frame
    paste_face(frame, np.full((16, 16, 3), 200, np.uint8), m)
    assert (frame == 7).all()


def test_mask_smoother_is_an_ema_per_track():
    sm = MaskSmoother(alpha=0.5)
    a, b = np.zeros((4, 4), np.float32), np.ones((4, 4), np.float32)
    assert np.array_equal(sm(1, a), a)
    assert np.allclose(sm(1, b), 0.5) and np.allclose(sm(1, b), 0.75)
    assert np.array_equal(sm(2, b), b)  # another track starts fresh
    sm.drop([2])
    assert np.array_equal(sm(1, b), b)  # track 1 was forgotten
    assert sm(None, a) is a


def test_parse_masker_missing_or_wrong_weights(tmp_path):
    with pytest.raises(UserError, match="parsing_parsenet"):
        ParseMasker(str(tmp_path / "parsing_parsenet.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(UserError, match="bad.pth"):
        ParseMasker(str(bad))
