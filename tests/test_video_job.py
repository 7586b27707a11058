"""Video job: resume after a kill, torchrun split == one process, errors stop every stage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from gfpgan.errors import UserError
from gfpgan.inference import video as vio
from gfpgan.inference.job.options import VideoJobOptions
from gfpgan.inference.job.segments import IdentityProcessor, ProcessedFrame
from gfpgan.inference.job.video_job import run_videos, work_dir
from tests.test_video_io import audio_packets, make_clip, read_video

ROOT = Path(__file__).resolve().parents[1]

SLOW_JOB = """
import sys, time
sys.path.insert(0, {root!r})
from gfpgan.inference.job.segments import IdentityProcessor, ProcessedFrame
from gfpgan.inference.job.options import VideoJobOptions
from gfpgan.inference.job.video_job import run_videos
class Slow(IdentityProcessor):
    def process(self, frames, window):
        for f in frames:
            time.sleep(0.15)
            g = f.copy(); g[::2] = 255 - g[::2]
            yield ProcessedFrame(g, True)
run_videos([({src!r}, {dst!r})], Slow(), VideoJobOptions(segment_frames=6, progress=False,
           resume=True, preset="ultrafast"))
"""


class Inverter(IdentityProcessor):
    """Deterministic stand-in restorer: inverts every other row."""

    def process(self, frames, window):
        for f in frames:
            g = f.copy()
            g[::2] = 255 - g[::2]
            yield ProcessedFrame(g, True)


def test_resume_after_kill_gives_the_uninterrupted_output(tmp_path):
    src = tmp_path / "in.mp4"
    make_clip(src, n=24)
    ref, dst = tmp_path / "ref.mp4", tmp_path / "out.mp4"
    opts = dict(segment_frames=6, progress=False, preset="ultrafast")
    run_videos([(str(src), str(ref))], Inverter(), VideoJobOptions(**opts))

    proc = subprocess.Popen([sys.executable, "-c", SLOW_JOB.format(root=str(ROOT), src=str(src),
                                                                   dst=str(dst))])
    marker = work_dir(dst) / "seg_00001.json"
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker.exists() and not dst.exists()
    done = sorted(p.name for p in work_dir(dst).glob("seg_*.json"))
    assert 2 <= len(done) < 4

    [s] = run_videos([(str(src), str(dst))], Inverter(), VideoJobOptions(resume=True, **opts))
    assert s.reused == len(done) and s.frames == 24
    assert dst.read_bytes() == ref.read_bytes()
    assert audio_packets(dst) == audio_packets(src)


def test_resume_refuses_other_settings(tmp_path):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, n=8, audio=())
    work_dir(dst).mkdir()
    (work_dir(dst) / "job.json").write_text('{"input": "other"}')
    with pytest.raises(UserError, match="rerun without --resume"):
        run_videos([(str(src), str(dst))], IdentityProcessor(),
                   VideoJobOptions(resume=True, progress=False))


@pytest.mark.parametrize("stage", ["restore", "decode", "encode"])
def test_an_error_in_any_stage_stops_all_and_is_raised_once(tmp_path, monkeypatch, stage):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, n=40, audio=())

    class Boom(RuntimeError):
        pass

    class FailingRestorer(IdentityProcessor):
        def process(self, frames, window):
            for i, f in enumerate(frames):
                if stage == "restore" and i == 5:
                    raise Boom("restore failed")
                yield ProcessedFrame(f, False)
    if stage == "decode":
        real = vio.iter_frames

        def bad_iter(*a, **k):
            for i, d in enumerate(real(*a, **k)):
                if i == 7:
                    raise Boom("decode failed")
                yield d
        monkeypatch.setattr(vio, "iter_frames", bad_iter)
    if stage == "encode":
        def bad_write(self, *a, **k):
            raise Boom("encode failed")
        monkeypatch.setattr(vio.SegmentEncoder, "write", bad_write)
    before = threading.active_count()
    t0 = time.time()
    with pytest.raises(Boom, match=f"{stage} failed"):
        run_videos([(str(src), str(dst))], FailingRestorer(),
                   VideoJobOptions(progress=False, queue_size=2, segment_frames=40))
    assert time.time() - t0 < 30
    time.sleep(0.2)
    assert threading.active_count() <= before  # no stage left running
    assert not dst.exists() and not list(work_dir(dst).glob("*.part.mov"))


def _tiny_model(path):
    import torch

    from gfpgan.archs.gfpgan_arch import GFPGANv1Clean
    from gfpgan.checkpoint import save_network
    torch.manual_seed(0)
    kw = dict(out_size=64, num_style_feat=32, channel_multiplier=1, narrow=0.125, num_mlp=2)
    save_network(path, GFPGANv1Clean(**kw), "GFPGANv1Clean", kw)
    return path


@pytest.mark.slow  # three interpreter start-ups with torch + MTCNN: ~60 s on 2 cores
def test_torchrun_split_joins_into_the_single_process_output(tmp_path):
    src = tmp_path / "in.mp4"
    make_clip(src, n=16)
    model = _tiny_model(tmp_path / "tiny.safetensors")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    common = ["-m", "gfpgan.infer_video", "-i", str(src), "--model", str(model),
              "--device", "cpu", "--segment-frames", "4", "--preset", "ultrafast",
              "--no-progress"]
    one, two = tmp_path / "one.mp4", tmp_path / "two.mp4"
    subprocess.run([sys.executable, *common, "-o", str(one)], env=env, check=True, timeout=300)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node=2", *common, "-o", str(two)], env=env, check=True,
                   timeout=300)
    assert two.read_bytes() == one.read_bytes()
    pts, tb, frames, _ = read_video(two)
    src_pts, src_tb, src_frames, _ = read_video(src)
    assert [p * tb for p in pts] == [p * src_tb for p in src_pts]
    assert any((a != b).any() for a, b in zip(frames, src_frames))  # faces were restored


def test_x264_without_mbtree_gives_identical_files_run_to_run(tmp_path):
    """x264's MB-tree rate control does not give the same bits twice on noisy content (seen with
    PyAV 18's libx264, one thread too); ``x264-params=mbtree=0`` does."""
    from gfpgan.tools.synth_video import make_clip_pair

    clip = make_clip_pair(tmp_path / "clip", frames=48, size=192, jpeg=70)
    opts = dict(progress=False, preset="medium", codec_options={"x264-params": "mbtree=0"})
    outs = [tmp_path / f"out{i}.mp4" for i in range(4)]
    for out in outs:
        run_videos([(clip["degraded"], str(out))], IdentityProcessor(), VideoJobOptions(**opts))
    data = [o.read_bytes() for o in outs]
    assert b"mbtree=0" in data[0]  # x264 writes its settings into the stream
    assert all(d == data[0] for d in data[1:])


def test_an_encoder_option_it_does_not_have_stops_before_any_output(tmp_path):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, n=4, audio=())
    with pytest.raises(UserError, match="has no option frobnicate"):
        run_videos([(str(src), str(dst))], IdentityProcessor(),
                   VideoJobOptions(progress=False, codec_options={"frobnicate": "1"}))
    assert not dst.exists() and not list(tmp_path.glob(".out.mp4.parts/seg_*.mov"))


@pytest.mark.parametrize("params", ["mbtre=0", "keyint=often"])
def test_an_x264_parameter_it_cannot_parse_stops_before_any_output(tmp_path, params):
    """libx264 only logs a misspelt key or a bad value inside x264-params and encodes without it;
    the job must refuse it instead of silently dropping the setting."""
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, n=4, audio=())
    key, level = params.split("=")[0], av.logging.get_level()
    with pytest.raises(UserError, match=f"cannot parse .*'{key} = "):
        run_videos([(str(src), str(dst))], IdentityProcessor(),
                   VideoJobOptions(progress=False, codec_options={"x264-params": params}))
    assert not dst.exists() and not list(tmp_path.glob(".out.mp4.parts/seg_*.mov"))
    assert av.logging.get_level() == level  # the log level PyAV had is restored


def make_dts_stamped(path, n=24):
    """An mkv of x264 B-frames whose packets carry their decode stamps as pts, so the decoder
    hands out display-order frames with stamps out of order (as packed-B-frame DivX AVIs do)."""
    src = Path(path).with_suffix(".src.mp4")
    make_clip(src, n=n, rate=Fraction(25), audio=(("aac", 44100, "mono"),))
    with av.open(str(src)) as c, av.open(str(path), "w") as out:
        vs, a = c.streams.video[0], c.streams.audio[0]
        ov, oa = out.add_stream_from_template(vs), out.add_stream_from_template(a)
        for p in c.demux():
            if p.size == 0:
                continue
            if p.stream is vs:
                p.pts = p.dts
            p.stream = ov if p.stream is vs else oa
            out.mux(p)
    src.unlink()
    return path


class FailAt(Inverter):
    """The Inverter with 3 frames of warm-up and 2 of tail, failing on the segment that writes
    from frame ``at`` (an interruption)."""

    def __init__(self, at=None):
        self.at = at

    def context(self):
        return 3, 2

    def process(self, frames, window):
        if window.start == self.at:
            raise KeyboardInterrupt
        yield from super().process(frames, window)


def test_repaired_stamps_stay_frame_exact_across_segments_resume_and_ranks(tmp_path):
    src = make_dts_stamped(tmp_path / "dts.mkv", n=24)
    info = vio.probe_video(src)
    assert info.stamps is not None and info.stamps.repaired > 0
    assert list(info.pts) == sorted(set(info.pts)) and info.num_frames == 24
    opts = dict(segment_frames=5, progress=False, preset="ultrafast",
                codec_options={"x264-params": "mbtree=0"})
    ref = tmp_path / "ref.mp4"
    [s] = run_videos([(str(src), str(ref))], FailAt(), VideoJobOptions(**opts))
    assert s.frames == 24 and s.lost == 0 and "timestamps repaired" in s.notes[0]
    one = tmp_path / "one.mp4"
    run_videos([(str(src), str(one))], FailAt(), VideoJobOptions(**{**opts, "segment_frames": 100}))
    pts, tb, frames, _ = read_video(ref)
    pts1, tb1, frames1, _ = read_video(one)
    assert [p * tb for p in pts] == [p * tb1 for p in pts1]  # same stamps whatever the split
    assert len(frames) == 24 and all(np.abs(a.astype(int) - b).mean() < 3
                                     for a, b in zip(frames, frames1))

    dst = tmp_path / "resumed.mp4"  # interrupted at the segment of frame 10, then resumed
    with pytest.raises(KeyboardInterrupt):
        run_videos([(str(src), str(dst))], FailAt(10), VideoJobOptions(**opts))
    assert not dst.exists() and len(list(work_dir(dst).glob("seg_*.json"))) == 2
    [s] = run_videos([(str(src), str(dst))], FailAt(), VideoJobOptions(resume=True, **opts))
    assert s.reused == 2 and dst.read_bytes() == ref.read_bytes()

    two = tmp_path / "two.mp4"  # two ranks (threads here; torchrun runs processes)
    gate = threading.Barrier(2)
    other = threading.Thread(target=run_videos, args=([(str(src), str(two))], FailAt(),
                                                      VideoJobOptions(**opts), 1, 2, gate.wait))
    other.start()
    run_videos([(str(src), str(two))], FailAt(), VideoJobOptions(**opts), 0, 2, gate.wait)
    other.join()
    assert two.read_bytes() == ref.read_bytes()
