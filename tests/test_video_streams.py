"""The copy / convert / drop decisions of :mod:`gfpgan.inference.video.streams`, on sources made
with PyAV (no ffmpeg CLI needed): which audio is copied and which re-encoded to AAC per output
container, which subtitles are copied, converted to text or left out with a note, and the tags,
dispositions, chapters and start offset carried over."""

from __future__ import annotations

import struct
from fractions import Fraction
from types import SimpleNamespace

import av
import numpy as np
import pytest

from gfpgan.inference.video import streams as mux

# (encoder, rate, layout) of the source's audio streams, and the codec each has in mp4/mov/mkv
AUDIO = [("aac", 44100, "stereo"), ("libmp3lame", 44100, "stereo"), ("ac3", 48000, "stereo"),
         ("flac", 44100, "mono"), ("libopus", 48000, "stereo"), ("pcm_s16le", 22050, "mono"),
         ("mp2", 44100, "stereo"), ("pcm_u8", 11025, "mono"), ("pcm_s16le", 7000, "mono")]
COPY = {"mp4": {"aac", "mp3", "ac3", "flac", "opus"},
        "mov": {"aac", "mp3", "ac3", "flac", "opus", "pcm_s16le", "pcm_u8"},
        "matroska": {"aac", "mp3", "ac3", "flac", "opus", "pcm_s16le", "pcm_u8", "mp2"}}
SUBS = {"subrip": b"Hello <i>there</i>", "ass": b"0,0,Default,,0,0,0,,{\\i1}Hello{\\i0}\\Nthere",
        "webvtt": b"Hello there", "dvd_subtitle": bytes(32), "hdmv_pgs_subtitle": bytes(16)}
EXT = {"mp4": ".mp4", "mov": ".mov", "matroska": ".mkv"}
CODEC = {"libmp3lame": "mp3", "libopus": "opus"}  # encoder -> codec


@pytest.fixture(scope="module")
def audios(tmp_path_factory):
    """An mkv with one short stream of each source audio codec."""
    path = tmp_path_factory.mktemp("streams") / "audios.mkv"
    with av.open(str(path), "w") as out:
        made = []
        for enc, rate, layout in AUDIO:
            s = out.add_stream(enc, rate=rate)
            s.codec_context.layout = layout
            made.append(s)
        for s in made:
            ctx = s.codec_context
            n = ctx.frame_size or 1024
            for k in range(3):
                f = av.AudioFrame(format=ctx.codec.audio_formats[0].name, layout=ctx.layout.name,
                                  samples=n)
                for plane in f.planes:
                    plane.update(bytes(plane.buffer_size))
                f.sample_rate, f.pts, f.time_base = ctx.sample_rate, k * n, Fraction(1, ctx.sample_rate)
                for p in s.encode(f):
                    out.mux(p)
            for p in s.encode(None):
                out.mux(p)
    return path


@pytest.fixture(scope="module")
def subs(tmp_path_factory):
    """An mkv with a video stream and one cue (0.2-0.7 s) in each subtitle codec."""
    path = tmp_path_factory.mktemp("streams") / "subs.mkv"
    with av.open(str(path), "w") as out:
        v = out.add_stream("mpeg4", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        made = {}
        for name in SUBS:
            made[name] = out.add_mux_stream(name)
            made[name].time_base = Fraction(1, 1000)
        for k in range(3):
            f = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            f = f.reformat(format="yuv420p")
            f.pts = k
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode(None):
            out.mux(p)
        for name, s in made.items():
            p = av.Packet(SUBS[name])
            p.pts, p.dts, p.duration, p.time_base, p.stream = 200, 200, 500, Fraction(1, 1000), s
            out.mux(p)
    return path


@pytest.mark.parametrize("fmt", ["mp4", "mov", "matroska"])
def test_audio_is_copied_where_the_container_takes_it_else_aac(audios, tmp_path, fmt):
    with av.open(str(audios)) as src, av.open(str(tmp_path / f"o{EXT[fmt]}"), "w",
                                              format=fmt) as out:
        got = []
        for a in src.streams.audio:
            s, reencode = mux.add_audio(out, a, fmt)
            got.append((mux.codec_name(a), mux.codec_name(s), reencode))
    # mp3 is copied by its codec, whatever its decoder is called (mp3float)
    assert got == [(c, c, False) if c in COPY[fmt] else (c, "aac", True)
                   for c in (CODEC.get(e, e) for e, _, _ in AUDIO)]


def test_aac_takes_the_nearest_rate_and_a_standard_layout(audios, tmp_path):
    with av.open(str(audios)) as src, av.open(str(tmp_path / "o.mp4"), "w", format="mp4") as out:
        got = [mux.add_audio(out, a, "mp4")[0].codec_context for a in src.streams.audio]
    # mp2 44.1 kHz stereo, pcm 22.05 kHz mono, 11.025 kHz mono, 7 kHz mono (not an AAC rate)
    assert [(c.sample_rate, c.layout.name, c.format.name) for c in got[5:]] == [
        (22050, "mono", "fltp"), (44100, "stereo", "fltp"), (11025, "mono", "fltp"),
        (7350, "mono", "fltp")]


@pytest.mark.parametrize("fmt", ["mp4", "mov", "matroska"])
def test_subtitles_are_copied_converted_or_left_out_with_a_note(subs, tmp_path, fmt):
    ext = EXT[fmt]
    with av.open(str(subs)) as src, av.open(str(tmp_path / f"o{ext}"), "w", format=fmt) as out:
        got = {mux.codec_name(s): mux.add_subtitle(out, s, fmt, ext) for s in src.streams.subtitles}
    if fmt == "matroska":  # Matroska holds them all
        assert {k: (v[0] is not None, v[1], v[2]) for k, v in got.items()} == {
            k: (True, None, "") for k in SUBS}
        return
    # text -> mov_text; a bitmap subtitle the container holds is copied (VobSub in mp4)
    for name in ("subrip", "ass", "webvtt"):
        assert got[name][0] is not None and got[name][1:] == ("mov_text", "")
    keeps_vobsub = fmt == "mp4"
    assert (got["dvd_subtitle"][0] is not None) == keeps_vobsub
    left_out = ["hdmv_pgs_subtitle"] + ([] if keeps_vobsub else ["dvd_subtitle"])
    for name in left_out:
        index = 1 + list(SUBS).index(name)
        assert got[name][:2] == (None, None)
        assert got[name][2] == (f"subtitle stream #{index} ({name}) cannot be stored in {ext}; "
                                f"write .mkv to keep it")


@pytest.mark.parametrize("conv", ["mov_text", "subrip"])
def test_converted_cues_keep_their_text_and_time(subs, tmp_path, conv):
    """Text cues to mov_text (mp4/mov) or SubRip (mkv): plain text, moved by the start offset."""
    with av.open(str(tmp_path / "o.mp4"), "w", format="mp4") as out:
        target = out.add_mux_stream("mov_text")
        texts = {}
        with av.open(str(subs)) as src:
            indices = {mux.codec_name(s): s.index for s in src.streams.subtitles}
        for name in ("subrip", "ass", "webvtt"):
            [(t, order, p)] = list(mux.subtitle_packets(subs, indices[name], target, conv,
                                                        Fraction(1, 10)))
            data = bytes(p)
            texts[name] = data[2:].decode() if conv == "mov_text" else data.decode()
            if conv == "mov_text":
                assert struct.unpack(">H", data[:2])[0] == len(data) - 2
            assert (t, order, p.pts, p.duration) == (pytest.approx(0.1), 2, 100, 500)
    assert texts == {"subrip": "Hello there", "ass": "Hello\nthere", "webvtt": "Hello there"}


def test_subtitle_text_of_each_codec():
    assert mux._subtitle_text("mov_text", struct.pack(">H", 5) + b"Hello" + b"\x00tail") == "Hello"
    assert mux._subtitle_text("ass", b"1,0,Default,,0,0,0,,{\\b1}Big{\\b0}\\nline") == "Big\nline"
    assert mux._subtitle_text("subrip", b"<font color='red'>Red</font> <b>bold</b>\n") == \
        "Red bold"


def test_tags_that_describe_the_old_file_are_left_behind():
    dst = {}
    mux.copy_tags({"title": "Picnic", "creation_time": "2019-07-14T10:20:30Z",
                   "location": "+48.8+002.2/", "language": "fre", "ENCODER": "Lavf59",
                   "major_brand": "isom", "compatible_brands": "isomiso2", "handler_name": "x",
                   "rotate": "90", "timecode": "00:00:00:00", "_STATISTICS_WRITING_APP": "mkvmerge",
                   "DURATION": "00:00:01.6"}, dst)
    assert dst == {"title": "Picnic", "creation_time": "2019-07-14T10:20:30Z",
                   "location": "+48.8+002.2/", "language": "fre"}


def test_disposition_is_copied(tmp_path):
    with av.open(str(tmp_path / "a.mkv"), "w") as out:
        a = out.add_stream("aac", rate=44100)
        b = out.add_stream("aac", rate=44100)
        a.disposition = av.stream.Disposition.default | av.stream.Disposition.hearing_impaired
        mux.copy_disposition(a, b)
        assert b.disposition == a.disposition


def test_start_offset_moves_every_stream_by_the_earliest_start():
    tb = Fraction(1, 90000)
    src = SimpleNamespace(streams={1: SimpleNamespace(start_time=131409, time_base=tb),
                                   2: SimpleNamespace(start_time=None, time_base=tb)})
    # an MPEG-TS clock: video at 1.4833 s, audio at 1.4601 s -> everything moves by 1.4601 s
    assert mux.start_offset(src, Fraction(133500, 90000), [1, 2]) == Fraction(131409, 90000)
    assert mux.start_offset(src, Fraction(1, 1), [1]) == 1  # the video is earlier
    # never negative (a stream starting before 0 keeps its lead)
    src.streams[1].start_time = -630
    assert mux.start_offset(src, Fraction(0), [1]) == 0


def test_chapters_move_with_the_start_offset():
    chapters = [dict(id=1, start=1500, end=2200, time_base=Fraction(1, 1000),
                     metadata={"title": "Start"}),
                dict(id=2, start=2200, end=2900, time_base=Fraction(1, 1000),
                     metadata={"title": "Flash"})]
    src = SimpleNamespace(chapters=lambda: chapters)
    written = []
    out = SimpleNamespace(set_chapters=written.extend)
    mux.copy_chapters(src, out, Fraction(3, 2))
    assert [(c["start"], c["end"], c["metadata"]["title"]) for c in written] == [
        (0, 700, "Start"), (700, 1400, "Flash")]
