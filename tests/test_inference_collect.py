"""The face database: best faces per track into an LMDB that the training dataset reads."""

import csv
import gc

import cv2
import numpy as np
import pytest
import torch

from gfpgan.inference.faces.detection import Detections
from gfpgan.inference.faces.evidence import sharpness
from gfpgan.inference.job.segments import images
from gfpgan.inference.tracks.face_database import METADATA_FILE, FaceCollector
from gfpgan.inference.tracks.video_restorer import VideoFaceRestorer


class Identity(torch.nn.Module):
    out_size = 64

    def forward(self, x, **kwargs):
        return x


def textured_frame(i, blur, rng):
    img = rng.integers(0, 256, (96, 160, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    if blur:
        img = cv2.GaussianBlur(img, (0, 0), 4.0)
    return img


class TwoFaces:
    """Face A in every frame; face B only in frames 0-1 (a too-short track)."""

    def detect(self, images):
        out = []
        for img in images:
            boxes = [[20, 20, 70, 70]]
            if img[0, 0, 0] == 255:  # marker for "B is visible"
                boxes.append([100, 20, 150, 70])
            boxes = np.asarray(boxes, np.float32)
            rel = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])
            lms = np.stack([rel * [b[2] - b[0], b[3] - b[1]] + b[:2] for b in boxes])
            out.append(Detections(boxes, np.full(len(boxes), 0.99, np.float32),
                                  lms.astype(np.float32)))
        return out


def make_clip(n=10, sharp=(3, 7)):
    rng = np.random.default_rng(0)
    frames = [textured_frame(i, blur=i not in sharp, rng=rng) for i in range(n)]
    frames[0][0, 0, 0] = frames[1][0, 0, 0] = 255
    for f in frames[2:]:
        f[0, 0, 0] = 0
    return frames


def test_sharpness_orders_blur():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert sharpness(img) > sharpness(cv2.GaussianBlur(img, (0, 0), 2)) > 0


def test_collect_keeps_sharpest_per_track_and_loads_in_training_dataset(tmp_path):
    frames = make_clip()
    col = FaceCollector(tmp_path / "db", video="my clip.mp4", top_n=2, min_track=3)
    vr = VideoFaceRestorer(Identity(), device="cpu", detector=TwoFaces(), sinks=[col])
    out = images(vr.process(frames))
    assert len(out) == len(frames)
    dest = col.close()
    assert dest == tmp_path / "db" / "faces.lmdb"
    assert sorted(p.name for p in dest.iterdir()) == [
        "data.mdb", "landmarks.json", "lock.mdb", "meta_info.txt", METADATA_FILE]
    meta = (dest / "meta_info.txt").read_text().split("\n")
    keys = [line.split(".png")[0] for line in meta if line]
    # track B (2 frames) is dropped; track A keeps its 2 sharp frames, not the blurred ones
    assert sorted(keys) == ["my_clip.mp4_t0000_f000003", "my_clip.mp4_t0000_f000007"]
    assert all("(64,64,3)" in line for line in meta if line)
    with open(dest / METADATA_FILE) as f:
        rows = list(csv.DictReader(f))
    assert [r["key"] for r in rows] == keys
    r = rows[0]
    assert r["video"] == "my_clip.mp4" and r["track"] == "0"
    assert [float(r[k]) for k in ("x1", "y1", "x2", "y2")] == [20, 20, 70, 70]
    assert float(r["score"]) == pytest.approx(0.99, abs=1e-4)
    assert float(r["lm0x"]) == pytest.approx(35.0, abs=0.01)  # frame-pixel landmarks
    from gfpgan.data.file_backends import read_landmarks

    lms = read_landmarks(dest / "landmarks.json")
    assert lms["size"] == 64 and set(lms["landmarks"]) == set(keys)
    from gfpgan.inference.faces.alignment import face_template

    # crop-pixel landmarks sit near the template (synthetic landmarks are not FFHQ-shaped)
    assert np.abs(lms["landmarks"][keys[0]] - face_template(64)).max() < 12

    from gfpgan.data import FFHQDegradationDataset

    ds = FFHQDegradationDataset(dataroot_gt=str(dest), io_backend={"type": "lmdb"}, out_size=64,
                                use_hflip=False)
    assert len(ds) == 2
    sample = ds[0]
    assert sample["gt"].shape == (3, 64, 64) and sample["lq"].shape == (3, 64, 64)
    assert float(sample["gt"].min()) >= -1 and float(sample["gt"].std()) > 0.05
    del ds, sample
    gc.collect()

    # a second video is added to the same dataset
    col2 = FaceCollector(tmp_path / "db", video="second", top_n=1, min_track=3)
    images(VideoFaceRestorer(Identity(), device="cpu", detector=TwoFaces(),
                             sinks=[col2]).process(make_clip()))
    col2.close()
    keys2 = [ln.split(".png")[0] for ln in (dest / "meta_info.txt").read_text().split("\n") if ln]
    assert keys2[:2] == keys and len(keys2) == 3 and keys2[2].startswith("second_t0000_f00000")
    with open(dest / METADATA_FILE) as f:
        assert [r["key"] for r in csv.DictReader(f)] == keys2
    assert not (tmp_path / "db" / "faces.lmdb.partial").exists()


def test_empty_collector_writes_nothing(tmp_path):
    col = FaceCollector(tmp_path / "x.lmdb")
    assert col.close() is None and not (tmp_path / "x.lmdb").exists()
