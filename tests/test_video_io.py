"""Video I/O: frames, timestamps, rotation, audio and bad inputs survive a pass-through job.

Clips are generated here with PyAV: the astronaut photo (a real face) sliding across the frame,
with sine-wave audio tracks. The restorer is an identity or a selective copy, so these tests are
about the I/O and the job, not the network (see test_video_cli.py for the real pipeline).
"""

from __future__ import annotations

import errno
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import skimage.data

from gfpgan.errors import UserError
from gfpgan.inference import video as vio
from gfpgan.inference.job.options import VideoJobOptions
from gfpgan.inference.job.segments import IdentityProcessor, ProcessedFrame
from gfpgan.inference.job.video_job import run_videos, work_dir

NTSC = Fraction(30000, 1001)


def make_clip(path, n=24, size=(160, 120), rate=NTSC, time_base=None, vfr=False,
              audio=(("aac", 44100, "mono"),), rotation=0, codec="libx264", pix_fmt="yuv420p",
              options=None, face=True):
    """Write a test clip; returns the list of frame pts (in ``time_base``)."""
    w, h = size
    tb = time_base or (1 / rate / (4 if vfr else 1))
    photo = cv2.resize(skimage.data.astronaut(), (h, h), interpolation=cv2.INTER_AREA)
    out = av.open(str(path), "w")
    vs = out.add_stream(codec, rate=rate, options=dict(options or {}))
    vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
    vs.codec_context.time_base = tb
    if rotation:
        vs.set_display_rotation(rotation)
    streams = [out.add_stream(c, rate=sr, layout=lay) for c, sr, lay in audio]
    pts, t, step = [], 0, int(round(1 / rate / tb))
    for i in range(n):
        img = np.full((h, w, 3), 60, np.uint8)
        if face:
            x = (w - h) * i // max(1, n - 1)
            img[:, x:x + h] = photo
        else:
            img[:, (5 * i) % w] = 255
        f = av.VideoFrame.from_ndarray(img, format="rgb24")
        f.pts, f.time_base = t, tb
        pts.append(t)
        t += step * (3 if vfr and i % 3 == 1 else 1)  # VFR: some frames last 3x longer
        out.mux(vs.encode(f))
    out.mux(vs.encode())
    seconds = float(t * tb)
    for k, a in enumerate(streams):
        ctx = a.codec_context
        sr, fs, nch = ctx.sample_rate, ctx.frame_size or 1024, ctx.layout.nb_channels
        total, p = int(seconds * sr), 0
        while p < total:
            m = min(fs, total - p)
            wave = 0.3 * np.sin(2 * np.pi * (220 * (k + 1)) * np.arange(p, p + m) / sr)
            arr = np.repeat(wave[None].astype(np.float32), nch, 0)
            if ctx.format.name == "s16":
                arr = (arr.T.reshape(1, -1) * 32767).astype(np.int16)
            af = av.AudioFrame.from_ndarray(arr, format=ctx.format.name, layout=ctx.layout.name)
            af.sample_rate, af.pts = sr, p
            p += m
            out.mux(a.encode(af))
        out.mux(a.encode())
    out.close()
    return pts


def read_video(path):
    """(pts list, time_base, frames as arrays in native pix_fmt, rotation) of stream 0."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        frames = list(c.decode(vs))
        return ([f.pts for f in frames], vs.time_base, [f.to_ndarray() for f in frames],
                frames[0].rotation if frames else 0)


def audio_packets(path):
    """Per audio stream: (codec, sample_rate, list of (pts, bytes))."""
    out = []
    with av.open(str(path)) as c:
        n = len(c.streams.audio)
    for k in range(n):
        with av.open(str(path)) as c:
            a = c.streams.audio[k]
            pk = [(float(p.pts * a.time_base), bytes(p)) for p in c.demux(a) if p.size]
            out.append((a.codec_context.name, a.codec_context.sample_rate, pk))
    return out


def audio_seconds(path):
    res = []
    with av.open(str(path)) as c:
        n = len(c.streams.audio)
    for k in range(n):
        with av.open(str(path)) as c:
            a = c.streams.audio[k]
            res.append(sum(f.samples for f in c.decode(a)) / a.codec_context.sample_rate)
    return res


def run(src, dst, proc=None, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("segment_frames", 10)
    return run_videos([(str(src), str(dst))], proc or IdentityProcessor(), VideoJobOptions(**kw))


def test_ntsc_clip_keeps_frames_timestamps_and_audio(tmp_path):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    pts = make_clip(src, n=30)
    [summary] = run(src, dst)
    assert summary.frames == 30 and summary.lost == 0 and summary.segments == 3
    got_pts, tb, frames, _ = read_video(dst)
    src_pts, src_tb, _, _ = read_video(src)
    assert [p * tb for p in got_pts] == [p * src_tb for p in src_pts]
    assert [p * tb for p in got_pts] == [p * (1 / NTSC) for p in pts]  # 1001/30000 s steps
    assert audio_packets(dst) == audio_packets(src)  # AAC copied packet for packet
    assert not work_dir(dst).exists()
    info = vio.probe_video(dst)
    assert info.rate == NTSC and info.num_frames == 30


def test_vfr_rotation_and_two_audio_streams_mkv_to_mp4(tmp_path):
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mp4"
    make_clip(src, n=20, vfr=True, rotation=90,
              audio=(("aac", 44100, "mono"), ("libopus", 48000, "stereo")))
    run(src, dst, segment_frames=7)
    got_pts, tb, _, rot = read_video(dst)
    src_pts, src_tb, _, src_rot = read_video(src)
    assert rot == src_rot == 90
    assert [p * tb for p in got_pts] == [p * src_tb for p in src_pts]
    steps = np.diff([float(p * tb) for p in got_pts])
    assert steps.max() > 2.5 * steps.min()  # really variable frame rate
    a_src, a_dst = audio_packets(src), audio_packets(dst)
    assert [a[:2] for a in a_dst] == [a[:2] for a in a_src] == [("aac", 44100), ("opus", 48000)]
    assert [len(a[2]) for a in a_dst] == [len(a[2]) for a in a_src]
    assert [[b for _, b in a[2]] for a in a_dst] == [[b for _, b in a[2]] for a in a_src]
    for a, b in zip(a_dst, a_src):  # timestamps kept (mkv has millisecond ones)
        assert np.allclose([t for t, _ in a[2]], [t for t, _ in b[2]], atol=1e-3)


def test_pcm_audio_in_mov_is_reencoded_for_mp4_and_odd_size_kept(tmp_path):
    src, dst = tmp_path / "in.mov", tmp_path / "out.mp4"
    make_clip(src, n=16, size=(161, 121), pix_fmt="yuv444p",
              audio=(("pcm_s16le", 16000, "mono"),))
    run(src, dst)
    with av.open(str(dst)) as c:
        vs = c.streams.video[0]
        assert (vs.width, vs.height) == (161, 121) and vs.frames == 16
        assert [a.codec_context.name for a in c.streams.audio] == ["aac"]
    (s_src,), (s_dst,) = audio_seconds(src), audio_seconds(dst)
    assert abs(s_dst - s_src) < 0.13  # AAC pads by at most a frame and its priming


def test_no_audio_and_frame_folder(tmp_path):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mkv"
    make_clip(src, n=12, audio=())
    run(src, dst)
    with av.open(str(dst)) as c:
        assert len(c.streams.audio) == 0 and c.streams.video[0].frames in (0, 12)
    assert len(read_video(dst)[0]) == 12
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(read_video(src)[2][:9]):
        img = av.VideoFrame.from_ndarray(f, format="yuv420p").to_ndarray(format="rgb24")
        cv2.imwrite(str(folder / f"{i:04d}.png"), img[:, :, ::-1])
    out = tmp_path / "folder.mp4"
    run_videos([(str(folder), str(out))], IdentityProcessor(),
               VideoJobOptions(progress=False, segment_frames=4, folder_fps=Fraction(24000, 1001),
                               crf=0, pix_fmt="yuv444p"))
    pts, tb, frames, _ = read_video(out)
    assert [p * tb for p in pts] == [i * Fraction(1001, 24000) for i in range(9)]


def test_untouched_frames_are_bit_identical_with_lossless_encoding(tmp_path):
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mkv"
    make_clip(src, n=8, audio=(), pix_fmt="yuv444p", options={"qp": "0"})

    class EveryOther(IdentityProcessor):  # odd frames come back unchanged (no face), even edited
        def process(self, frames, window):
            for i, f in enumerate(frames):
                if i % 2:
                    yield ProcessedFrame(f, False)
                else:
                    g = f.copy()
                    g[:8, :8] = 255 - g[:8, :8]
                    yield ProcessedFrame(g, True)
    run(src, dst, EveryOther(), crf=0, segment_frames=100)
    a, b = read_video(src)[2], read_video(dst)[2]
    assert len(a) == len(b) == 8
    same = [bool((x == y).all()) for x, y in zip(a, b)]
    assert same[1::2] == [True] * 4  # passed through from the decoded planes
    assert not any(same[0::2])  # edited frames: proves the check can fail


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_stream_decodes_what_it_can(tmp_path, damage):
    src, bad, dst = tmp_path / "in.ts", tmp_path / "bad.ts", tmp_path / "out.mp4"
    make_clip(src, n=30, audio=())
    data = bytearray(src.read_bytes())
    if damage == "truncated":
        data = data[: int(len(data) * 0.6)]
    else:  # garbage over a stretch in the middle: packets there fail or decode damaged
        rng = np.random.default_rng(0)
        a = len(data) // 3
        data[a:a + 6000] = rng.integers(0, 256, 6000, dtype=np.uint8).tobytes()
    bad.write_bytes(bytes(data))
    info = vio.probe_video(bad)
    [s] = run(bad, dst)
    assert 0 < s.frames <= info.num_frames < 30 and s.lost == info.num_frames - s.frames
    assert len(read_video(dst)[0]) == s.frames


@pytest.mark.parametrize("case", ["missing", "empty", "text", "truncated_mp4", "audio_only",
                                  "folder_empty"])
def test_bad_inputs_raise_one_clear_sentence(tmp_path, case):
    src = tmp_path / "in.mp4"
    if case == "empty":
        src.write_bytes(b"")
    elif case == "text":
        src.write_text("this is not a video\n" * 50)
    elif case == "truncated_mp4":  # moov atom at the end: a cut file has no index
        make_clip(src, n=12, audio=())
        src.write_bytes(src.read_bytes()[:2000])
    elif case == "audio_only":
        with av.open(str(src), "w") as c:
            a = c.add_stream("aac", rate=16000)
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                            layout="mono")
            af.sample_rate, af.pts = 16000, 0
            c.mux(a.encode(af))
            c.mux(a.encode())
    elif case == "folder_empty":
        src = tmp_path / "frames"
        src.mkdir()
    dst = tmp_path / "out.mp4"
    with pytest.raises(UserError) as err:
        run(src, dst)
    msg = str(err.value)
    assert str(src) in msg and "\n" not in msg and msg.endswith(".")
    assert not dst.exists()


def test_bad_destinations(tmp_path):
    src = tmp_path / "in.mp4"
    make_clip(src, n=6, audio=())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="work folder|writable|folder"):
        run(src, blocker / "out.mp4")
    with pytest.raises(UserError, match="extension"):
        run(src, tmp_path / "out.gif")
    with pytest.raises(UserError, match="is the input"):
        run(src, src)


def test_full_disk_leaves_nothing_at_destination(tmp_path, monkeypatch):
    from gfpgan import infer_video
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, n=6, audio=())

    def full(segments, dest, *a, **k):
        with open(dest, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(vio, "join_segments", full)
    with pytest.raises(OSError):
        run(src, dst)
    assert not dst.exists() and [p.name for p in tmp_path.iterdir() if "tmp" in p.name] == []
    assert list(work_dir(dst).glob("seg_*.json"))  # segments kept for --resume

    monkeypatch.setattr(infer_video, "_outputs", lambda i, o: [str(dst)])

    class Boom:
        def __init__(self, *a, **k):
            raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr("gfpgan.inference.job.video_job.run_videos", Boom)
    monkeypatch.setattr("gfpgan.inference.tracks.video_restorer.VideoFaceRestorer",
                        lambda *a, **k: type("V", (), {"collector": None, "lookahead": 0})())
    with pytest.raises(UserError, match="no space left"):
        infer_video.main(["-i", str(src), "-o", str(dst), "--no-progress"])
