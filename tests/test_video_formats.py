"""Real-world formats: a generated corpus (Debian's ffmpeg CLI) restored by ``infer_video``,
checked against FFmpeg's own view of each file (``ffprobe`` JSON and ``ffmpeg -f framemd5``).

The input as FFmpeg sees it: the project's frame table is FFmpeg's frame stamps exactly wherever
FFmpeg's are strictly increasing, and every frame the project decodes is FFmpeg's frame (the MD5 of
the decoded planes in the decoder's pixel format equals framemd5's, frame by frame, except on the
deliberately damaged AVI, whose concealed frames may differ between FFmpeg versions). Where FFmpeg's
stamps are broken (decode-order or repeated stamps) the repaired table keeps FFmpeg's first and
last stamp and the clip's constant frame rate.

The restored output against the input (``ffprobe -show_streams -show_format -show_chapters``):
streams by type and codec as the copy / convert / drop rules say (:mod:`gfpgan.inference.video
.streams`), the frame times of the table (1 ms: Matroska stores milliseconds), copied audio packet
for packet (start 1 ms, span 2 ms), re-encoded audio within two AAC frames of span (priming and
padding), the container's user tags, each stream's language and title, dispositions, chapters
(within one frame: a Matroska output moves every stream, not the chapters, by AAC's priming) and
subtitle cues (1 ms); picture and sound still coincide (flash frame vs audio click, 2 ms).

The table ``python -m gfpgan.tools.check_formats DIR`` prints is checked too. Without the ffmpeg
CLI these cases skip with the reason, and fail in one sentence under ``CI=true``.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from gfpgan.infer_video import main as infer_video
from gfpgan.inference.video import iter_frames, probe_video
from gfpgan.tools.check_formats import check_file, measure
from gfpgan.tools.check_formats import main as check_main
from tests.formats_corpus import CASES, FFMPEG, ffprobe, framemd5_rows, make_corpus, planes_md5, require_cli
from tests.test_video_job import ROOT, _tiny_model

IDS = [c.name for c in CASES]
MS = Fraction(1, 1000)
# The documented rules (gfpgan.inference.video.streams), written out here independently.
MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}
TEXT_SUBS = {"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"}
USER_TAGS = {"title", "artist", "album", "date", "comment", "creation_time", "location",
             "description", "copyright", "genre"}
FLAGS = ("default", "forced", "hearing_impaired", "visual_impaired", "comment", "dub", "original",
         "lyrics", "karaoke", "captions", "descriptions")


@functools.lru_cache(maxsize=None)
def _probe(path) -> dict:
    return ffprobe(path)


@functools.lru_cache(maxsize=None)
def _rows(path) -> tuple:
    return framemd5_rows(path)


def framemd5(path) -> tuple:
    """(frames, duration in s) of the first video stream as ``ffmpeg -f framemd5`` decodes it."""
    tb, rows = _rows(path)
    if not rows:
        return 0, 0.0
    return len(rows), float((rows[-1][0] + rows[-1][1] - rows[0][0]) * tb)


@functools.lru_cache(maxsize=None)
def _project(path) -> tuple:
    """The project's view of a file: (its VideoInfo, the frames' times in s as decoded, MD5s)."""
    info = probe_video(path)
    frames = list(iter_frames(info, int(info.pts[0]), None))
    return (info, [Fraction(d.pts) * info.time_base for d in frames],
            [planes_md5(d.frame) for d in frames])


def expected_codec(stream: dict, ext: str):
    """The codec a source stream has in a restored ``ext`` file; None: left out."""
    kind, codec = stream["codec_type"], stream["codec_name"]
    if kind == "video":
        return "h264"  # re-encoded (libx264, the default codec)
    if kind == "audio":  # copied where the container takes it, else AAC
        keep = ext == ".mkv" or codec in MP4_AUDIO or (ext == ".mov" and codec.startswith("pcm_"))
        return codec if keep else "aac"
    if kind == "subtitle":  # copied; text converted to what the container holds; bitmaps: mkv
        if codec not in TEXT_SUBS:  # (and DVD VobSub in mp4)
            return codec if ext == ".mkv" or (ext == ".mp4" and codec == "dvd_subtitle") else None
        return ("subrip" if codec == "mov_text" else codec) if ext == ".mkv" else "mov_text"
    return None  # data streams (timecode, chapter text tracks, telemetry), attachments


def _streams(j: dict, kind: str) -> list:
    return [s for s in j["streams"] if s["codec_type"] == kind]


def _span(j: dict, s: dict) -> tuple:
    """(packets, first pts in s, last packet end in s) of a stream, from ffprobe's packets."""
    tb = Fraction(s["time_base"])
    ps = [p for p in j["packets"] if p["stream_index"] == s["index"] and "pts" in p]
    return (len(ps), min(p["pts"] for p in ps) * tb,
            max(p["pts"] + p.get("duration", 0) for p in ps) * tb)


def _tags(d: dict) -> dict:
    """Tags by lower-case key (Matroska writes them upper-case); "und" is no language."""
    return {k.lower(): v for k, v in (d.get("tags") or {}).items()
            if not (k.lower() == "language" and v == "und")}


def _flags(streams: list) -> list:
    return [{k for k in FLAGS if s.get("disposition", {}).get(k)} for s in streams]


def _cues(path, k: int, v0: Fraction) -> list:
    """(start, end, text) of subtitle stream k, times from the first video frame (s)."""
    r = subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-copyts", "-i", str(path), "-map",
                        f"0:s:{k}", "-f", "srt", "-"], capture_output=True, text=True, check=True)
    out = []
    for block in r.stdout.strip().split("\n\n"):
        lines = block.strip().splitlines()
        if len(lines) < 3:
            continue

        def t(x):
            h, m, rest = x.strip().split(":")
            sec, ms = rest.split(",")
            return (Fraction(int(h) * 3600 + int(m) * 60 + int(sec)) + Fraction(int(ms), 1000)
                    - v0)
        a, b = lines[1].split("-->")
        out.append((t(a), t(b), "\n".join(lines[2:])))
    return out


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    require_cli()
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
    if row.src.audio:  # the flash and the click: 2 ms apart at most, as in the source
        flash, step = _flash_time(dst)
        click = _click_time(dst)
        assert abs(flash - click) <= step + 1e-3, (flash, click)
        if case.expect.get("repaired"):  # the source's stamps are the broken ones: the clip
            assert abs(flash - click) <= 2e-3, (flash, click)
        else:
            src_flash, _ = _flash_time(src)
            src_click = _click_time(src)
            assert abs((flash - click) - (src_flash - src_click)) <= 2e-3


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_corpus_input_frames_are_ffmpegs_frames(case, corpus):
    """The project's frame table and decoded frames against ``ffmpeg -f framemd5`` of the input."""
    src = corpus / case.name
    tb, rows = _rows(src)
    info, times, hashes = _project(src)
    table = [Fraction(int(p)) * info.time_base for p in info.pts]
    ffmpeg_times = [Fraction(p) * tb for p, _, _ in rows]
    assert len(table) == len(times) == len(hashes) == len(rows)
    assert times == table  # decoding gives every frame of the table, in order
    differ = [i for i, (ours, (_, _, theirs)) in enumerate(zip(hashes, rows)) if ours != theirs]
    if case.post == "damage":  # concealment of the three damaged bursts may differ by version
        assert len(differ) <= 3, differ
    else:
        assert differ == [], differ
    if all(b > a for a, b in zip(ffmpeg_times, ffmpeg_times[1:])):
        assert table == ffmpeg_times  # FFmpeg's stamps are sound: the table is exactly them
        assert not case.expect.get("repaired")
    else:  # FFmpeg shows the broken stamps (repeated, decode order): the project repairs them
        assert case.expect.get("repaired") and info.stamps is not None and info.stamps.repaired
        assert table[0] == ffmpeg_times[0] and table[-1] == max(ffmpeg_times)
        assert {b - a for a, b in zip(table, table[1:])} == {1 / info.rate}  # made at 25 fps


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_corpus_output_agrees_with_ffprobe(case, corpus, restored):
    """The restored file against the input, both as ``ffprobe`` and ``framemd5`` see them."""
    src = corpus / case.name
    _, dst = restored[case.name]
    ext = dst.suffix.lower()
    a, b = _probe(src), _probe(dst)
    # streams by type and codec: the first video, every audio, the subtitles the container holds
    kinds = ("video", "audio", "subtitle")
    want = [(k, expected_codec(st, ext)) for k in kinds for st in _streams(a, k)[:1 if k == "video"
                                                                               else None]]
    assert [(st["codec_type"], st["codec_name"]) for st in b["streams"] if st["codec_type"] in
            kinds] == [w for w in want if w[1] is not None]
    # frame times: the (repaired) table of the input, moved to the output's start
    info, _, _ = _project(src)
    table = [Fraction(int(p)) * info.time_base for p in info.pts]
    tbo, rows = _rows(dst)
    out = [Fraction(p) * tbo for p, _, _ in rows]
    assert len(out) == len(table)
    v0, w0 = table[0], out[0]
    assert max(abs((o - w0) - (t - v0)) for o, t in zip(out, table)) <= MS
    # audio: copied packet for packet, or re-encoded (AAC) within two AAC frames of span
    for sa, sb in zip(_streams(a, "audio"), _streams(b, "audio")):
        (na, ta, ea), (nb, tb_, eb) = _span(a, sa), _span(b, sb)
        if sb["codec_name"] == sa["codec_name"]:
            assert nb == na and abs((tb_ - w0) - (ta - v0)) <= MS and \
                abs((eb - tb_) - (ea - ta)) <= 2 * MS, (na, nb, ta - v0, tb_ - w0, ea - ta, eb - tb_)
        else:
            assert abs((eb - tb_) - (ea - ta)) <= Fraction(2048, int(sb["sample_rate"]))
    # tags: the container's user tags, each audio/subtitle stream's language and title
    user = {k: v for k, v in _tags(a["format"]).items() if k in USER_TAGS}
    assert {k: v for k, v in _tags(b["format"]).items() if k in user} == user
    for kind in ("audio", "subtitle"):
        kept = [st for st in _streams(a, kind) if expected_codec(st, ext)]
        assert [{k: v for k, v in _tags(st).items() if k in ("language", "title")} for st in
                _streams(b, kind)] == [{k: v for k, v in _tags(st).items() if k in
                                       ("language", "title")} for st in kept]
        # dispositions kept; where no source stream of the kind is default, the mp4/mov muxer
        # makes the first one default (players need one)
        fa, fb = _flags(kept), _flags(_streams(b, kind))
        if fa and not any("default" in f for f in fa) and ext != ".mkv":
            fa[0] = fa[0] | {"default"}
        assert fb == fa, kind
    fa, fb = _flags(_streams(a, "video")[:1]), _flags(_streams(b, "video"))
    if ext != ".mkv":
        fa[0] |= {"default"}
    assert fb == fa
    rot = [[d.get("rotation") for d in st.get("side_data_list", []) if "rotation" in d]
           for st in (_streams(a, "video")[0], _streams(b, "video")[0])]
    assert rot[1] == rot[0]
    # chapters: titles, and times within one frame
    ca, cb = a.get("chapters", []), b.get("chapters", [])
    assert [c.get("tags", {}).get("title") for c in cb] == [c.get("tags", {}).get("title")
                                                           for c in ca]
    for x, y in zip(ca, cb):
        for key in ("start_time", "end_time"):
            assert abs(Fraction(y[key]) - Fraction(x[key])) <= 1 / info.rate + MS
    # subtitle cues: text and times from the first frame
    for k in range(len(_streams(b, "subtitle"))):
        src_cues, out_cues = _cues(src, k, v0), _cues(dst, k, w0)
        assert [c[2] for c in out_cues] == [c[2] for c in src_cues] and len(src_cues) == 2
        assert all(abs(x[0] - y[0]) <= MS and abs(x[1] - y[1]) <= MS
                   for x, y in zip(src_cues, out_cues)), (src_cues, out_cues)


def test_subtitles_are_converted_between_srt_and_mov_text(restored):
    _, mp4 = restored["multi_tracks.mkv"]  # SubRip in mkv -> mov_text in mp4
    _, mkv = restored["phone_subs.mp4"]  # mov_text in mp4 -> SubRip in mkv
    for path, codecs in ((mp4, ("mov_text",)), (mkv, ("subrip", "srt"))):
        r = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:s:0", "-f", "srt",
                            "-"], capture_output=True, text=True, check=True)
        with av.open(str(path)) as c:
            assert c.streams.subtitles[0].codec_context.name in codecs
        assert "00:00:00,2" in r.stdout and "Hello eng" in r.stdout and "Flash" in r.stdout


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
