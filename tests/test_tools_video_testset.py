"""The synthetic video test set: deterministic, per-clip seeding, disjoint face selection, a manifest
that replays exactly, the recorded motion, resumable and atomic, bad input in one sentence."""

import hashlib
import json

import cv2
import numpy as np
import pytest
import torch

from gfpgan.data import FaceTrackClipDataset
from gfpgan.data.clip_degradations import degrade_clip
from gfpgan.errors import UserError, run_cli
from gfpgan.images import read_image
from gfpgan.motion import valid_mask, warp_previous
from gfpgan.tools import make_video_testset as mvt

ARGS = ["--size", "48", "--frames", "3", "--seed", "2", "--quiet"]


def _hq(root, n=4):
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = cv2.resize(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), (64, 64),
                         interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(root / f"{i:03d}.png"), img)
    return root


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())


def test_video_testset_is_deterministic_per_clip_and_replays(tmp_path):
    hq = _hq(tmp_path / "hq")
    assert mvt.main([str(hq), str(tmp_path / "a"), "--start", "1", "--num", "2", *ARGS]) == 0
    assert mvt.main([str(hq), str(tmp_path / "b"), "--list", str(_list(tmp_path, ["002.png"])), *ARGS]) == 0
    ma, mb = _manifest(tmp_path / "a"), _manifest(tmp_path / "b")
    assert [c["source"] for c in ma["clips"]] == ["001.png", "002.png"]  # the chosen, disjoint range
    assert ma["clips"][1] == mb["clips"][0]  # a clip does not depend on the other faces
    for rec in ma["clips"]:
        gts = [read_image(tmp_path / "a" / "gt" / rec["name"] / f"{t:05d}.png") for t in range(3)]
        lqs = [read_image(tmp_path / "a" / "lq" / rec["name"] / f"{t:05d}.png") for t in range(3)]
        files = [tmp_path / "a" / "lq" / rec["name"] / f"{t:05d}.png" for t in range(3)]
        assert [hashlib.sha256(f.read_bytes()).hexdigest() for f in files] == rec["lq_sha256"]
        assert 18 <= rec["crf"] <= 25 and len(rec["params"]) == 3
        replay = degrade_clip([g.astype(np.float32) / 255.0 for g in gts], rec["params"], 48, rec["crf"])
        for r, lq in zip(replay, lqs):
            np.testing.assert_array_equal(np.round(r * 255).astype(np.uint8), lq)
        # the recorded transforms move GT frame t-1 onto frame t
        clip = torch.from_numpy(np.stack(gts).astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        rel = torch.tensor(rec["rel_affines"], dtype=torch.float32)
        warped, cover = warp_previous(clip[:-1], rel[1:], 48)
        m = valid_mask(cover).expand_as(warped)
        err, still = (warped - clip[1:]).abs()[m].mean(), (clip[:-1] - clip[1:]).abs()[m].mean()
        assert err < 0.5 * still, (err, still)
    other = mvt.main([str(hq), str(tmp_path / "c"), "--start", "1", "--num", "2", *ARGS[:-3], "--seed", "3",
                      "--quiet"])
    assert other == 0 and _manifest(tmp_path / "c")["clips"][0]["params"] != ma["clips"][0]["params"]
    # the GT and LQ folders are track folders the clip loader reads
    assert len(FaceTrackClipDataset(str(tmp_path / "a" / "lq"), num_frames=3, out_size=48, rank=0)) == 2


def _list(tmp_path, names):
    p = tmp_path / "faces.txt"
    p.write_text("\n".join(names) + "\n")
    return p


def test_video_testset_resumes_and_never_leaves_a_partial_destination(tmp_path, monkeypatch):
    hq = _hq(tmp_path / "hq", 3)
    calls = {"n": 0}
    real = mvt.clip_of

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(mvt, "clip_of", flaky)
    with pytest.raises(KeyboardInterrupt):
        mvt.main([str(hq), str(tmp_path / "t"), *ARGS])
    assert not (tmp_path / "t").exists() and (tmp_path / "t.partial").exists()
    monkeypatch.setattr(mvt, "clip_of", real)
    assert mvt.main([str(hq), str(tmp_path / "t"), *ARGS]) == 0
    assert mvt.main([str(hq), str(tmp_path / "u"), *ARGS]) == 0
    assert _manifest(tmp_path / "t") == _manifest(tmp_path / "u")


@pytest.mark.parametrize("extra,message", [
    (["--start", "9"], "outside the 4 faces"),
    (["--frames", "1"], "at least 2"),
    (["--list", "LIST"], "listed faces are not in"),
])
def test_video_testset_bad_input_is_one_sentence(tmp_path, capsys, extra, message):
    hq = _hq(tmp_path / "hq")
    extra = [str(_list(tmp_path, ["nope.png"])) if e == "LIST" else e for e in extra]
    with pytest.raises(SystemExit) as exc:
        run_cli(mvt.main, [str(hq), str(tmp_path / "o"), *ARGS, *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
    (tmp_path / "o").mkdir()
    with pytest.raises(UserError, match="already exists"):
        mvt.main([str(hq), str(tmp_path / "o"), *ARGS])
