"""Personalization: the personal file, tuning and its resume, targets from a video, the loop in
infer_video, and the never-worse-than-the-input rule on the benchmark clip's near frames."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from gfpgan.archs.gfpgan_arch import GFPGANv1Clean
from gfpgan.checkpoint import save_network, state_dict_sha256
from gfpgan.errors import UserError
from gfpgan.personal_file import apply_personal, read_personal_config, save_personal, tuned_names
from gfpgan.personalize import Tuning, default_degradation, personalize_on, tune

KW = dict(out_size=64, num_style_feat=32, channel_multiplier=1, narrow=0.125, num_mlp=2)


def _net(seed=0):
    torch.manual_seed(seed)
    return GFPGANv1Clean(**KW).eval()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "base.safetensors"
    save_network(path, _net(), "GFPGANv1Clean", KW)
    return path


def _targets(n=4, size=64):
    import cv2
    import skimage.data

    img = skimage.data.astronaut()[40:240, 130:330]
    return [cv2.resize(np.roll(img, 4 * i, axis=1), (size, size), interpolation=cv2.INTER_AREA)
            for i in range(n)]


FAST = dict(iters=6, batch=2, eval_every=2, patience=10, degradation=default_degradation(64))


def test_the_adapter_is_a_small_part_and_the_file_refuses_another_base(tmp_path):
    net = _net()
    names = tuned_names(net, "adapter")
    sizes = {n: p.numel() for n, p in net.named_parameters()}
    assert names and all(n.startswith(("condition_", "stylegan_decoder.")) for n in names)
    assert sum(sizes[n] for n in names) < 0.35 * sum(sizes.values())  # 0.17 at 512 px
    style = tuned_names(net, "style")
    assert set(style) < set(names) and sum(sizes[n] for n in style) < 0.05 * sum(sizes.values())
    assert tuned_names(net, "full") == list(sizes)
    base_sha = state_dict_sha256(net)
    with torch.no_grad():
        for n in names:
            dict(net.named_parameters())[n].add_(0.5)
    save_personal(tmp_path / "p.safetensors", net, names, base_sha, "GFPGANv1Clean", KW, "base")
    assert read_personal_config(tmp_path / "p.safetensors")["extra"]["scope"] == "adapter"
    fresh = apply_personal(tmp_path / "p.safetensors", _net())
    assert state_dict_sha256(fresh) == state_dict_sha256(net)
    with pytest.raises(UserError, match="was tuned from base .* not from the given model"):
        apply_personal(tmp_path / "p.safetensors", _net(seed=1))
    # the original architecture stores its modulated weights reshaped in its state dict
    from gfpgan.archs.gfpgan_arch import GFPGANv1

    kw1 = dict(out_size=64, num_style_feat=32, channel_multiplier=1, narrow=0.125, num_mlp=2)
    torch.manual_seed(0)
    orig = GFPGANv1(**kw1).eval()
    sha, full = state_dict_sha256(orig), tuned_names(orig, "full")
    with torch.no_grad():
        for prm in orig.parameters():
            prm.add_(0.01)
    save_personal(tmp_path / "full.safetensors", orig, full, sha, "GFPGANv1", kw1, "orig", "full")
    torch.manual_seed(0)
    again = apply_personal(tmp_path / "full.safetensors", GFPGANv1(**kw1).eval())
    assert state_dict_sha256(again) == state_dict_sha256(orig)
    save_network(tmp_path / "plain.safetensors", _net(), "GFPGANv1Clean", KW)
    with pytest.raises(UserError, match="is not a personal file"):
        read_personal_config(tmp_path / "plain.safetensors")


def test_tuning_learns_the_targets_and_resumes_exactly(tmp_path, monkeypatch):
    targets = _targets()
    ref = _net()
    names, info = tune(ref, targets, Tuning(**FAST), state_path=tmp_path / "ref.pt", progress=False)
    assert info["iterations"] == 6 and info["held_out"] == 1
    assert info["held_out_psnr"] > info["held_out_psnr_base"]  # it learned something
    # the same run killed after its 3rd iteration and resumed from its state
    import gfpgan.personalize as pz

    real, calls = pz._batch, []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # the held-out batch, then iterations 1..3, then the 4th dies
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    state = tmp_path / "cut.pt"
    with monkeypatch.context() as m:
        m.setattr(pz, "_batch", dying)
        with pytest.raises(KeyboardInterrupt):
            tune(_net(), targets, Tuning(**FAST), state_path=state, progress=False)
    assert torch.load(state, weights_only=True)["it"] == 2
    resumed = _net()
    tune(resumed, targets, Tuning(**FAST), state_path=state, progress=False)
    a, b = ref.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(UserError, match="state of another personalization"):
        tune(_net(), targets[:3], Tuning(**FAST), state_path=state, progress=False)


def test_personalize_writes_a_file_the_pipeline_applies(tmp_path, base):
    from gfpgan.inference.faces.pipeline import FaceRestorer

    out = tmp_path / "person.safetensors"
    info = personalize_on(_targets(), str(base), str(out), Tuning(**FAST), progress=False)
    assert out.is_file() and not (tmp_path / ".person.safetensors.state.pt").exists()
    assert read_personal_config(out)["extra"]["info"]["targets"] == 4 == info["targets"]
    crop = _targets(1)[0]
    plain = FaceRestorer(str(base), device="cpu", aligned=True).restore(crop).restored_faces[0]
    tuned = FaceRestorer(str(base), device="cpu", aligned=True, personal=str(out),
                         personal_gate=0).restore(crop)  # every face gets the personal output
    assert np.abs(tuned.restored_faces[0].astype(int) - plain).mean() > 0.5
    other = tmp_path / "other.safetensors"
    save_network(other, _net(seed=3), "GFPGANv1Clean", KW)
    with pytest.raises(UserError, match="was tuned from"):
        FaceRestorer(str(other), device="cpu", personal=str(out))


class _Fixed(torch.nn.Module):
    """A stand-in generator: ``x`` blurred (it explains the input), or a flat grey (it does not),
    or ``x`` plus a fixed offset."""

    out_size = 64

    def __init__(self, kind, offset=0.0):
        super().__init__()
        self.kind, self.offset = kind, offset

    def forward(self, x, return_rgb=False, randomize_noise=None):
        import torch.nn.functional as F

        out = {"echo": lambda: F.avg_pool2d(x, 3, 1, 1, count_include_pad=False),
               "flat": lambda: torch.zeros_like(x), "offset": lambda: x + self.offset}[self.kind]()
        return out, []


def test_the_gate_keeps_the_output_that_explains_the_input(tmp_path, base):
    from gfpgan.personal_file import GatedPersonal, consistency_margin, personal_generator

    x = torch.from_numpy(np.stack(_targets(3))).permute(0, 3, 1, 2).float() / 127.5 - 1
    echo, flat = _Fixed("echo"), _Fixed("flat")
    right = GatedPersonal(flat, echo)  # the personal output explains the faces: full weight
    assert torch.equal(right(x)[0], echo(x)[0]) and right.last_weights.tolist() == [1.0] * 3
    wrong = GatedPersonal(echo, flat)  # it does not: the base's output, untouched
    assert torch.equal(wrong(x)[0], echo(x)[0]) and wrong.last_weights.tolist() == [0.0] * 3
    # in between, the weight is the margin in dB over --personal-gate
    a, b = _Fixed("offset", 0.1), _Fixed("offset", 0.1 * 10 ** (-0.5 / 20))  # errors 0.5 dB apart
    half = GatedPersonal(a, b, gate_db=1.0)
    assert consistency_margin(x, a(x)[0], b(x)[0]) == pytest.approx(torch.full((3,), 0.5), abs=1e-4)
    out = half(x)[0]
    assert half.last_weights == pytest.approx(torch.full((3,), 0.5), abs=1e-4)
    assert torch.allclose(out, (a(x)[0] + b(x)[0]) / 2, atol=1e-5)
    with pytest.raises(ValueError, match="positive"):
        GatedPersonal(a, b, gate_db=0)
    # a file: gated by default, the tuned copy alone with gate 0; the base itself stays as it was
    out_file = tmp_path / "p.safetensors"
    personalize_on(_targets(), str(base), str(out_file), Tuning(**FAST), progress=False)
    net = _net()
    before = state_dict_sha256(net)
    gated = personal_generator(out_file, net)
    assert isinstance(gated, GatedPersonal) and gated.base is net and state_dict_sha256(net) == before
    alone = personal_generator(out_file, net, gate_db=0)
    assert not isinstance(alone, GatedPersonal) and state_dict_sha256(alone) != before
    assert state_dict_sha256(gated.personal) == state_dict_sha256(alone)


def test_only_faces_larger_than_the_crop_become_targets(tmp_path):
    from gfpgan.inference.tracks.sinks import FaceRecord
    from gfpgan.inference.tracks.targets import TargetCollector

    crop = _targets(1)[0]
    lm = np.array([[20, 25], [44, 25], [32, 36], [23, 47], [41, 47]], np.float64)

    def record(frame, scale, written=True):
        affine = np.array([[1 / scale, 0, 0], [0, 1 / scale, 0]])
        return FaceRecord("v", frame, 1, np.zeros(4), 0.99, lm * scale, lm * scale, affine, crop,
                          crop, written)

    found = TargetCollector(spacing=2)
    for f in range(10):
        found.add(record(f, 2.0 if f < 5 else 0.6))  # near, then far
    found.add(record(11, 2.0, written=False))  # a context frame is not the segment's
    assert sorted(m["frame"] for m in found.metadata) == [0, 2, 4]
    assert found.restore_scales == [0.6] * 5
    # the face database marks its targets; personalization takes those only
    import csv

    from gfpgan.inference.tracks.face_database import FaceCollector
    from gfpgan.personalize import load_targets

    db = FaceCollector(tmp_path / "db", top_n=10, min_track=1)
    for f in range(10):
        db.add(record(f, 2.0 if f < 3 else 0.6))
    path = db.close()
    rows = list(csv.DictReader(open(path / "metadata.csv")))
    assert [r["target"] for r in rows].count("1") == 3 == db.targets_written and len(rows) == 10
    assert float(rows[0]["scale"]) == pytest.approx(2.0)
    assert len(load_targets([str(tmp_path / "db")], 64)) == 3


@pytest.mark.slow  # a short clip restored twice: ~40 s on 2 cores
def test_the_loop_in_infer_video_and_a_video_without_targets(tmp_path, base, capsys):
    from gfpgan.infer_video import main
    from gfpgan.tools.bench_personal import _portrait, near_far_frames
    from gfpgan.tools.synth_video import write_clip

    _, lq = near_far_frames(_portrait("grace_hopper"), 6, 4, 160, 1.3, 0.5)
    write_clip(tmp_path / "clip.mp4", lq, audio=False)
    args = ["--model", str(base), "--no-progress"]  # the default device, "auto", as users run it
    assert main(["-i", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "out.mp4"), "--personalize",
                 *args]) == 0
    err = capsys.readouterr().err
    assert "personalized on" in err and (tmp_path / "out.personal.safetensors").is_file()
    # far faces only: one sentence, and the base's output. Each command in its own process, as
    # people run them: repeated runs inside one process can differ (the O-Net tracking between key
    # frames runs beside the generator; a float bit of difference can round to another crop)
    write_clip(tmp_path / "far.mp4", lq[6:], audio=False)
    args += ["--detect-every", "1"]  # no tracking between key frames: the larger source of that drift

    def run(*extra):
        return subprocess.run([sys.executable, "-m", "gfpgan.infer_video", "-i", str(tmp_path / "far.mp4"),
                               *extra, *args], capture_output=True, text=True, timeout=300)
    res = run("-o", str(tmp_path / "far_p.mp4"), "--personalize")
    notes = [ln for ln in res.stderr.splitlines() if "restoring with the base model" in ln]
    assert res.returncode == 0 and len(notes) == 1
    assert not (tmp_path / "far_p.personal.safetensors").exists()
    assert run("-o", str(tmp_path / "far_b.mp4")).returncode == 0
    assert (tmp_path / "far_p.mp4").read_bytes() == (tmp_path / "far_b.mp4").read_bytes()


def test_near_frames_of_the_benchmark_clip_keep_their_input(base):
    from gfpgan.inference.tracks.video_restorer import VideoFaceRestorer
    from gfpgan.metrics.psnr_ssim import calculate_psnr
    from gfpgan.tools.bench_personal import _portrait, _windows, near_far_frames

    clean, lq = near_far_frames(_portrait("grace_hopper"), 4, 0, 160, 1.3, 0.5)
    windows = _windows(clean)

    def face_psnr(frames):
        return np.mean([calculate_psnr(f[y0:y1, x0:x1], g[y0:y1, x0:x1])
                        for f, g, (y0, y1, x0, x1) in zip(frames, clean, windows)])

    def restored(**kw):
        from gfpgan.inference.job.segments import images

        return images(VideoFaceRestorer(str(base), device="cpu", **kw).process(iter(lq)))
    kept, pasted = face_psnr(restored()), face_psnr(restored(keep_detail=0))
    assert abs(kept - face_psnr(lq)) <= 0.5 < face_psnr(lq) - pasted  # the rule is what keeps it
