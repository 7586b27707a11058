"""Key-frame detection with tracking in between: schedule, forced detections, backfill, and the
real MTCNN tracker against full detection on a moving face."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import skimage.data

from gfpgan.inference.faces.detection import Detections, Tracked, build_detector
from gfpgan.inference.faces.pipeline import select_indices
from gfpgan.inference.job.segments import images
from gfpgan.inference.tracks.keyframes import KeyframeDetector
from gfpgan.inference.tracks.sinks import FaceList
from gfpgan.inference.tracks.tracking import box_iou, landmark_jitter
from gfpgan.inference.tracks.video_restorer import VideoFaceRestorer
from tests.test_inference_pipeline import Identity


class World:
    """Faces known per frame; frame k is an image whose first pixel holds k."""

    def __init__(self, faces):
        self.faces = faces  # frame -> list of boxes
        self.detect_calls = []

    def frame(self, k):
        img = np.zeros((200, 300, 3), np.uint8)
        img[0, 0, 0] = k
        return img

    def _dets(self, k):
        boxes = np.asarray(self.faces.get(k, []), np.float32).reshape(-1, 4)
        lm = np.repeat(((boxes[:, :2] + boxes[:, 2:]) / 2)[:, None], 5, 1)
        return Detections(boxes, np.ones(len(boxes), np.float32), lm)

    def detect(self, frames):
        ks = [int(f[0, 0, 0]) for f in frames]
        self.detect_calls += ks
        return [self._dets(k) for k in ks]

    def track(self, frame, boxes):
        d = self._dets(int(frame[0, 0, 0]))
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        out = Detections(boxes.astype(np.float32), np.zeros(len(boxes), np.float32),
                         np.zeros((len(boxes), 5, 2), np.float32))
        found = np.zeros(len(boxes), bool)
        if len(d):
            iou = box_iou(boxes, d.boxes)
            for i in range(len(boxes)):
                j = int(np.argmax(iou[i]))
                if iou[i, j] >= 0.3:
                    found[i] = True
                    out.boxes[i], out.scores[i], out.landmarks[i] = d.boxes[j], 1, d.landmarks[j]
        return Tracked(out, found)


def _run(world, n, every=8, first_index=0, chunk=4):
    kd = KeyframeDetector(world.detect, world.track, lambda d, s: select_indices(d, s), every)
    kd.start(first_index)
    out = []
    for s in range(0, n, chunk):
        out += kd.push(s, [world.frame(k) for k in range(s, min(n, s + chunk))])
    out += kd.flush()
    return kd, out


def test_full_detection_only_on_key_frames_while_tracking_holds():
    world = World({k: [[10 + 3 * k, 20, 70 + 3 * k, 80]] for k in range(20)})
    kd, out = _run(world, 20)
    assert world.detect_calls == [0, 8, 16]
    assert [i for i, _, _ in out] == list(range(20)) and kd.finalized == 20
    for i, _, det in out:  # every frame has the face, at its own position
        assert det.boxes.tolist() == [[10 + 3 * i, 20, 70 + 3 * i, 80]]


def test_key_frames_follow_the_video_frame_numbers():
    world = World({k: [[10, 20, 70, 80]] for k in range(20)})
    _run(world, 20, first_index=5)  # stream frame 0 is video frame 5: keys at video 8, 16, 24
    assert world.detect_calls == [0, 3, 11, 19]


def test_a_lost_face_is_looked_for_again_in_the_same_frame():
    # the face jumps at frame 5 (no overlap with its predicted box): tracking loses it
    world = World({k: [[10, 20, 70, 80]] if k < 5 else [[200, 100, 260, 160]] for k in range(12)})
    _, out = _run(world, 12)
    assert world.detect_calls == [0, 5, 8]
    assert all(det.boxes.tolist() == [[200, 100, 260, 160]] for i, _, det in out if i >= 5)


def test_a_face_appearing_between_key_frames_is_restored_from_its_first_frame():
    faces = {k: [[10, 20, 70, 80]] for k in range(24)}
    for k in range(11, 24):  # a second face enters at frame 11, found by the key frame 16
        faces[k] = faces[k] + [[150 + 2 * k, 50, 210 + 2 * k, 110]]
    world = World(faces)
    _, out = _run(world, 24)
    assert world.detect_calls == [0, 8, 16]
    counts = [len(det) for _, _, det in out]
    assert counts == [1] * 11 + [2] * 13
    for i, _, det in out[11:]:
        assert sorted(det.boxes.tolist()) == sorted(faces[i])


def test_every_1_and_detectors_without_track_detect_every_frame():
    world = World({k: [[10, 20, 70, 80]] for k in range(6)})
    kd, out = _run(world, 6, every=1)
    assert world.detect_calls == list(range(6)) and len(out) == 6
    world2 = World({k: [[10, 20, 70, 80]] for k in range(6)})
    kd2 = KeyframeDetector(world2.detect, None, lambda d, s: select_indices(d, s), 8)
    assert kd2.every == 1


def test_selection_applies_to_tracked_faces():
    # the face shrinks below min_face at frame 6: dropped there although the tracker holds it
    world = World({k: [[10, 20, 70, 80]] if k < 6 else [[10, 20, 40, 50]] for k in range(10)})
    kd = KeyframeDetector(world.detect, world.track,
                          lambda d, s: select_indices(d, s, "all", min_face=40), 8)
    kd.start()
    out = kd.push(0, [world.frame(k) for k in range(10)]) + kd.flush()
    assert [len(d) for _, _, d in out] == [1] * 6 + [0] * 4


@pytest.fixture(scope="module")
def moving_face():
    side = 300
    face = cv2.resize(skimage.data.astronaut(), (side, side), interpolation=cv2.INTER_AREA)
    frames, offsets = [], []
    for i in range(24):
        img = np.full((360, 640, 3), 70, np.uint8)
        x, y = 20 + 9 * i, 30 + int(round(10 * np.sin(i / 5)))
        img[y:y + side, x:x + side] = face
        frames.append(img)
        offsets.append((x, y))
    return frames, np.asarray(offsets, np.float64)


def test_mtcnn_track_follows_the_face_closer_than_full_detection(moving_face):
    frames, off = moving_face
    det = build_detector("mtcnn")
    full = det.detect(frames)
    boxes = full[0].boxes.astype(np.float64)
    prev, tracked = boxes, [full[0].landmarks[0]]
    for f in frames[1:]:
        tr = det.track(f, boxes + (boxes - prev))
        assert tr.found.tolist() == [True] and tr.det.scores[0] > 0.9
        prev, boxes = boxes, tr.det.boxes.astype(np.float64)
        tracked.append(tr.det.landmarks[0])
    tracked = np.asarray(tracked)
    full_lm = np.asarray([d.landmarks[0] for d in full])
    assert np.abs(tracked - full_lm).max() < 2.5  # the same points, within a pixel or two
    # the face only translates: landmark minus offset is constant up to detection noise
    noise = lambda lm: (lm - off[:, None])[1:].std(0).mean()  # noqa: E731
    assert noise(tracked) < 0.7 * noise(full_lm)
    lost = det.track(np.full((360, 640, 3), 70, np.uint8), boxes)
    assert lost.found.tolist() == [False]


def test_video_restorer_with_key_frames_matches_per_frame_detection(moving_face):
    frames, off = moving_face

    runs = {}
    for every in (1, 8):
        faces = FaceList()
        vr = VideoFaceRestorer(Identity(), device="cpu", detect_every=every, stabilize=False,
                               sinks=[faces])
        out = images(vr.process(frames))
        assert len(out) == len(frames)
        runs[every] = (np.asarray([r.smoothed for r in faces.records]), vr.keyframes)
    lm1, kd1 = runs[1]
    lm8, kd8 = runs[8]
    assert len(lm1) == len(lm8) == len(frames)
    assert kd1.full_detections == 24 and kd8.full_detections == 3
    assert np.abs(lm1 - lm8).max() < 2.5
    assert landmark_jitter(lm8, lm8[:1] + (off - off[0])[:, None]) < \
        landmark_jitter(lm1, lm1[:1] + (off - off[0])[:, None])


def test_a_real_face_entering_mid_clip_is_restored_from_the_frame_it_appears(moving_face):
    frames, _ = moving_face
    blank = np.full_like(frames[0], 70)
    clip = [blank] * 11 + frames[11:]  # the face appears at frame 11; key frames 0, 8, 16
    faces = FaceList()
    vr = VideoFaceRestorer(Identity(), device="cpu", detect_every=8, sinks=[faces])
    out = images(vr.process(clip))
    assert sorted({r.frame for r in faces.records}) == list(range(11, 24))
    assert vr.keyframes.full_detections == 3
    assert all(o is c for o, c in zip(out[:11], clip[:11]))  # faceless frames pass through


@pytest.mark.slow  # four interpreter start-ups with torch and MTCNN
def test_bench_video_runs_the_contenders_side_by_side(capsys, tmp_path):
    from gfpgan.precision import choose_precision
    from gfpgan.tools.bench_video import main

    assert main(["--frames", "12", "--size", "640x360", "--detect-every", "4",
                 "--json", str(tmp_path / "v.json")]) == 0
    saved = json.loads((tmp_path / "v.json").read_text())["runs"]
    names = ("naive", "before (fp32, 8 a pass)", "ours, detect every frame", "ours, every 4, one thread",
             "ours, detect every 4")
    assert set(saved) == set(names)
    assert all(r["frames"] == 12 for r in saved.values())
    # the defaults chosen for this CPU, and the defaults before them
    used = {name: (r["precision"], r["batch_faces"]) for name, r in saved.items()}
    assert used["ours, detect every 4"] == (choose_precision("auto", "cpu").name, 1)
    assert used["before (fp32, 8 a pass)"] == ("fp32", 8)
    lines = capsys.readouterr().out.splitlines()
    rows, busy = {}, {}
    for name in names:
        [line] = [ln for ln in lines if ln.startswith(name + " ") and "busy" not in ln]
        fps, ratio, steady, steady_ratio, spf, x_before, rss = line[len(name):].split()[:7]
        rows[name] = (float(fps), float(ratio.rstrip("x")), float(steady),
                      float(steady_ratio.rstrip("x")), float(rss), float(spf), float(x_before.rstrip("x")))
        stages = [ln for ln in lines if ln.startswith(name + " busy seconds: ")]
        if stages:
            busy[name] = {k: float(v) for k, v in (
                part.split() for part in stages[0].split(": ", 1)[1].split(" (")[0].split(", "))}
    assert rows["naive"][1] == rows["naive"][3] == 1.0 and rows["before (fp32, 8 a pass)"][6] == 1.0
    assert all(fps > 0 and steady > 0 and rss > 0 and spf == pytest.approx(1 / fps, rel=0.02, abs=1e-3)
               for fps, _, steady, _, rss, spf, _ in rows.values())
    assert set(busy) == set(names[1:])
    assert "track" not in busy["ours, detect every frame"]  # detect_every=1 never tracks
    assert busy["ours, detect every 4"]["track"] > 0
    assert all(b["detect"] > 0 and b["generator"] > 0 and b["encode"] > 0 for b in busy.values())


def test_retinaface_track_maps_window_detections_back_to_the_frame():
    from gfpgan.inference.faces.detection import RetinaFaceDetector

    class WhiteSquare:  # stands in for facexlib's RetinaFace: "detects" the white pixels
        def detect_faces(self, bgr, conf_threshold):
            ys, xs = np.nonzero(bgr[..., 0] == 255)
            if len(xs) == 0:
                return np.zeros((0, 15))
            x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            lm = [x1, y1, x2, y1, (x1 + x2) / 2, (y1 + y2) / 2, x1, y2, x2, y2]
            return np.array([[x1, y1, x2, y2, 0.99, *lm]], np.float64)

    det = object.__new__(RetinaFaceDetector)  # no weights offline: the window logic alone
    det.net, det.threshold, det.max_side = WhiteSquare(), 0.97, 1280
    img = np.zeros((120, 200, 3), np.uint8)
    img[5:45, 150:190] = 255  # near the top-right corner: the window is padded there
    tr = det.track(img, np.array([[146.0, 2.0, 186.0, 42.0], [20.0, 60.0, 60.0, 100.0]]))
    assert tr.found.tolist() == [True, False]
    assert tr.det.boxes[0].tolist() == [150, 5, 190, 45]
    assert tr.det.landmarks[0][0].tolist() == [150, 5] and tr.det.landmarks[0][4].tolist() == [190, 45]
