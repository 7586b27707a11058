"""Tracking, landmark smoothing and the measured stabilisation on a generated moving-face clip."""

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from gfpgan.inference.faces.alignment import transform_points
from gfpgan.inference.job.segments import images
from gfpgan.inference.tracks.sinks import FaceList
from gfpgan.inference.tracks.tracking import IoUTracker, LandmarkSmoother, box_iou, landmark_jitter


def lm_for_box(box):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    rel = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])
    return rel * [w, h] + [x1, y1]


def test_box_iou_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert np.allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0]])


def test_tracker_keeps_ids_when_detection_order_changes_and_bridges_misses():
    tr = IoUTracker(max_missed=2)
    boxes = [np.array([10.0, 10, 50, 50]), np.array([100.0, 10, 140, 50])]
    ids0 = tr.update(np.stack(boxes), np.stack([lm_for_box(b) for b in boxes]))
    assert sorted(ids0.tolist()) == [0, 1]
    moved = [b + [3, 1, 3, 1] for b in boxes][::-1]  # both move; detector lists them reversed
    ids1 = tr.update(np.stack(moved), np.stack([lm_for_box(b) for b in moved]))
    assert ids1.tolist() == ids0.tolist()[::-1]
    # face 0 is missed for one frame, then comes back: same id; a new face gets a new id
    only1 = moved[0][None]
    assert tr.update(only1, lm_for_box(moved[0])[None]).tolist() == [ids1[0]]
    back = np.stack([moved[1], moved[0], np.array([200.0, 100, 240, 140])])
    ids3 = tr.update(back, np.stack([lm_for_box(b) for b in back]))
    assert ids3.tolist() == [ids1[1], ids1[0], 2]
    # after more than max_missed frames the track is gone
    for _ in range(3):
        tr.update(np.zeros((0, 4)), np.zeros((0, 5, 2)))
    assert tr.live_ids == []


def test_smoother_has_no_lag_on_linear_motion_and_handles_gaps():
    sm = LandmarkSmoother(past=8, lookahead=2)
    base = lm_for_box([0, 0, 100, 100])
    truth = {t: base + [1.7 * t, -0.6 * t] for t in range(30)}
    for t in range(30):
        if t not in (12, 13, 14):  # frames 12-14: the face was missed, nothing observed
            sm.observe(t, 0, truth[t])
        if t >= 2:  # streaming: frame t - 2 is estimated once frame t is known
            assert np.abs(sm.smoothed(t - 2, 0, raw=truth[t - 2]) - truth[t - 2]).max() < 1e-6
    # NaN landmarks do not vote
    sm.observe(30, 0, np.full((5, 2), np.nan))
    assert np.isfinite(sm.smoothed(29, 0)).all()
    # off = the raw landmarks
    off = LandmarkSmoother(enabled=False)
    off.observe(0, 0, base)
    raw = base + 3.0
    assert np.array_equal(off.smoothed(0, 0, raw=raw), raw)


def test_smoother_reduces_noise_on_a_synthetic_track():
    rng = np.random.default_rng(0)
    base = lm_for_box([0, 0, 100, 100])
    truth = np.stack([base + [10 * np.sin(t / 6), 0.5 * t] for t in range(60)])
    noisy = truth + rng.normal(0, 1.0, truth.shape)
    sm = LandmarkSmoother(past=8, lookahead=2)
    out = []
    for t in range(60):
        sm.observe(t, 0, noisy[t])
        if t >= 2:
            out.append(sm.smoothed(t - 2, 0))
    out = np.stack(out)
    raw_j = landmark_jitter(noisy[:58], truth[:58])
    smooth_j = landmark_jitter(out, truth[:58])
    assert smooth_j < 0.5 * raw_j


def test_landmark_jitter_metric():
    t = np.arange(20, dtype=float)[:, None, None]
    smooth = np.concatenate([t * 1.5, t * 0.2], -1).repeat(5, 1)  # (20, 5, 2) linear motion
    assert landmark_jitter(smooth, smooth) == 0.0
    assert landmark_jitter(smooth) < 1e-3  # self-reference: linear motion is smooth
    shaky = smooth.copy()
    shaky[::2, :, 0] += 1.0  # alternate 1 px horizontal shake
    assert abs(landmark_jitter(shaky, smooth) - 1.0) < 1e-9


class Identity(torch.nn.Module):
    """Restoration is irrelevant here: the test measures the alignment landmarks."""

    out_size = 64

    def forward(self, x, **kwargs):
        return x


def moving_face_clip(n=32, size=256, noise=6.0, seed=0):
    """astronaut() warped along a smooth sub-pixel path (translation, rotation, zoom) + noise."""
    from gfpgan.inference.faces.detection import build_detector

    base = cv2.resize(skimage.data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    det = build_detector("mtcnn")
    lm0 = det.detect([base])[0].landmarks[0]
    rng = np.random.default_rng(seed)
    frames, truth = [], []
    for t in range(n):
        a = 2 * np.pi * t / n
        m = cv2.getRotationMatrix2D((size / 2, size / 2), 4 * np.sin(a), 1 + 0.04 * np.sin(0.7 * a))
        m[:, 2] += (12 * np.sin(a) + 0.37 * t, 8 * np.cos(1.3 * a))
        f = cv2.warpAffine(base, m, (size, size), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
        frames.append(np.clip(f + rng.normal(0, noise, f.shape), 0, 255).astype(np.uint8))
        truth.append(transform_points(lm0, m))
    return frames, np.stack(truth), det


def test_stabilisation_halves_landmark_jitter_on_a_moving_face():
    from gfpgan.inference.tracks.video_restorer import VideoFaceRestorer

    frames, truth, det = moving_face_clip()
    found = det.detect(frames)  # detect once (batched); both runs see the same detections

    class Cached:
        def detect(self, images):
            return [found[next(i for i, f in enumerate(frames) if f is img)] for img in images]

    jitter = {}
    for stabilize in (False, True):
        faces = FaceList()
        vr = VideoFaceRestorer(Identity(), device="cpu", detector=Cached(), stabilize=stabilize,
                               lookahead=2, sinks=[faces])
        out = images(vr.process(frames))
        assert len(out) == len(frames)
        used = sorted(((r.frame, r.track, r.smoothed) for r in faces.records), key=lambda r: r[0])
        assert [r[0] for r in used] == list(range(len(frames)))  # one face, every frame
        assert len({r[1] for r in used}) == 1  # one track
        jitter[stabilize] = landmark_jitter(np.stack([r[2] for r in used]), truth)
    print(f"landmark jitter raw {jitter[False]:.3f} px, stabilised {jitter[True]:.3f} px")
    assert jitter[True] <= 0.5 * jitter[False]
    assert jitter[False] > 0.2  # the clip is really noisy: the test can fail


@pytest.mark.parametrize("lookahead", [0, 3])
def test_video_output_order_and_delay(lookahead):
    from gfpgan.inference.faces.detection import Detections
    from gfpgan.inference.tracks.video_restorer import VideoFaceRestorer

    class FakeDetector:
        """One face in even frames, none in odd ones."""

        def detect(self, images):
            out = []
            for img in images:
                if int(img[0, 0, 0]) % 2 == 0:
                    box = np.array([[20.0, 20, 60, 60]], np.float32)
                    out.append(Detections(box, np.ones(1, np.float32),
                                          lm_for_box(box[0])[None].astype(np.float32)))
                else:
                    out.append(Detections())
            return out

    frames = [np.full((80, 80, 3), i, np.uint8) for i in range(11)]
    vr = VideoFaceRestorer(Identity(), device="cpu", detector=FakeDetector(), lookahead=lookahead,
                           detect_batch_size=3)
    seen = []
    gen = vr.process(iter(frames))
    for out in gen:
        seen.append(out.image)
    assert len(seen) == len(frames)
    for i, (inp, out) in enumerate(zip(frames, seen)):
        if i % 2:
            assert out is inp  # no face: the very same array
        else:
            assert out is not inp and int(out[0, 0, 0]) == i  # order kept, background intact
