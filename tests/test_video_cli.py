"""gfpgan.infer_video end to end with a tiny random generator and the real face pipeline."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gfpgan.errors import UserError
from gfpgan.infer_video import build_parser, main
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


def test_collect_and_save_faces_through_the_cli_on_a_two_segment_clip_with_an_odd_name(
        tmp_path, tiny):
    src = tmp_path / "my clïp été.mp4"  # spaces and non-ASCII letters in the video's name
    make_clip(src, n=8, audio=())
    out, crops, db = tmp_path / "out.mp4", tmp_path / "crops", tmp_path / "db"
    assert main(["-i", str(src), "-o", str(out), "--model", str(tiny), "--device", "cpu",
                 "--segment-frames", "4", "--no-progress", "--save-faces", str(crops),
                 "--collect", str(db)]) == 0
    assert len(read_video(out)[2]) == 8
    saved = sorted(p.name for p in (crops / "my_cl_p_t").glob("*.png"))
    assert [n[:7] for n in saved] == [f"f{i:06d}" for i in range(8)]  # every written frame once
    assert len({n[8:] for n in saved[:4]} & {n[8:] for n in saved[4:]}) == 0  # track ids differ
    keys = [line.split(".png")[0] for line in (db / "faces.lmdb" / "meta_info.txt").read_text()
            .splitlines() if line]
    assert keys and all(k.isascii() and " " not in k and k.startswith("my_cl_p_t_t")
                        for k in keys)
    tracks = {k.split("_t")[-1].split("_f")[0] for k in keys}
    assert len(tracks) == 2  # one track per segment, unique within the video
    assert {int(k.split("_f")[-1]) for k in keys} <= set(range(8))


def test_resume_after_the_model_file_changed_restarts_instead_of_splicing(
        tmp_path, tiny, monkeypatch, capsys):
    import torch

    from gfpgan.inference import video as vio

    src = tmp_path / "in.mp4"
    make_clip(src, n=8, audio=())
    model = tmp_path / "model.safetensors"
    model.write_bytes(tiny.read_bytes())
    args = ["-i", str(src), "--model", str(model), "--device", "cpu", "--segment-frames", "4",
            "--no-progress", "--preset", "ultrafast"]

    def stop(*a, **k):
        raise KeyboardInterrupt  # the job is interrupted when every segment is done
    with monkeypatch.context() as m:
        m.setattr(vio, "join_segments", stop)
        with pytest.raises(KeyboardInterrupt):
            main(args + ["-o", str(tmp_path / "out.mp4")])
    from gfpgan.archs.gfpgan_arch import GFPGANv1Clean
    from gfpgan.checkpoint import save_network
    torch.manual_seed(1)  # the same file name, other weights
    kw = dict(out_size=64, num_style_feat=32, channel_multiplier=1, narrow=0.125, num_mlp=2)
    save_network(model, GFPGANv1Clean(**kw), "GFPGANv1Clean", kw)
    capsys.readouterr()
    assert main(args + ["-o", str(tmp_path / "out.mp4"), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "restoring it from the start" in err and "segment(s) reused" not in err
    assert main(args + ["-o", str(tmp_path / "fresh.mp4")]) == 0
    assert (tmp_path / "out.mp4").read_bytes() == (tmp_path / "fresh.mp4").read_bytes()


def test_the_fingerprint_follows_the_weight_files_contents(tmp_path, tiny):
    import torch
    from facexlib.parsing.parsenet import ParseNet

    from gfpgan.inference.tracks.video_restorer import VideoFaceRestorer

    def parsenet(path, seed):
        torch.manual_seed(seed)
        torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), path)
    det, parse = tmp_path / "retina.pth", tmp_path / "parse.pth"
    det.write_bytes(b"detector weights, first version")
    parsenet(parse, 0)

    def fingerprint(**kw):
        return VideoFaceRestorer(str(tiny), device="cpu", detector="retinaface",
                                 detector_weights=str(det), parse_weights=str(parse),
                                 **kw).fingerprint()
    first = fingerprint()
    assert fingerprint() == first  # the same files: a resume may reuse segments
    assert fingerprint(batch_faces=3) == first  # scheduling, not pixels
    assert fingerprint(strength=0.5) != first
    det.write_bytes(b"detector weights, second version")
    second = fingerprint()
    assert second["detector_weights"] != first["detector_weights"]
    parsenet(parse, 1)
    assert fingerprint()["parse_weights"] != second["parse_weights"]


def test_a_callers_own_detector_is_part_of_the_fingerprint(tiny):
    from gfpgan.inference.tracks.video_restorer import VideoFaceRestorer

    class BoxDetector:
        def detect(self, frames):
            return []

    class OtherDetector(BoxDetector):
        pass

    def fingerprint(detector):
        return VideoFaceRestorer(str(tiny), device="cpu", detector=detector).fingerprint()

    named = fingerprint("mtcnn")
    own, other = fingerprint(BoxDetector()), fingerprint(OtherDetector())
    assert named["detector"] == "mtcnn"
    assert own["detector"].endswith("BoxDetector") and other["detector"].endswith("OtherDetector")
    assert len({repr(named), repr(own), repr(other)}) == 3  # a resume never mixes their segments


def test_the_image_and_video_commands_share_every_face_option():
    from gfpgan.infer_image import build_parser as image_parser
    from gfpgan.inference.settings import FACE_OPTIONS, RestorerConfig

    image, video = image_parser(), build_parser()
    flags = [o.flag for o in FACE_OPTIONS] + ["--model"]
    for flag in flags:
        a = next(x for x in image._actions if flag in x.option_strings)
        b = next(x for x in video._actions if flag in x.option_strings)
        assert (a.default, a.choices, a.nargs, a.const, a.type) == \
            (b.default, b.choices, b.nargs, b.const, b.type), flag
    parsed = image.parse_args(["-i", "x"])
    assert RestorerConfig.from_args(parsed) == RestorerConfig()  # one default, in one place
    with pytest.raises(UserError, match="--strength 2.0 is outside"):
        RestorerConfig.from_args(video.parse_args(["-i", "x", "-o", "y.mp4", "--strength", "2"]))


def test_the_readme_shows_the_face_options_table():
    from gfpgan.inference.settings import markdown_table

    assert markdown_table() in (ROOT / "README.md").read_text()


def test_no_temporal_alone_means_frame_by_frame(tiny):
    from gfpgan.infer_video import _processor
    from gfpgan.inference.settings import VideoRestorerConfig
    from gfpgan.inference.tracks.video_restorer import FrameStep

    args = build_parser().parse_args(["-i", "x.mp4", "-o", "y.mp4", "--model", str(tiny), "--device", "cpu",
                                      "--no-temporal"])
    processor = _processor(args, VideoRestorerConfig.from_args(args), [])
    assert isinstance(processor.step, FrameStep)


def test_precision_and_its_earlier_spelling():
    from gfpgan.inference.settings import RestorerConfig

    parse = build_parser().parse_args
    assert parse(["-i", "x", "-o", "y.mp4"]).precision == "auto"
    assert parse(["-i", "x", "-o", "y.mp4", "--precision", "fp32"]).precision == "fp32"
    assert parse(["-i", "x", "-o", "y.mp4", "--half"]).precision == "fp16"  # --half alone: fp16
    assert parse(["-i", "x", "-o", "y.mp4", "--half", "bf16"]).precision == "bf16"
    with pytest.raises(UserError, match="--precision 'int8' is not one of"):
        RestorerConfig(precision="int8")
