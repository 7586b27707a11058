"""Real-world formats: a generated corpus (Debian's ffmpeg CLI) restored by ``infer_video``.

For every file: exit without error, as many frames as ``ffmpeg -f framemd5`` decodes, the same
duration within one frame, the same audio/subtitle/chapter streams, rotation and metadata, and the
flash frame and the audio click still at the same instant (within one frame). The table the
tests check is the one ``python -m gfpgan.tools.check_formats DIR`` prints. Cases that need the
ffmpeg CLI skip, with the reason, where it is absent.
"""

from __future__ import annotations

import subprocess
import sys

import av
import numpy as np
import pytest

from gfpgan.infer_video import main as infer_video
from gfpgan.tools.check_formats import check_file, measure
from gfpgan.tools.check_formats import main as check_main
from tests.formats_corpus import CASES, FFMPEG, framemd5, make_corpus
from tests.test_video_job import ROOT, _tiny_model

needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="the ffmpeg CLI is not installed "
                                  "(make test installs Debian's ffmpeg)")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    if FFMPEG is None:
        pytest.skip("the ffmpeg CLI is not installed (make test installs Debian's ffmpeg)")
    return make_corpus(tmp_path_factory.mktemp("corpus"))[0].parent


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return _tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="session")
def restored(corpus, tiny, tmp_path_factory):
    """Every corpus file restored by infer_video with a tiny model: name -> (row, output)."""
    out = tmp_path_factory.mktemp("restored")

    def restore(src, dst):
        assert infer_video(["-i", str(src), "-o", str(dst), "--model", str(tiny), "--device",
                            "cpu", "--segment-frames", "16", "--preset", "ultrafast",
                            "--no-progress"]) == 0
        return []
    rows = {}
    for case in CASES:
        dst = out / (case.name.replace(".", "_") + case.out)  # h264_aac.mp4 and .ts apart
        rows[case.name] = (check_file(corpus / case.name, dst, restore), dst)
    return rows


def _flash_time(path) -> tuple:
    """(time of the brightest frame, one frame's duration) in the file's own clock (s)."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        best, t_best, times = -1.0, 0.0, []
        for f in c.decode(vs):
            t = float(f.pts * vs.time_base)
            times.append(t)
            m = float(f.to_ndarray(format="gray").mean())
            if m > best:
                best, t_best = m, t
    return t_best, float(np.median(np.diff(times)))


def _click_time(path, stream: int = 0) -> float:
    """Time of the first loud sample of an audio stream (s)."""
    with av.open(str(path)) as c:
        a = c.streams.audio[stream]
        for f in c.decode(a):
            x = f.to_ndarray().astype(np.float64)
            if f.format.name in ("s16", "s16p"):
                x = x / 32768
            elif f.format.name in ("u8", "u8p"):
                x = (x - 128) / 128
            x = np.abs(x.reshape(-1, f.samples) if f.format.is_planar else
                       x.reshape(f.samples, -1).T).max(0)
            hit = np.nonzero(x > 0.5)[0]
            if len(hit):
                return float(f.pts * f.time_base) + hit[0] / f.sample_rate
    raise AssertionError(f"no click in {path}")


@needs_ffmpeg
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_file_comes_out_whole_and_in_sync(case, corpus, restored):
    src = corpus / case.name
    row, dst = restored[case.name]
    assert row.problem == "", row.line()
    frames, seconds = framemd5(src)
    out_frames, out_seconds = framemd5(dst)
    one_frame = 1 / row.src.rate
    assert out_frames == frames == row.out.frames
    if not case.expect.get("repaired"):
        assert abs(out_seconds - seconds) <= one_frame + 1e-6
    else:  # ffmpeg's own stamps are the broken ones: compare with the clip that was made
        assert bool(row.src.note) and abs(row.out.duration - frames * one_frame) <= one_frame
    assert (row.out.audio, row.out.subtitles, row.out.chapters) == (
        row.src.audio, case.expect.get("subtitles", 0), case.expect.get("chapters", 0))
    assert row.out.rotation == case.expect.get("rotation", 0)
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        for key in case.expect.get("meta", []):
            assert b.metadata.get(key) == a.metadata.get(key), key
        if case.expect.get("languages"):
            assert [s.language for s in b.streams if s.type in ("audio", "subtitle")] == \
                [s.language for s in a.streams if s.type in ("audio", "subtitle")]
        starts = [s.start_time * s.time_base for s in b.streams
                  if s.type in ("video", "audio") and s.start_time is not None]
    assert min(starts) < 0.1  # no blank lead-in (MPEG-TS/PS clocks start at 0.5-1.5 s)
    if row.src.audio:
        flash, step = _flash_time(dst)
        click = _click_time(dst)
        assert abs(flash - click) <= step + 1e-3, (flash, click)
        src_flash, _ = _flash_time(src)
        src_click = _click_time(src)
        assert abs((flash - click) - (src_flash - src_click)) <= step + 1e-3


@needs_ffmpeg
def test_subtitles_are_converted_between_srt_and_mov_text(restored):
    _, mp4 = restored["multi_tracks.mkv"]  # SubRip in mkv -> mov_text in mp4
    _, mkv = restored["phone_subs.mp4"]  # mov_text in mp4 -> SubRip in mkv
    for path, codecs in ((mp4, ("mov_text",)), (mkv, ("subrip", "srt"))):
        r = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:s:0", "-f", "srt",
                            "-"], capture_output=True, text=True, check=True)
        with av.open(str(path)) as c:
            assert c.streams.subtitles[0].codec_context.name in codecs
        assert "00:00:00,2" in r.stdout and "Hello eng" in r.stdout and "Flash" in r.stdout


@needs_ffmpeg
def test_check_formats_prints_the_table(corpus, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("h264_aac.mp4", "h264_aac.ts", "h264_dts_stamps.mkv", "mjpeg_pcm.avi"):
        (folder / name).write_bytes((corpus / name).read_bytes())
    (folder / "notes.txt").write_text("not a video")
    assert check_main([str(folder), "--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert lines[0].startswith("file | codec | frames in/out")
    assert lines[2].startswith("h264_aac.ts | h264 | 39/39 | 1.625/1.625 | v1 a1 s0 c0 / ")
    assert lines[3].startswith("h264_dts_stamps.mkv | h264 | 40/40 | 1.600/1.600") and \
        "timestamps repaired" in lines[3]
    assert lines[4].startswith("mjpeg_pcm.avi | mjpeg | 40/40 | 1.600/1.600 | v1 a1 s0 c0 / "
                               "v1 a1 s0 c0 | ok")
    assert "4 video(s), 0 with problems, 1 other file(s) skipped" in out.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "h264_aac.mp4", "h264_aac_ts.mp4", "h264_dts_stamps.mkv", "mjpeg_pcm.mp4"]


@needs_ffmpeg
def test_broken_inputs_end_in_one_sentence_or_a_note(corpus, tiny, tmp_path, capsys):
    """Exit 2 with one ``error:`` line, or exit 0 with ``note:`` lines; never a traceback (an
    exception other than UserError would escape run_cli and fail this test)."""
    import cv2

    from gfpgan.errors import run_cli
    from gfpgan.infer_image import main as infer_image
    data = (corpus / "divx_bframes_damaged.avi").read_bytes()
    (tmp_path / "truncated.avi").write_bytes(data[:len(data) // 2])
    (tmp_path / "garbage.wmv").write_bytes(bytes(range(256)) * 64)
    subprocess.run([FFMPEG, "-v", "error", "-i", str(corpus / "subs_copy.mkv"), "-map", "0:a",
                    "-c", "copy", str(tmp_path / "audio_only.mkv")], check=True)
    cv2.imwrite(str(tmp_path / "one_pixel.png"), np.full((1, 1, 3), 128, np.uint8))
    model = ["--model", str(tiny), "--device", "cpu", "--no-progress"]
    for src, dst, code, says in (
            ("truncated.avi", "t.mp4", 0, "wrote"), ("garbage.wmv", "g.mp4", 2, "not a readable"),
            ("audio_only.mkv", "a.mp4", 2, "has no video stream"),
            (str(corpus / "h264_aac.mp4"), "x.avi", 2, "extension must be one of")):
        with pytest.raises(SystemExit) as exit_:
            run_cli(infer_video, ["-i", str(tmp_path / src), "-o", str(tmp_path / dst), *model])
        err = capsys.readouterr().err
        assert exit_.value.code == code and says in err, err
        if code:
            assert len(err.strip().splitlines()) == 1 and not (tmp_path / dst).exists()
    with pytest.raises(SystemExit) as exit_:
        run_cli(infer_image, ["-i", str(tmp_path / "one_pixel.png"), "-o", str(tmp_path / "img"),
                              "--model", str(tiny), "--device", "cpu"])
    assert exit_.value.code == 0
    assert "note: one_pixel.png: no face found; the image is passed through" in \
        capsys.readouterr().err
    assert cv2.imread(str(tmp_path / "img" / "restored_imgs" / "one_pixel.png")).shape[:2] == (1, 1)


def test_repaired_count_is_reported_by_the_video_command(tmp_path, tiny):
    """Decode-order stamps made with PyAV alone (no ffmpeg CLI): one note line, exit 0."""
    from tests.test_video_job import make_dts_stamped
    src = make_dts_stamped(tmp_path / "dts.mkv", n=12)
    r = subprocess.run([sys.executable, "-m", "gfpgan.infer_video", "-i", str(src), "-o",
                        str(tmp_path / "o.mp4"), "--model", str(tiny), "--device", "cpu",
                        "--no-progress", "--preset", "ultrafast"], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "note: dts.mkv: timestamps repaired on" in r.stderr and "Traceback" not in r.stderr
    assert measure(tmp_path / "o.mp4").frames == 12
