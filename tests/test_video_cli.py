"""gfpgan.infer_video end to end with a tiny random generator and the real face pipeline."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gfpgan.errors import UserError
from gfpgan.infer_video import main
from tests.test_video_io import audio_packets, make_clip, read_video
from tests.test_video_job import ROOT, _tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def test_cli_restores_faces_and_keeps_faceless_frames_bit_identical(tmp_path, tiny):
    face, blank = tmp_path / "face.mp4", tmp_path / "blank.mkv"
    make_clip(face, n=8)
    make_clip(blank, n=6, audio=(), face=False, pix_fmt="yuv444p", options={"qp": "0"})
    out_face, out_blank = tmp_path / "out_face.mp4", tmp_path / "out_blank.mkv"
    assert main(["-i", str(face), "-o", str(out_face), "--model", str(tiny), "--device", "cpu",
                 "--segment-frames", "4", "--no-progress", "--save-faces",
                 str(tmp_path / "crops"), "--side-by-side", str(tmp_path / "sbs.mp4")]) == 0
    pts, tb, frames, _ = read_video(out_face)
    src_pts, src_tb, src_frames, _ = read_video(face)
    assert [p * tb for p in pts] == [p * src_tb for p in src_pts]
    diff = [abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames, src_frames)]
    assert min(diff) > 1.0  # every frame had the face replaced by the random generator
    assert audio_packets(out_face) == audio_packets(face)
    assert len(list((tmp_path / "crops" / "face").glob("f*_t*.png"))) == 8
    assert read_video(tmp_path / "sbs.mp4")[2][0].shape[1] == 2 * 160
    assert main(["-i", str(blank), "-o", str(out_blank), "--model", str(tiny), "--device",
                 "cpu", "--crf", "0", "--no-progress"]) == 0
    a, b = read_video(blank)[2], read_video(out_blank)[2]
    assert len(a) == len(b) == 6 and all((x == y).all() for x, y in zip(a, b))


def test_cli_bad_model_and_missing_input_exit_with_one_line(tmp_path, tiny):
    src = tmp_path / "in.mp4"
    make_clip(src, n=4, audio=())
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model at all" * 10)
    with pytest.raises(UserError):
        main(["-i", str(src), "-o", str(tmp_path / "o.mp4"), "--model", str(bad),
              "--device", "cpu"])
    r = subprocess.run([sys.executable, "-m", "gfpgan.infer_video", "-i",
                        str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "o.mp4"), "--model",
                        str(tiny)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "nope.mp4 does not exist" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o.mp4").exists()
    with pytest.raises(UserError, match="--detect-every"):
        main(["-i", str(src), "-o", str(tmp_path / "o.mp4"), "--model", str(tiny),
              "--device", "cpu", "--detect-every", "0"])
    with pytest.raises(UserError, match="'mbtree' is not KEY=VALUE"):
        main(["-i", str(src), "-o", str(tmp_path / "o.mp4"), "--model", str(tiny),
              "--device", "cpu", "--codec-option", "mbtree"])
    assert not (tmp_path / "o.mp4").exists()
