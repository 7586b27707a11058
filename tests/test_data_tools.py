"""Data tools: LMDB writer (atomic, resumable), to_lmdb, prepare_faces on the shipped astronaut photo,
component boxes (68-point and 5-point), synthetic test set, dataset benchmark."""

import json
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data

from gfpgan.data.components import boxes_from_5, boxes_from_68, component_locations, load_components
from gfpgan.data.file_backends import LmdbBackend, LmdbWriter, read_landmarks
from gfpgan.errors import UserError
from gfpgan.images import decode_image, read_image
from gfpgan.tools import component_boxes, make_testset, prepare_faces, to_lmdb

# Hand-annotated from a zoomed view of skimage.data.astronaut(): pupils and the middle of the mouth.
ASTRONAUT_LEFT_PUPIL = (204.0, 101.0)
ASTRONAUT_RIGHT_PUPIL = (245.5, 103.0)
ASTRONAUT_MOUTH = (224.0, 146.0)


def _imgs(n, size=32):
    rng = np.random.default_rng(0)
    return {f"{i:05d}": rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for i in range(n)}


class _Boom(Exception):
    pass


def test_lmdb_writer_is_atomic_and_resumes(tmp_path):
    imgs = _imgs(7)
    dest = tmp_path / "x.lmdb"
    with pytest.raises(_Boom):
        with LmdbWriter(dest, commit_every=2) as w:
            for i, (k, v) in enumerate(imgs.items()):
                if i == 5:
                    raise _Boom()
                w.add(k, v, landmarks=np.full((5, 2), i))
    assert not dest.exists() and (tmp_path / "x.lmdb.partial").is_dir()
    with LmdbWriter(dest, map_size=1 << 14) as w:  # tiny map: exercises the automatic growth
        assert len(w) == 5 and w.has("00004") and not w.has("00005")
        for k, v in imgs.items():
            if not w.has(k):
                w.add(k, v)
    assert not (tmp_path / "x.lmdb.partial").exists()
    lines = (dest / "meta_info.txt").read_text().splitlines()
    assert lines == [f"{k}.png (32,32,3) 1" for k in imgs]
    backend = LmdbBackend(dest)
    for k, v in imgs.items():
        np.testing.assert_array_equal(decode_image(backend.get(k)), v)
    lms = read_landmarks(dest)["landmarks"]
    assert sorted(lms) == list(imgs)[:5] and lms["00003"][0, 0] == 3
    with pytest.raises(UserError, match="already exists"):
        LmdbWriter(dest).__enter__()
    # restart discards an interrupted build instead of resuming it
    with pytest.raises(_Boom):
        with LmdbWriter(tmp_path / "y.lmdb") as w:
            w.add("a", imgs["00000"])
            raise _Boom()
    with LmdbWriter(tmp_path / "y.lmdb", resume=False) as w:
        assert len(w) == 0
        w.add("b", imgs["00001"])
    assert LmdbBackend(tmp_path / "y.lmdb").keys == ["b"]


def test_to_lmdb_converts_skips_bad_files_and_reports(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    imgs = _imgs(3)
    for k, v in imgs.items():
        cv2.imwrite(str(src / f"{k}.png"), v[:, :, ::-1])
    cv2.imwrite(str(src / "gray.png"), imgs["00000"][:, :, 0])
    (src / "bad.png").write_bytes(b"\x89PNG broken")
    (src / "empty.jpg").write_bytes(b"")
    assert to_lmdb.main([str(src), str(tmp_path / "o.lmdb"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "4 images written" in out and "2 unreadable skipped: bad.png, empty.jpg" in out
    meta = (tmp_path / "o.lmdb" / "meta_info.txt").read_text().splitlines()
    assert all(re.fullmatch(r"[\w]+\.png \(32,32,3\) 1", m) for m in meta) and len(meta) == 4
    g = decode_image(LmdbBackend(tmp_path / "o.lmdb").get("gray"))
    np.testing.assert_array_equal(g, np.repeat(imgs["00000"][:, :, :1], 3, 2))
    with pytest.raises(UserError, match="already exists"):
        to_lmdb.main([str(src), str(tmp_path / "o.lmdb")])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"no")
    with pytest.raises(UserError, match="no image in .* is readable"):
        to_lmdb.main([str(bad), str(tmp_path / "b.lmdb"), "--quiet"])
    assert not (tmp_path / "b.lmdb").exists() and not (tmp_path / "b.lmdb.partial").exists()
    # the CLI reports it in one line, no traceback, exit code 2
    res = subprocess.run([sys.executable, "-m", "gfpgan.tools.to_lmdb", str(bad), str(tmp_path / "c.lmdb")],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: no image in")


def test_boxes_from_68_points_follow_the_reference_formula():
    lm = np.zeros((68, 2))
    lm[36:42] = [[100, 200], [110, 196], [120, 196], [130, 200], [120, 204], [110, 204]]  # 30 wide
    lm[42:48] = lm[36:42] + [200, 0]
    lm[48:68] = np.linspace([150, 300], [250, 340], 20)  # 100 wide, 40 tall
    b = boxes_from_68(lm * 2, scale=0.5)
    np.testing.assert_allclose(b["left_eye"], [115, 200, 16])  # 30/2 < 16: clamped
    np.testing.assert_allclose(b["right_eye"], [315, 200, 16])
    np.testing.assert_allclose(b["mouth"], [200, 320, 50])


def test_component_boxes_from_ffhq_json(tmp_path, capsys):
    lm = np.tile(np.linspace([100, 400], [900, 800], 68), (1, 1)).tolist()
    doc = {"0": {"image": {"face_landmarks": lm}}, "12": {"image": {"face_landmarks": lm}}}
    (tmp_path / "ffhq.json").write_text(json.dumps(doc))
    assert component_boxes.main(["--ffhq-json", str(tmp_path / "ffhq.json"), "-o", str(tmp_path / "b.pth"),
                                 "--quiet"]) == 0
    boxes = load_components(tmp_path / "b.pth")
    assert sorted(boxes) == ["00000000", "00000012"]
    np.testing.assert_allclose(boxes["00000012"]["mouth"], boxes_from_68(np.array(lm), 0.5)["mouth"])
    (tmp_path / "bad.json").write_text(json.dumps({"0": {"image": {}}}))
    with pytest.raises(UserError, match="bad.json: entry '0' has no 68-point"):
        component_boxes.main(["--ffhq-json", str(tmp_path / "bad.json"), "-o", str(tmp_path / "c.pth")])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The astronaut photo through prepare_faces at 256 (one detector run for the module)."""
    root = tmp_path_factory.mktemp("prep")
    photos = root / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "astronaut.png"), skimage.data.astronaut()[:, :, ::-1])
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    assert prepare_faces.main([str(photos), str(root / "faces"), "--size", "256", "--quiet"]) == 0
    return root


def test_prepare_finds_and_aligns_the_astronaut(prepared):
    from gfpgan.inference.faces.alignment import face_template

    faces = prepared / "faces"
    assert sorted(p.name for p in faces.iterdir()) == ["astronaut_00.png", "landmarks.json"]
    crop = read_image(faces / "astronaut_00.png")
    assert crop.shape == (256, 256, 3)
    lm = read_landmarks(faces)
    assert lm["size"] == 256
    # the aligned landmarks sit on the FFHQ template (a similarity cannot fit 5 points exactly)
    err = np.linalg.norm(lm["landmarks"]["astronaut_00"] - face_template(256), axis=1)
    assert err.max() < 8
    # and the crop is the face: skin-coloured centre (red > green > blue), not background or suit
    r, g, b = crop[100:160, 100:160].reshape(-1, 3).mean(0)
    assert r > g > b and r > 150


def test_component_boxes_from_5_points_land_on_the_astronauts_eyes_and_mouth(prepared, tmp_path):
    from gfpgan.inference.faces.alignment import similarity_lstsq, transform_points

    assert component_boxes.main(["--landmarks", str(prepared / "faces"), "-o", str(tmp_path / "b.pth"),
                                 "--quiet"]) == 0
    entry = load_components(tmp_path / "b.pth")["astronaut_00"]
    locs = component_locations(entry, hflip=False, width=256, eye_enlarge_ratio=1.4)
    # map the hand annotations from the photo into the crop through the landmarks' similarity
    photo_lm = np.array([[205.0, 101.7], [246.8, 103.7], [224.7, 129.0], [201.7, 139.2], [245.3, 141.9]])
    m = similarity_lstsq(photo_lm, read_landmarks(prepared / "faces")["landmarks"]["astronaut_00"])
    targets = transform_points(np.array([ASTRONAUT_LEFT_PUPIL, ASTRONAUT_RIGHT_PUPIL, ASTRONAUT_MOUTH]), m)
    for loc, (x, y), name in zip(locs, targets, ("left eye", "right eye", "mouth")):
        x1, y1, x2, y2 = loc.tolist()
        assert x1 < x < x2 and y1 < y < y2, name
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        assert abs(cx - x) < 0.25 * (x2 - x1) and abs(cy - y) < 0.25 * (y2 - y1), name
    # boxes are face-part sized: an eye box holds one eye, not both
    assert locs[0][2] < locs[1][0]
    assert 0.2 < (locs[2][2] - locs[2][0]) / 256 < 0.5


def test_prepare_skips_small_faces_and_says_so(prepared, tmp_path):
    with pytest.raises(UserError, match="no face of at least 4000 px"):
        prepare_faces.main([str(prepared / "photos" / "astronaut.png"), str(tmp_path / "o"),
                            "--min-size", "4000", "--quiet"])
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_boxes_from_5_scale_with_the_crop():
    from gfpgan.inference.faces.alignment import face_template

    a, b = boxes_from_5(face_template(512), 512), boxes_from_5(face_template(256), 256)
    for p in a:
        np.testing.assert_allclose(a[p], 2 * b[p], rtol=1e-9)


def _make_hq(root, n=3, size=64):
    root.mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        img = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (size, size))
        cv2.imwrite(str(root / f"{i:03d}.png"), img)
    (root / "zz_bad.png").write_bytes(b"junk")


def test_make_testset_is_deterministic_and_its_manifest_matches(tmp_path):
    _make_hq(tmp_path / "hq")
    args = [str(tmp_path / "hq"), "--size", "64", "--seed", "3", "--quiet"]
    assert make_testset.main(args[:1] + [str(tmp_path / "a")] + args[1:]) == 0
    assert make_testset.main(args[:1] + [str(tmp_path / "b")] + args[1:]) == 0
    for setting, lq_size in (("blind", 64), ("sr4", 16)):
        ma = json.loads((tmp_path / "a" / setting / "manifest.json").read_text())
        mb = json.loads((tmp_path / "b" / setting / "manifest.json").read_text())
        assert ma == mb and ma["lq_size"] == lq_size and len(ma["images"]) == 3
        for rec in ma["images"]:
            gt = read_image(tmp_path / "a" / setting / "gt" / rec["name"])
            lq_file = tmp_path / "a" / setting / "lq" / rec["name"]
            assert lq_file.read_bytes() == (tmp_path / "b" / setting / "lq" / rec["name"]).read_bytes()
            import hashlib

            assert hashlib.sha256(lq_file.read_bytes()).hexdigest() == rec["lq_sha256"]
            # replaying the recorded parameters on the GT reproduces the written LQ exactly
            replay = make_testset.degrade_pair(gt, rec["params"], ma["scale"])
            np.testing.assert_array_equal(replay, read_image(lq_file))
            assert replay.shape == (lq_size, lq_size, 3)
    pa = json.loads((tmp_path / "a" / "blind" / "manifest.json").read_text())["images"]
    ps = json.loads((tmp_path / "a" / "sr4" / "manifest.json").read_text())["images"]
    assert [r["params"] for r in pa] == [r["params"] for r in ps]  # both settings share parameters
    assert make_testset.main([str(tmp_path / "hq"), str(tmp_path / "c"), "--size", "64", "--seed", "4",
                              "--quiet", "--setting", "blind"]) == 0
    pc = json.loads((tmp_path / "c" / "blind" / "manifest.json").read_text())["images"]
    assert [r["params"] for r in pc] != [r["params"] for r in pa]
    assert not (tmp_path / "c" / "sr4").exists()


def test_make_testset_resumes_an_interrupted_run(tmp_path, monkeypatch):
    _make_hq(tmp_path / "hq")
    calls = {"n": 0}
    real = make_testset.degrade_pair

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(make_testset, "degrade_pair", flaky)
    with pytest.raises(KeyboardInterrupt):
        make_testset.main([str(tmp_path / "hq"), str(tmp_path / "t"), "--size", "64", "--quiet"])
    assert not (tmp_path / "t").exists() and (tmp_path / "t.partial").exists()
    monkeypatch.setattr(make_testset, "degrade_pair", real)
    assert make_testset.main([str(tmp_path / "hq"), str(tmp_path / "t"), "--size", "64", "--quiet"]) == 0
    assert make_testset.main([str(tmp_path / "hq"), str(tmp_path / "u"), "--size", "64", "--quiet"]) == 0
    for s in ("blind", "sr4"):
        assert (json.loads((tmp_path / "t" / s / "manifest.json").read_text())
                == json.loads((tmp_path / "u" / s / "manifest.json").read_text()))


def test_bench_dataset_runs(capsys):
    from gfpgan.tools import bench_dataset

    assert bench_dataset.main(["--samples", "2", "--images", "2", "--no-reference"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"ours\s+[\d.]+ samples/s", out) and "workers of ours" in out
