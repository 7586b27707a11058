"""The learned temporal module in the video pipeline: equality at initialisation, per-track states,
segment/resume byte-identity, bad temporal files, the ONNX step."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from gfpgan.errors import UserError
from gfpgan.inference.faces.detection import Detections
from gfpgan.inference.job.segments import images
from gfpgan.inference.settings import VideoRestorerConfig
from gfpgan.inference.tracks.sinks import FaceList
from gfpgan.inference.tracks.temporal_step import TemporalStep, temporal_restorer
from gfpgan.inference.tracks.video_restorer import VideoFaceRestorer
from tests.test_inference_tracking import lm_for_box
from tests.test_video_job import ROOT, _tiny_model

H, W, BOX = 160, 160, 44
# fp32: equalities across batch compositions hold to the bit there (in bf16 a batch of one takes
# the per-sample path and a larger one the shared-weight path, which round differently)
FAST = dict(device="cpu", detect_batch_size=2, overlap=False, batch_faces=4, precision="fp32")


def _texture(seed):
    """A face stand-in: blurred noise (seed > 0), or a flat dark patch (a cut to another shot)."""
    if seed == 0:
        return np.full((BOX + 24, BOX + 24, 3), 20, np.uint8)
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (BOX + 24, BOX + 24, 3)).astype(np.uint8), (5, 5), 1.5)


def _boxes(i, faces=("a", "b"), cut_at=None):
    """Face a walks right along the top, face b (from frame 3) walks left along the bottom: their
    paths cross in x. Returns {name: (x, y, texture seed)}."""
    out = {}
    if "a" in faces:
        out["a"] = (14 + 6 * i, 14, 1 if cut_at is None or i < cut_at else 0)
    if "b" in faces and i >= 3:
        out["b"] = (W - BOX - 14 - 6 * (i - 3), H - BOX - 14, 2)
    return out


def make_frames(n, **kw):
    """Frames with moving textured faces; frame i carries i in pixel (0, 0)."""
    frames = []
    for i in range(n):
        f = np.full((H, W, 3), 90, np.uint8)
        for x, y, seed in _boxes(i, **kw).values():
            f[y - 12:y + BOX + 12, x - 12:x + BOX + 12] = _texture(seed)
        f[0, 0] = i
        frames.append(f)
    return frames


class FakeDetector:
    """Boxes and landmarks where make_frames drew the faces (read from the frame number)."""

    def __init__(self, **kw):
        self.kw = kw

    def detect(self, imgs):
        out = []
        for img in imgs:
            boxes = [np.array([x, y, x + BOX, y + BOX], np.float32)
                     for x, y, _ in _boxes(int(img[0, 0, 0]), **self.kw).values()]
            if not boxes:
                out.append(Detections())
                continue
            out.append(Detections(np.stack(boxes), np.ones(len(boxes), np.float32),
                                  np.stack([lm_for_box(b) for b in boxes]).astype(np.float32)))
        return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from gfpgan.archs.temporal_arch import TemporalGFPGAN
    from gfpgan.networks import build_network
    from gfpgan.temporal_file import save_temporal

    d = tmp_path_factory.mktemp("temporal")
    base_path = _tiny_model(d / "tiny.safetensors")
    base = build_network(str(base_path))
    zero = TemporalGFPGAN(base, num_scales=2, hidden_channels=8)
    save_temporal(d / "zero.safetensors", zero, base_name="tiny")
    trained = TemporalGFPGAN(base, num_scales=2, hidden_channels=8)
    torch.manual_seed(1)
    for p in trained.proj.parameters():
        torch.nn.init.normal_(p, std=0.2)
    save_temporal(d / "trained.safetensors", trained, base_name="tiny")
    save_temporal(d / "both.safetensors", trained, base_name="tiny", include_base=True,
                  base_arch="GFPGANv1Clean", base_kwargs=dict(out_size=64, num_style_feat=32,
                                                              channel_multiplier=1, narrow=0.125,
                                                              num_mlp=2))
    other = _tiny_model(d / "other.safetensors")  # same seed -> same weights: perturb them
    net = build_network(str(other))
    with torch.no_grad():
        next(net.parameters()).add_(0.01)
    from gfpgan.checkpoint import save_network

    save_network(other, net, "GFPGANv1Clean", dict(out_size=64, num_style_feat=32, channel_multiplier=1,
                                                   narrow=0.125, num_mlp=2))
    return dict(base=str(base_path), zero=str(d / "zero.safetensors"),
                trained=str(d / "trained.safetensors"), both=str(d / "both.safetensors"),
                other=str(other))


def _run(restorer, frames):
    faces = FaceList()
    restorer.sinks.append(faces)
    out = images(restorer.process(iter(frames)))
    return out, {(r.frame, r.track): r.restored for r in faces.records}


def test_zero_projection_equals_per_frame_and_a_trained_module_differs(files):
    frames = make_frames(10)
    ref, ref_faces = _run(VideoFaceRestorer(files["base"], detector=FakeDetector(), **FAST), frames)
    zero, zero_faces = _run(temporal_restorer(files["zero"], files["base"],
                                                  detector=FakeDetector(), **FAST), frames)
    assert len(ref_faces) == 17 and zero_faces.keys() == ref_faces.keys()
    assert all(np.array_equal(a, b) for a, b in zip(ref, zero))
    trained, faces = _run(temporal_restorer(files["trained"], files["base"],
                                                detector=FakeDetector(), **FAST), frames)
    diffs = [np.abs(faces[k].astype(int) - ref_faces[k]).mean() for k in faces]
    assert faces.keys() == ref_faces.keys() and min(diffs) > 0.5, diffs
    # the file that holds its base gives the same frames without --model
    both, _ = _run(temporal_restorer(files["both"], detector=FakeDetector(), **FAST), frames)
    assert all(np.array_equal(a, b) for a, b in zip(trained, both))


def test_zero_projection_equals_per_frame_in_the_cpu_default_precision(files):
    """At the defaults of a CPU (bf16 where it is native, one face a pass) too."""
    cpu = dict(FAST, precision="auto", batch_faces=None)
    frames = make_frames(6)
    ref, ref_faces = _run(VideoFaceRestorer(files["base"], detector=FakeDetector(), **cpu), frames)
    zero, zero_faces = _run(temporal_restorer(files["zero"], files["base"], detector=FakeDetector(), **cpu),
                            frames)
    assert zero_faces.keys() == ref_faces.keys() and len(ref_faces) > 6
    assert all(np.array_equal(a, b) for a, b in zip(ref, zero))


def test_the_state_follows_the_face_not_the_background(files):
    """The crops are aligned on a walking face: the face stays put in them (the relative transform
    given to the module is the identity, not the frame's shift the other way) and the gate, which
    compares the previous crop warped by it with the current one, stays open."""
    restorer = temporal_restorer(files["trained"], files["base"], detector=FakeDetector(faces="a"),
                                     temporal_reset=100, **FAST)
    seen = []
    step = restorer.model.step

    def spy(x, state, rel):
        out, new = step(x, state, rel)
        seen.append((rel.numpy().copy(), float(new.gate[0])))
        return out, new

    restorer.model.step = spy
    _run(restorer, make_frames(8, faces="a"))  # face a moves 6 px a frame (8.7 px of its 64 px crop)
    assert len(seen) == 8
    for rel, gate in seen[1:]:
        np.testing.assert_allclose(rel[0], np.eye(2, 3), atol=1e-3)
        assert gate > 0.9, gate
    assert seen[0][1] == 0.0  # the track's first face: nothing to trust


def test_two_crossing_faces_keep_their_own_states(files):
    resets = []
    two = temporal_restorer(files["trained"], files["base"], detector=FakeDetector(),
                                on_reset=lambda *a: resets.append(a[1:]), temporal_reset=100, **FAST)
    _, faces = _run(two, make_frames(12))
    tracks = sorted({k[1] for k in faces})
    assert len(tracks) == 2
    assert resets == [(0, tracks[0], "new"), (3, tracks[1], "new")]  # each on its own start only
    # face a alone gives its crops (to the last bit: a pass of 1 face or 2 rounds differently):
    # face b's state never leaks into a's, though b is batched with a from frame 3 on
    one = temporal_restorer(files["trained"], files["base"], detector=FakeDetector(faces="a"),
                                temporal_reset=100, **FAST)
    _, alone = _run(one, make_frames(12, faces="a"))
    assert alone.keys() == {k for k in faces if k[1] == tracks[0]}
    assert max(np.abs(alone[k].astype(int) - faces[k]).max() for k in alone) <= 1
    # a cut (face a's texture changes at frame 6): its gate collapses, its state restarts once
    resets.clear()
    cut = temporal_restorer(files["trained"], files["base"], detector=FakeDetector(cut_at=6),
                                on_reset=lambda *a: resets.append(a[1:]), temporal_reset=4,
                                gate_reset=0.3, **FAST)
    _run(cut, make_frames(12, cut_at=6))
    assert [r for r in resets if r[1] == tracks[0]] == [(0, tracks[0], "new"), (4, tracks[0], "period"),
                                                         (7, tracks[0], "gate"), (8, tracks[0], "period")]


def test_segments_and_resume_are_byte_identical_with_the_module_on(files, tmp_path):
    from gfpgan.inference.job.options import VideoJobOptions
    from gfpgan.inference.job.segments import SegmentWindow
    from gfpgan.inference.job.video_job import run_videos, work_dir

    frames = make_frames(14)
    WHOLE = SegmentWindow()

    class Interrupted(VideoFaceRestorer):
        stop_at = None

        def process(self, frames, window=WHOLE):
            if window.start == self.stop_at:
                raise KeyboardInterrupt
            yield from super().process(frames, window)

    def proc():  # states carry over segment boundaries: K = 6 > 4 frames per segment
        step = TemporalStep(files["trained"], files["base"], temporal_reset=6,
                            gate_reset=VideoRestorerConfig().gate_reset)
        return Interrupted(step.net, detector=FakeDetector(), step=step, detect_every=1, **FAST)

    # the frames of segments of 4 (each fed from its warm-up to its tail, as the job does) are
    # those of one pass over the whole clip
    p = proc()
    whole = images(p.process(iter(frames)))
    warmup, tail = p.context()
    assert warmup == 1 + 8 + 5  # detect_every + past + (K - 1)
    for start in range(0, 14, 4):
        first, stop = max(0, start - warmup), min(14, start + 4)
        out = images(p.process(iter(frames[first:stop + tail]), SegmentWindow("v", first, start, stop)))
        for i in range(start, stop):
            assert np.array_equal(out[i - first], whole[i]), i
    # and a job interrupted, then resumed, gives the bytes of the uninterrupted job
    src = tmp_path / "frames"
    src.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(src / f"{i:04d}.png"), f[..., ::-1])

    def run(dst, stop_at=None, resume=False):
        p = proc()
        p.stop_at = stop_at
        opts = VideoJobOptions(segment_frames=4, progress=False, preset="ultrafast", resume=resume,
                               codec_options={"x264-params": "mbtree=0"})
        return run_videos([(str(src), str(dst))], p, opts)

    ref, resumed = tmp_path / "ref.mp4", tmp_path / "resumed.mp4"
    run(ref)
    with pytest.raises(KeyboardInterrupt):
        run(resumed, stop_at=8)
    assert len(list(work_dir(resumed).glob("seg_*.json"))) == 2
    [s] = run(resumed, resume=True)
    assert s.reused == 2 and resumed.read_bytes() == ref.read_bytes()


def test_a_temporal_file_for_another_base_exits_2_with_one_line(files, tmp_path):
    dst = tmp_path / "out.mp4"
    src = tmp_path / "frames"
    src.mkdir()
    cv2.imwrite(str(src / "0000.png"), make_frames(1)[0])
    cmd = [sys.executable, "-m", "gfpgan.infer_video", "-i", str(src), "-o", str(dst), "--model",
           files["other"], "--temporal", files["trained"], "--device", "cpu", "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "was trained on tiny" in lines[0], r.stderr
    assert not dst.exists() and not list(tmp_path.glob(".out.mp4.parts*"))
    with pytest.raises(UserError, match="holds only the temporal module"):
        temporal_restorer(files["trained"], None, device="cpu")


def test_a_wrong_state_shape_is_one_sentence(files):
    from gfpgan.inference.faces.model import load_face_model
    from gfpgan.inference.tracks.temporal_step import load_temporal_net

    model = load_face_model(load_temporal_net(files["trained"], files["base"]), device="cpu")
    x = torch.zeros(2, 3, 64, 64)
    with pytest.raises(UserError, match="the temporal state does not fit"):
        model.step(x, model.init_state(1), torch.eye(2, 3).repeat(2, 1, 1))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_onnx_step_export_matches_pytorch(files, tmp_path):
    import onnxruntime  # noqa: F401  (required: a broken install fails here, it does not skip)

    from gfpgan.tools.export import main

    assert main(["--temporal", files["both"], "--out", str(tmp_path), "--tol", "1e-4"]) == 0
    assert (tmp_path / "both_step.onnx").is_file()
    with pytest.raises(UserError, match="opset 20"):
        main(["--temporal", files["both"], "--out", str(tmp_path / "x"), "--opset", "17"])
