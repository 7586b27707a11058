"""Image pipeline on the real astronaut photo (MTCNN), face selection, pass-through, batching."""

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from gfpgan.errors import UserError
from gfpgan.inference.faces.alignment import face_template, transform_points
from gfpgan.inference.faces.detection import Detections
from gfpgan.inference.faces.model import FaceModel
from gfpgan.inference.faces.pipeline import FaceRestorer, select_faces
from gfpgan.inference.job.segments import images
from gfpgan.inference.tracks.video_restorer import VideoFaceRestorer


class Identity(torch.nn.Module):
    out_size = 128

    def forward(self, x, **kwargs):
        return x


class Constant(FaceModel):
    """A FaceModel returning a flat grey-ish face; records batch sizes."""

    def __init__(self, size=32, value=0.8):
        self.size, self.device, self.value, self.batches = size, torch.device("cpu"), value, []

    def __call__(self, x):
        self.batches.append(x.shape[0])
        return torch.full_like(x, self.value)


def det_of(boxes):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    lms = []
    for x1, y1, x2, y2 in boxes:
        rel = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])
        lms.append(rel * [x2 - x1, y2 - y1] + [x1, y1])
    return Detections(boxes, np.linspace(1, 0.9, len(boxes)).astype(np.float32),
                      np.asarray(lms, np.float32).reshape(-1, 5, 2))


class BoxDetector:
    def __init__(self, boxes):
        self.boxes = boxes

    def detect(self, images):
        return [det_of(self.boxes) for _ in images]


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def mtcnn():
    from gfpgan.inference.faces.detection import build_detector

    return build_detector("mtcnn")


def test_select_faces_only_and_min_face():
    det = det_of([[0, 0, 20, 20], [40, 40, 100, 100], [150, 150, 170, 170], [90, 90, 110, 110]])
    shape = (200, 200, 3)
    assert len(select_faces(det, shape, "all")) == 4
    assert select_faces(det, shape, "largest").boxes.tolist() == [[40, 40, 100, 100]]
    assert select_faces(det, shape, "center").boxes.tolist() == [[90, 90, 110, 110]]
    assert len(select_faces(det, shape, "all", min_face=21)) == 1
    assert len(select_faces(Detections(), shape, "center")) == 0


def test_astronaut_face_is_found_aligned_and_pasted_back(astronaut, mtcnn):
    fr = FaceRestorer(Identity(), device="cpu", detector=mtcnn, upscale=1)
    res = fr.restore(astronaut)
    assert len(res.cropped_faces) == 1 and len(res.restored_faces) == 1
    x1, y1, x2, y2 = res.detections.boxes[0]
    assert 150 < (x1 + x2) / 2 < 300 and 60 < (y1 + y2) / 2 < 200  # the astronaut's face
    # the crop's landmarks land on the template
    from gfpgan.inference.faces.alignment import estimate_affine

    m = estimate_affine(res.detections.landmarks[0], 128)
    assert np.abs(transform_points(res.detections.landmarks[0], m) - face_template(128)).max() < 4
    # identity restoration: the image comes back almost unchanged, outside the face exactly
    diff = np.abs(res.restored_img.astype(int) - astronaut.astype(int))
    assert res.restored_img.shape == astronaut.shape
    assert diff.mean() < 1.0 and diff[400:].max() == 0 and diff[:, :100].max() == 0
    assert np.array_equal(res.cropped_faces[0], res.restored_faces[0])


def test_restored_face_shows_up_in_the_image_with_upscale(astronaut):
    box = [200, 80, 280, 180]  # a sharp face 3x the model's crop: the paste itself, rule off
    fr = FaceRestorer(Constant(value=1.0), device="cpu", detector=BoxDetector(box), upscale=2,
                      keep_detail=0)
    res = fr.restore(astronaut)
    out = res.restored_img
    assert out.shape == (1024, 1024, 3)
    cx, cy = (box[0] + box[2]), (box[1] + box[3])  # box centre at 2x
    assert out[cy - 10:cy + 10, cx - 10:cx + 10].min() >= 250  # the white face is there
    assert np.abs(out[900:, 900:].astype(int) - np.asarray(
        __import__("cv2").resize(astronaut, (1024, 1024), interpolation=4))[900:, 900:]).max() == 0


def test_aligned_mode_and_no_face(astronaut):
    fr = FaceRestorer(Constant(size=32), device="cpu", aligned=True)
    res = fr.restore(astronaut)
    assert res.restored_img is None and res.cropped_faces[0].shape == (32, 32, 3)
    assert (res.restored_faces[0] == 230).all()  # (0.8 + 1) * 127.5 = 229.5 -> 230
    none = FaceRestorer(Constant(), device="cpu", detector=BoxDetector(np.zeros((0, 4))), upscale=1)
    blank = np.zeros((50, 60, 3), np.uint8)
    res = none.restore(blank)
    assert res.cropped_faces == [] and np.array_equal(res.restored_img, blank)


def test_video_frames_without_faces_pass_through_bit_identical(mtcnn):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(3)]
    frames.append(np.zeros((96, 128, 3), np.uint8))
    copies = [f.copy() for f in frames]
    model = Constant()
    vr = VideoFaceRestorer(model, device="cpu", detector=mtcnn)
    out = images(vr.process(frames))
    assert all(o is f for o, f in zip(out, frames))
    assert all(np.array_equal(o, c) for o, c in zip(out, copies))
    assert model.batches == []


def test_video_batches_faces_across_frames():
    model = Constant()
    boxes = [[10, 10, 50, 50], [60, 10, 100, 50]]  # two faces per frame
    frames = [np.full((80, 120, 3), i, np.uint8) for i in range(6)]
    vr = VideoFaceRestorer(model, device="cpu", detector=BoxDetector(boxes), batch_faces=4,
                           lookahead=1, detect_batch_size=6)
    out = images(vr.process(frames))
    assert len(out) == 6 and sum(model.batches) == 12
    assert max(model.batches) == 4 and len(model.batches) == 3  # 2 frames x 2 faces per forward
    for i, (f, o) in enumerate(zip(frames, out)):
        assert o[70, 115].tolist() == [i, i, i]  # background untouched
        assert o[30, 30].min() > 200  # the restored (white) face is pasted
        assert (f == i).all()  # the input frame was not modified


def test_strength_zero_returns_input_faces(astronaut, mtcnn):
    fr = FaceRestorer(Constant(value=-1.0, size=64), device="cpu", detector=mtcnn, strength=0.0)
    res = fr.restore(astronaut)
    assert len(res.restored_faces) == 1
    assert np.array_equal(res.restored_faces[0], res.cropped_faces[0])


def test_bad_options(astronaut):
    with pytest.raises(UserError, match="only"):
        FaceRestorer(Constant(), device="cpu", only="biggest")
    with pytest.raises(UserError, match="detector"):
        FaceRestorer(Constant(), device="cpu", detector="yolo")
    with pytest.raises(UserError, match="upscale"):
        FaceRestorer(Constant(), device="cpu", upscale=0)
    with pytest.raises(UserError, match="RetinaFace"):
        FaceRestorer(Constant(), device="cpu", detector="retinaface",
                     detector_weights="/nonexistent/detection_Resnet50_Final.pth").restore(astronaut)
    with pytest.raises(UserError, match="detection_Resnet50_Final.pth not found"):
        FaceRestorer(Constant(), device="cpu", detector="retinaface").restore(astronaut)


def test_parse_masks_are_feathered_and_smoothed_per_track():
    """ParseNet itself is too slow for a CPU test; a stub parser checks the mask plumbing."""
    from gfpgan.inference.faces.paste import MaskSmoother, feather_mask

    class StubParser:
        device = torch.device("cpu")

        def __init__(self):
            self.value = 1.0

        def __call__(self, faces):
            return torch.full((faces.shape[0], faces.shape[-1], faces.shape[-1]), self.value)

    fr = FaceRestorer(Constant(size=32), device="cpu", detector=BoxDetector([[0, 0, 10, 10]]))
    fr.parser = StubParser()
    faces = [np.zeros((32, 32, 3), np.uint8)] * 2
    sm = MaskSmoother(alpha=0.5)
    m = fr.face_masks(faces, [7, 8], sm)
    assert np.allclose(m[0], feather_mask(32))  # min(parse=1, feather) = feather
    fr.parser.value = 0.0  # the parse mask jumps to 0 for both tracks
    m = fr.face_masks(faces, [7, 8], sm)
    assert np.allclose(m[0], 0.5 * feather_mask(32))  # ... but the smoothed mask moves halfway
    m = fr.face_masks(faces, [7, 9], sm)  # track 9 is new: no history to smooth with
    assert np.allclose(m[0], 0.25 * feather_mask(32)) and np.allclose(m[1], 0.0)


@pytest.mark.parametrize("min_face, expected", [(0, 20), (48, 48)])
def test_mtcnn_does_not_search_for_faces_smaller_than_min_face(min_face, expected):
    vr = VideoFaceRestorer(Identity(), device="cpu", min_face=min_face)
    assert vr.detector.net.min_face_size == expected


def test_a_face_with_more_detail_than_the_crop_keeps_its_pixels(astronaut):
    from gfpgan.inference.faces.evidence import detail_beyond_crop, model_trust

    box = [200, 80, 280, 180]
    kept = FaceRestorer(Constant(value=1.0), device="cpu", detector=BoxDetector(box), upscale=2)
    assert kept.restore(astronaut).restored_img.tobytes() == kept.background_for(astronaut).tobytes()
    # the same face shrunk below the crop's size: the model can only add to it, so it is pasted
    small = cv2.resize(astronaut, (64, 64), interpolation=cv2.INTER_AREA)
    fr = FaceRestorer(Constant(value=1.0), device="cpu", detector=BoxDetector([25, 10, 35, 22]))
    assert fr.trust(small, fr.align(small, det_of([25, 10, 35, 22]).landmarks)[1]) == [1.0]
    # the figure: sharp and large loses detail; blurred or small loses none; the trust ramps
    m = fr.align(astronaut, det_of(box).landmarks)[1][0]
    sharp = detail_beyond_crop(astronaut, m, 32)
    blurred = detail_beyond_crop(cv2.GaussianBlur(astronaut, (0, 0), 4), m, 32)
    assert sharp < 32 < 45 < blurred
    assert [model_trust(d, 35) for d in (31.9, 35, 38.1)] == [0.0, 0.5, 1.0] and model_trust(10, 0) == 1.0
