"""Frame-recurrent fusion (issue 23): bit-identical start through the pipeline, the fused previous
frame follows the face under motion, resets empty it, files and the ONNX step carry it, and the
video evaluation gives the module the estimated motion unless the exact one is asked for."""

import json
import shutil

import numpy as np
import pytest
import torch

from gfpgan.archs import GFPGANv1, GFPGANv1Clean, TemporalGFPGAN
from gfpgan.archs.temporal_arch import reset_state
from gfpgan.errors import UserError
from gfpgan.motion import similarity
from tests.test_archs_temporal import S, _base, _face, _moved, onnx_step_matches_pytorch

R = torch.tensor(similarity(3.0, 1.02, 2.5, -1.5, S), dtype=torch.float32)[None]


def _randomise_fusion(net, seed=1, std=0.1):
    g = torch.Generator().manual_seed(seed)
    for name, p in net.named_parameters():
        if name.startswith("fuse"):
            p.data = torch.randn(p.shape, generator=g) * std


@pytest.mark.parametrize("cls", [GFPGANv1Clean, GFPGANv1])
@pytest.mark.parametrize("cfg", [dict(num_scales=0), dict(num_scales=2, fusion_scale=2),
                                 dict(num_scales=0, fusion_mode="blend")])
def test_fusion_starts_bit_identical_and_its_zero_projections_get_gradients(cls, cfg):
    base = _base(cls)
    net = TemporalGFPGAN(base, fusion=True, **cfg).eval()
    x0, x1 = _face(0), _moved(_face(0), R[0])
    with torch.no_grad():
        o0, _, st = net(x0, None, None, randomize_noise=False)
        o1, _, st1 = net(x1, st, R, randomize_noise=False)
        ref0, ref1 = (base(x, return_rgb=False, randomize_noise=False)[0] for x in (x0, x1))
    assert torch.equal(o0, ref0) and torch.equal(o1, ref1)
    assert st1.hidden[-1].shape == (1, 6, S, S) and float(st1.valid[0]) == 1.0
    assert torch.equal(st1.hidden[-1][:, :3], o1) and torch.equal(st1.hidden[-1][:, 3:], x1)
    net.train()
    _, _, st = net(x0, None, None, randomize_noise=False)
    out, _, _ = net(x1, st, R, randomize_noise=False)
    out.square().mean().backward()
    grads = {n: float(p.grad.abs().sum()) for n, p in net.named_parameters()
             if n.startswith("fuse") and p.grad is not None}
    zeros = ("fuse_in.weight", "fuse_out.weight") + (("fuse_dec.weight",) if net.fuse_dec is not None else ())
    for n in zeros:
        assert grads[n] > 0, n  # every zero projection learns at once
    assert grads["fuse.0.weight"] == 0.0  # the head behind them after their first update


def test_the_fused_previous_frame_follows_the_face():
    """The head sees the previous input warped by the relative motion: where the face moved by R,
    the warped previous input equals the current input (away from the border), and their
    difference is small; told the identity instead, it is not."""
    net = TemporalGFPGAN(_base(), num_scales=0, fusion=True).eval()
    _randomise_fusion(net)
    seen = []
    head = net.fuse
    net.fuse = torch.nn.Sequential(*head)
    net.fuse.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    x0 = _face(0)
    x1 = _moved(x0, R[0])
    inner = (slice(None), slice(None), slice(10, S - 10), slice(10, S - 10))
    errs = {}
    for name, rel in (("motion", R), ("identity", torch.eye(2, 3)[None])):
        seen.clear()
        with torch.no_grad():
            _, _, st = net(x0, None, None, randomize_noise=False)
            out0 = st.hidden[-1][:, :3]
            net(x1, st, rel, randomize_noise=False)
        inp = seen[-1]
        assert inp.shape == (1, 14, S, S)
        assert torch.equal(inp[:, :3], x1)
        errs[name] = float((inp[:, 3:6] - x1)[inner].abs().mean())
        assert torch.allclose(inp[:, 9:12], inp[:, 3:6] - x1)
        moved_out = _moved(out0, rel[0])
        errs[name + "_out"] = float((inp[:, 6:9] - moved_out)[inner].abs().mean())
    assert errs["motion"] < 0.01 and errs["identity"] > 0.05, errs
    assert errs["motion_out"] < 0.02, errs  # the previous *output* moves with the face too


def test_a_reset_empties_the_fused_frames_and_a_first_frame_is_the_base():
    base = _base()
    net = TemporalGFPGAN(base, num_scales=0, fusion=True).eval()
    _randomise_fusion(net)
    x0, x1 = _face(0), _face(5)
    with torch.no_grad():
        first, _, _ = net(x1, None, None, randomize_noise=False)
        assert torch.equal(first, base(x1, return_rgb=False, randomize_noise=False)[0])  # nothing to fuse
        _, _, st = net(x0, None, None, randomize_noise=False)
        r = reset_state(st, torch.tensor([True]))
        assert float(r.hidden[-1].abs().sum()) == 0.0 and float(r.valid[0]) == 0.0
        fresh, _, _ = net(x1, net.init_state(1), R, randomize_noise=False)
        after, _, _ = net(x1, r, R, randomize_noise=False)
        # a state whose valid flag is 0 but whose frames were not zeroed is still not used
        stale = st._replace(valid=torch.zeros(1))
        ignored, _, _ = net(x1, stale, R, randomize_noise=False)
        carried, _, _ = net(x1, st, R, randomize_noise=False)
    assert torch.equal(fresh, after) and torch.equal(fresh, ignored)
    assert (carried - fresh).abs().max() > 1e-3


def test_fusion_kwargs_round_trip_through_a_temporal_file_and_old_configs_stay_as_they_were(tmp_path):
    from gfpgan.temporal_file import adapter_kwargs, load_temporal, read_temporal_config, save_temporal

    base = _base()
    net = TemporalGFPGAN(base, num_scales=2, hidden_channels=8, fusion=True, fusion_channels=8,
                         fusion_scale=2).eval()
    _randomise_fusion(net)
    save_temporal(tmp_path / "f.safetensors", net, base_name="b")
    cfg = read_temporal_config(tmp_path / "f.safetensors")
    assert cfg["kwargs"] == {"num_scales": 2, "hidden_channels": 8, "gate_sharpness": 50.0, "fusion": True,
                             "fusion_channels": 8, "fusion_scale": 2}
    back = load_temporal(tmp_path / "f.safetensors", base)
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), net.state_dict().values()))
    gru = TemporalGFPGAN(base, num_scales=2, hidden_channels=8)
    assert adapter_kwargs(gru) == {"num_scales": 2, "hidden_channels": 8, "gate_sharpness": 50.0}
    with pytest.raises(UserError, match="num_scales must be between 1"):
        TemporalGFPGAN(base, num_scales=0)
    with pytest.raises(UserError, match="fusion_scale"):
        TemporalGFPGAN(base, num_scales=0, fusion=True, fusion_scale=3)
    blend = TemporalGFPGAN(base, num_scales=0, fusion=True, fusion_mode="blend")
    assert adapter_kwargs(blend)["fusion_mode"] == "blend"


def test_blend_moves_the_output_towards_the_warped_previous_output():
    """With the output gain forced to 1 (bias), the second frame's output is the first frame's output
    moved by the motion; the first frame (nothing to fuse) stays the base's."""
    base = _base()
    net = TemporalGFPGAN(base, num_scales=0, fusion=True, fusion_mode="blend").eval()
    with torch.no_grad():
        net.fuse_out.bias.fill_(20.0)  # tanh(20) = 1: take the previous output
        x0, x1 = _face(0), _moved(_face(0), R[0])
        o0, _, st = net(x0, None, None, randomize_noise=False)
        o1, _, _ = net(x1, st, R, randomize_noise=False)
        assert torch.equal(o0, base(x0, return_rgb=False, randomize_noise=False)[0])
    inner = (slice(None), slice(None), slice(10, S - 10), slice(10, S - 10))
    assert float((o1 - _moved(o0, R[0]))[inner].abs().mean()) < 0.01


def test_fusion_step_exports_to_onnx_and_matches_pytorch(tmp_path):
    net = TemporalGFPGAN(_base(), num_scales=1, fusion=True, fusion_scale=2).eval()
    _randomise_fusion(net)
    onnx_step_matches_pytorch(net, R, tmp_path)


# ------------------------------------------------------------------------------ the pipeline
@pytest.fixture(scope="module")
def fusion_files(tmp_path_factory):
    from gfpgan.networks import build_network
    from gfpgan.temporal_file import save_temporal
    from tests.test_video_job import _tiny_model

    d = tmp_path_factory.mktemp("fusion")
    base_path = _tiny_model(d / "tiny.safetensors")
    base = build_network(str(base_path))
    zero = TemporalGFPGAN(base, num_scales=0, fusion=True, fusion_channels=8)
    save_temporal(d / "zero.safetensors", zero, base_name="tiny")
    _randomise_fusion(zero, std=0.2)
    save_temporal(d / "trained.safetensors", zero, base_name="tiny")
    return dict(base=str(base_path), zero=str(d / "zero.safetensors"), trained=str(d / "trained.safetensors"))


def test_through_the_pipeline_fusion_starts_as_per_frame_and_the_gate_resets_on_a_cut(fusion_files):
    from gfpgan.inference.tracks.temporal_step import temporal_restorer
    from gfpgan.inference.tracks.video_restorer import VideoFaceRestorer
    from tests.test_video_temporal import FAST, FakeDetector, _run, make_frames

    f = fusion_files
    frames = make_frames(10)
    ref, ref_faces = _run(VideoFaceRestorer(f["base"], detector=FakeDetector(), **FAST), frames)
    zero, zero_faces = _run(temporal_restorer(f["zero"], f["base"], detector=FakeDetector(), **FAST), frames)
    assert len(ref_faces) == 17 and zero_faces.keys() == ref_faces.keys()
    assert all(np.array_equal(a, b) for a, b in zip(ref, zero))
    _, faces = _run(temporal_restorer(f["trained"], f["base"], detector=FakeDetector(), **FAST), frames)
    firsts = {min(k for k in faces if k[1] == t) for t in {k[1] for k in faces}}
    diffs = {k: np.abs(faces[k].astype(int) - ref_faces[k]).mean() for k in faces}
    assert len(firsts) == 2 and all(diffs[k] == 0 for k in firsts)  # a track's first face: the base's
    assert min(d for k, d in diffs.items() if k not in firsts) > 0.5, diffs
    resets = []
    cut = temporal_restorer(f["trained"], f["base"], detector=FakeDetector(cut_at=6),
                            on_reset=lambda *a: resets.append(a[1:]), temporal_reset=100, gate_reset=0.3,
                            **FAST)
    _, faces = _run(cut, make_frames(12, cut_at=6))
    track = min(k[1] for k in faces)
    assert [r for r in resets if r[1] == track] == [(0, track, "new"), (7, track, "gate")]


# ------------------------------------------------------------------------------ evaluation
def test_the_evaluation_gives_the_module_estimated_motion_unless_the_exact_one_is_asked(tmp_path):
    """Two copies of a set differ only in the manifest's transforms (one of them nonsense): with the
    default (estimated) motion the module restores both identically, so it never saw them; with
    ``motion: gt`` it does see them, and its results are labelled the upper bound."""
    import skimage.data

    from gfpgan.checkpoint import save_network
    from gfpgan.engine.eval_common import run_on_ranks
    from gfpgan.engine.video_eval import VIDEO_SCHEMA, evaluate_video
    from gfpgan.images import read_image, write_image_atomic
    from gfpgan.options import validate
    from gfpgan.temporal_file import save_temporal
    from gfpgan.tools.make_video_testset import make_video_testset
    from tests.helpers import TINY_GFPGAN

    hq = tmp_path / "hq"
    hq.mkdir()
    for i, face in enumerate(skimage.data.lfw_subset()[:2]):
        write_image_atomic(hq / f"face{i:02d}.png",
                           np.repeat((face * 255).round().astype(np.uint8)[..., None], 3, axis=2))
    make_video_testset(hq, tmp_path / "set", frames=4, size=32, codec_prob=0.0, progress=False)
    shutil.copytree(tmp_path / "set", tmp_path / "bogus")
    man = json.loads((tmp_path / "bogus" / "manifest.json").read_text())
    for clip in man["clips"]:
        clip["rel_affines"] = [similarity(20.0, 1.2, 6.0, -5.0, 32).tolist()] * len(clip["rel_affines"])
    (tmp_path / "bogus" / "manifest.json").write_text(json.dumps(man))
    torch.manual_seed(0)
    base = GFPGANv1Clean(**TINY_GFPGAN).eval()
    save_network(tmp_path / "base.safetensors", base, "GFPGANv1Clean", TINY_GFPGAN)
    net = TemporalGFPGAN(base, num_scales=0, fusion=True, fusion_channels=8).eval()
    _randomise_fusion(net, std=0.2)
    save_temporal(tmp_path / "t.safetensors", net, base_name="base.safetensors")

    def run(root, motion, name):
        opt = validate({"mode": "video", "name": name, "model": str(tmp_path / "base.safetensors"),
                        "temporal": str(tmp_path / "t.safetensors"), "device": "cpu", "motion": motion,
                        "datasets": {"s": {"dataroot": str(tmp_path / root)}},
                        "metrics": {"psnr": {"crop_border": 0, "test_y_channel": False}},
                        "path": {"results_root": str(tmp_path / "results")}}, VIDEO_SCHEMA, where="test")
        box = {}
        run_on_ranks("cpu", lambda dist, say: box.update(evaluate_video(opt, dist, force=True, say=say)))
        frames = sorted((tmp_path / "results" / name / box["mode"] / "s" / "restored").rglob("*.png"))
        return box, [read_image(p) for p in frames]

    est_true, a = run("set", "estimated", "e1")
    est_bogus, b = run("bogus", "estimated", "e2")
    gt_true, c = run("set", "gt", "g1")
    gt_bogus, d = run("bogus", "gt", "g2")
    assert est_true["mode"] == "temporal" and est_true["motion"] == "estimated"
    assert gt_true["mode"] == "temporal_gt_motion" and gt_true["motion"] == "gt"
    assert len(a) == 8 and all(np.array_equal(x, y) for x, y in zip(a, b))  # the manifest was not used
    assert max(np.abs(x.astype(int) - y).max() for x, y in zip(c, d)) > 2  # the exact motion was
    m = est_true["datasets"]["s"]["metrics"]
    assert m["ewarp_gt"] > 0 and m["psnr"] > 5


def test_through_the_pipeline_fusion_starts_as_per_frame_in_the_cpu_default_precision(fusion_files):
    """At the defaults of a CPU (bf16 where it is native, one face a pass) too."""
    from gfpgan.inference.tracks.temporal_step import temporal_restorer
    from gfpgan.inference.tracks.video_restorer import VideoFaceRestorer
    from tests.test_video_temporal import FAST, FakeDetector, _run, make_frames

    f, cpu = fusion_files, dict(FAST, precision="auto", batch_faces=None)
    frames = make_frames(6)
    ref, ref_faces = _run(VideoFaceRestorer(f["base"], detector=FakeDetector(), **cpu), frames)
    zero, zero_faces = _run(temporal_restorer(f["zero"], f["base"], detector=FakeDetector(), **cpu), frames)
    assert zero_faces.keys() == ref_faces.keys() and len(ref_faces) > 6
    assert all(np.array_equal(a, b) for a, b in zip(ref, zero))
    _, faces = _run(temporal_restorer(f["trained"], f["base"], detector=FakeDetector(), **cpu), frames)
    assert max(np.abs(faces[k].astype(int) - ref_faces[k]).mean() for k in faces) > 0.5


def test_motion_noise_changes_only_the_motion_the_module_is_given(tmp_path):
    """``motion_noise`` adds an estimate's error to ``rel_input`` from a stream of its own: the clips
    (frames and exact transforms) are those of ``motion_noise: 0``, and the error has its scale."""
    import skimage.data

    from gfpgan.data.clip_dataset import FFHQClipDataset
    from gfpgan.images import write_image_atomic

    for i, face in enumerate(skimage.data.lfw_subset()[:2]):
        gray = (face * 255).round().astype(np.uint8)[..., None]
        write_image_atomic(tmp_path / f"f{i}.png", np.repeat(gray, 3, 2))
    kw = dict(num_frames=4, out_size=32, blur_kernel_size=7, blur_sigma=[0.5, 1], downsample_range=[1, 2],
              noise_range=[0, 5], jpeg_range=[80, 100], mean=[0.5] * 3, std=[0.5] * 3)
    exact = FFHQClipDataset(str(tmp_path), **kw)[1]
    noisy = FFHQClipDataset(str(tmp_path), motion_noise=0.02, **kw)[1]
    assert "rel_input" not in exact and "rel_input" in noisy
    for k in ("lq", "gt", "rel_affine"):
        assert torch.equal(exact[k], noisy[k]), k
    shift = (noisy["rel_input"] - noisy["rel_affine"])[1:, :, 2].abs()
    assert torch.equal(noisy["rel_input"][0], noisy["rel_affine"][0])
    assert 0.05 < float(shift.mean()) < 3.0  # pixels of a 32 px crop: ~0.02 * 32 plus the rotation's share


def test_end_to_end_benchmark_untrained_module_equals_frame_by_frame(fusion_files, tmp_path):
    """bench_temporal's end-to-end part (detection, tracking, paste through infer_video) on a given
    clip pair: an untrained fusion file gives frame by frame's numbers exactly; a random one not."""
    import argparse

    from gfpgan.tools.bench_temporal import e2e_table, end_to_end
    from gfpgan.tools.synth_video import make_clip_pair

    make_clip_pair(tmp_path / "clip", frames=4, size=192)
    args = argparse.Namespace(out=str(tmp_path / "work"), model=fusion_files["base"], device="cpu",
                              temporal=fusion_files["zero"])
    zero = end_to_end(args, [str(tmp_path / "clip")])
    assert zero["temporal"] == zero["per_frame"] and zero["temporal"]["clips"] == 1
    assert 5 < zero["per_frame"]["face_psnr"] < 60 and zero["input"]["face_warping_error"] > 0
    assert zero["per_frame"]["face_psnr"] != zero["input"]["face_psnr"]  # faces were found and restored
    args.temporal = fusion_files["trained"]
    rand = end_to_end(args, [str(tmp_path / "clip")])
    assert rand["per_frame"] == zero["per_frame"]
    assert rand["temporal"]["face_psnr"] != zero["per_frame"]["face_psnr"]
    assert "| given clips (infer_video), 1 clip(s) |" in e2e_table(rand, "given clips (infer_video)")


@pytest.mark.parametrize("shift", [(1.0, -1.0), (1.5, 0.5), (0.0, 0.0), (-0.5, 1.5)])
def test_motion_refinement_finds_the_residual_translation(shift):
    """Told the identity while the face moved by a sub-pixel or one-pixel shift, the refinement
    returns that shift (on its S/128 grid); the module still starts as the base."""
    base = _base()
    net = TemporalGFPGAN(base, num_scales=0, fusion=True, motion_refine=True).eval()
    x0 = _face(0)
    x1 = _moved(x0, similarity(0.0, 1.0, shift[0], shift[1], S))
    with torch.no_grad():
        _, _, st = net(x0, None, None, randomize_noise=False)
        est = net.refine_motion(x1, st, torch.eye(2, 3)[None])
        out, _, _ = net(x1, st, torch.eye(2, 3)[None], randomize_noise=False)
        ref = base(x1, return_rgb=False, randomize_noise=False)[0]
    assert est[0, :, 2].tolist() == list(shift) and torch.equal(est[0, :, :2], torch.eye(2))
    assert torch.equal(out, ref)
