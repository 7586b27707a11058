"""The recurrent temporal adapter: bit-identical start, disabled = per-frame, state alignment, the
gate on cuts, per-track batching, gradients, and the motion helpers it relies on."""

import cv2
import numpy as np
import pytest
import torch

from gfpgan.archs import GFPGANv1, GFPGANv1Clean, TemporalGFPGAN
from gfpgan.archs.temporal_arch import TemporalStep, cat_states, reset_state, select_state
from gfpgan.errors import UserError
from gfpgan.motion import relative_affine, similarity, valid_mask, warp_previous
from gfpgan.networks import build_network

KW = dict(num_style_feat=64, channel_multiplier=1, narrow=0.125, input_is_latent=True, different_w=True,
          sft_half=True, fix_decoder=False)
S = 64


def _base(cls=GFPGANv1Clean, seed=0):
    torch.manual_seed(seed)
    return cls(out_size=S, **KW).eval()


def _face(seed=0, size=S):
    """A smooth random image (B=1) in [-1, 1], like a face's low frequencies."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), size / 16)
    img = (img - img.min()) / (img.max() - img.min())
    return torch.from_numpy(img * 2 - 1).permute(2, 0, 1)[None].contiguous()


def _moved(x, rel):
    """``x`` (1, 3, S, S) moved by the pixel affine ``rel`` (what crop t looks like)."""
    img = x[0].permute(1, 2, 0).numpy()
    out = cv2.warpAffine(img, np.asarray(rel, np.float64), (S, S), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT101)
    return torch.from_numpy(out).permute(2, 0, 1)[None].contiguous()


def _randomise_adapter(net, seed=1):
    g = torch.Generator().manual_seed(seed)
    for p in list(net.cells.parameters()) + list(net.proj.parameters()):
        p.data = torch.randn(p.shape, generator=g) * 0.2


R = torch.tensor(similarity(4.0, 1.03, 3.0, -2.0, S), dtype=torch.float32)[None]


@pytest.mark.parametrize("cls", [GFPGANv1Clean, GFPGANv1])
def test_at_initialisation_the_output_is_the_base_output_bit_for_bit(cls):
    base = _base(cls)
    net = TemporalGFPGAN(base).eval()
    state = net.init_state(1)
    x = _face(0)
    with torch.no_grad():
        for _ in range(3):
            ref, ref_rgbs = base(x, return_rgb=True)
            out, rgbs, state = net(x, state, R, return_rgb=True)
            assert torch.equal(out, ref)
            assert all(torch.equal(a, b) for a, b in zip(rgbs, ref_rgbs))
            x = _moved(x, R[0])
    assert float(state.gate) > 0.5 and state.hidden[0].abs().sum() > 0  # the state is really carried


@pytest.mark.parametrize("cls", [GFPGANv1Clean, GFPGANv1])
def test_official_layout_loads_strictly_into_base_and_starts_equal(tmp_path, cls):
    base = _base(cls, seed=3)
    path = tmp_path / "GFPGANtiny.pth"
    torch.save({"params_ema": base.state_dict()}, path)
    net = TemporalGFPGAN(build_network(path)).eval()
    x = _face(1)
    with torch.no_grad():
        assert torch.equal(net.step(x, net.init_state(1), R)[0], base(x)[0])
    # the other way round: a fresh adapter built from options, the official dict loaded into .base
    fresh = TemporalGFPGAN(dict(type=cls.__name__, out_size=S, **KW), num_scales=2).eval()
    fresh.base.load_state_dict(torch.load(path, weights_only=True)["params_ema"], strict=True)
    with torch.no_grad():
        assert torch.equal(fresh.step(x, fresh.init_state(1), R)[0], base(x)[0])
    own = {k for k in fresh.state_dict() if not k.startswith("base.")}
    assert own and all(k.startswith(("cells.", "proj.")) for k in own)


def test_disabled_is_the_per_frame_generator():
    base = _base()
    net = TemporalGFPGAN(base).eval()
    _randomise_adapter(net)
    x0, x1 = _face(0), _moved(_face(0), R[0])
    with torch.no_grad():
        _, st = net.step(x0, net.init_state(1), R)
        on = net.step(x1, st, R)[0]
        net.enabled = False
        off, st_off = net.step(x1, st, R)
        ref = base(x1)[0]
    assert not torch.equal(on, ref) and (on - ref).abs().max() > 1e-3  # the adapter does act
    assert torch.equal(off, ref)
    assert st_off is st


def test_warp_follows_opencv_and_lands_where_the_face_moved():
    x = _face(2)
    moved = _moved(x, R[0])
    warped, cover = warp_previous(x, R, S)
    m = valid_mask(cover)[0, 0]
    ref = torch.from_numpy(cv2.warpAffine(x[0].permute(1, 2, 0).numpy(), R[0].double().numpy(), (S, S)))
    assert (warped[0].permute(1, 2, 0) - ref)[m].abs().max() < 1e-5
    # a blob of a coarse state (16 px for a 64 px crop) lands where the similarity moves its centre
    state = torch.zeros(1, 1, 16, 16)
    state[0, 0, 5, 10] = 1.0  # centre of cell (10, 5) = crop pixel (10.5 * 4 - 0.5, 5.5 * 4 - 0.5)
    w, _ = warp_previous(state, R, S)
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    cx, cy = float((w[0, 0] * xs).sum() / w.sum()), float((w[0, 0] * ys).sum() / w.sum())
    px = R[0] @ torch.tensor([10.5 * 4 - 0.5, 5.5 * 4 - 0.5, 1.0])
    assert abs(cx - (px[0] + 0.5) / 4 + 0.5) < 0.15 and abs(cy - (px[1] + 0.5) / 4 + 0.5) < 0.15
    # through the module: the right transform makes the previous frame agree with the moved face
    net = TemporalGFPGAN(_base()).eval()
    with torch.no_grad():
        _, st = net.step(x, net.init_state(1), R)
        aligned = net.gate(moved, st, R)[0]
        unaligned = net.gate(moved, st, torch.eye(2, 3)[None])[0]
    inner = aligned[0, 0, 4:-4, 4:-4]
    assert inner.mean() > 0.9 and unaligned[0, 0, 4:-4, 4:-4].mean() < inner.mean() - 0.1


def test_gate_closes_on_a_cut_and_is_zero_on_a_first_frame():
    net = TemporalGFPGAN(_base()).eval()
    x = _face(0)
    with torch.no_grad():
        _, st = net.step(x, net.init_state(1), R)
        assert float(st.gate) == 0.0  # a new track trusts nothing
        _, same = net.step(_moved(x, R[0]), st, R)
        _, cut = net.step(_face(7), st, R)
    assert float(same.gate) > 0.85  # (the border the previous crop does not cover counts as 0)
    assert float(cut.gate) < 0.1


def test_tracks_batched_together_equal_each_alone_and_reset_per_row():
    net = TemporalGFPGAN(_base()).eval()
    _randomise_adapter(net)
    xa, xb = _face(0), _face(5)
    ra = R
    a_prev, a_cur = similarity(2, 1.1, 1, 0, S), similarity(-3, 0.98, -2, 1, S)
    rb = torch.tensor(relative_affine(a_prev, a_cur), dtype=torch.float32)[None]
    p = np.array([10.0, 20.0, 1.0])  # a frame point: crop t-1 -> crop t by rb = its crop t position
    assert np.allclose(rb[0].double().numpy() @ np.append(a_prev @ p, 1.0), a_cur @ p, atol=1e-4)
    with torch.no_grad():
        sa, sb, sab = net.init_state(1), net.init_state(1), net.init_state(2)
        for _ in range(3):
            oa, sa = net.step(xa, sa, ra)
            ob, sb = net.step(xb, sb, rb)
            oab, sab = net.step(torch.cat([xa, xb]), sab, torch.cat([ra, rb]))
            xa, xb = _moved(xa, ra[0]), _moved(xb, rb[0])
    assert (oab - torch.cat([oa, ob])).abs().max() < 1e-4
    for h_ab, h_a, h_b in zip(sab.hidden, sa.hidden, sb.hidden):
        assert (h_ab - torch.cat([h_a, h_b])).abs().max() < 1e-4
    both = cat_states([sa, sb])
    assert torch.equal(select_state(both, [1]).hidden[0], sb.hidden[0])
    r = reset_state(both, torch.tensor([True, False]))
    assert float(r.hidden[0][0].abs().sum()) == 0.0 and float(r.valid[0]) == 0.0
    assert torch.equal(r.hidden[0][1], sb.hidden[0][0])


def test_gradients_reach_projection_then_gru_and_not_the_frozen_base():
    net = TemporalGFPGAN(_base(), freeze_base=True).train()
    clip = torch.cat([_face(0), _moved(_face(0), R[0])])[None]  # (1, 2, 3, S, S)
    rels = R.expand(2, 2, 3)[None]
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    grads = []
    for _ in range(2):
        opt.zero_grad()
        out, _, _ = net.forward_clip(clip, rels, randomize_noise=False)
        out.square().mean().backward()
        grads.append(({n: p.grad.abs().sum().item() for n, p in net.proj.named_parameters()},
                      {n: p.grad.abs().sum().item() for n, p in net.cells.named_parameters()}))
        opt.step()
    assert all(v > 0 for v in grads[0][0].values())  # the zero projection learns at once
    assert all(v == 0 for v in grads[0][1].values())  # ... the GRU behind it only after that
    assert all(v > 0 for v in grads[1][1].values())
    assert all(p.grad is None for p in net.base.parameters())


def test_bad_state_and_clip_shapes_are_user_errors():
    net = TemporalGFPGAN(_base(), num_scales=2)
    other = TemporalGFPGAN(_base(), num_scales=3)
    x = _face(0)
    with pytest.raises(UserError, match="temporal state does not fit"):
        net.step(x, other.init_state(1), R)
    with pytest.raises(UserError, match="temporal state does not fit"):
        net.step(x, net.init_state(2), R)
    with pytest.raises(UserError, match="a clip is"):
        net.forward_clip(x, R)
    with pytest.raises(UserError, match="num_scales"):
        TemporalGFPGAN(_base(), num_scales=5)
    with pytest.raises(UserError, match="wraps a GFP-GAN generator"):
        TemporalGFPGAN(torch.nn.Conv2d(3, 3, 1))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # shape checks become constants
def test_one_step_exports_to_onnx_and_matches_pytorch(tmp_path):
    net = TemporalGFPGAN(_base(), num_scales=2).eval()
    _randomise_adapter(net)
    onnx_step_matches_pytorch(net, R, tmp_path)


def onnx_step_matches_pytorch(net, rel, tmp_path):
    """One exported step of ``net`` (with a trained-like state) against PyTorch, and the state mattered."""
    import onnxruntime as ort

    step = TemporalStep(net).eval()
    x0, x1 = _face(0), _moved(_face(0), rel[0])
    with torch.no_grad():
        _, st = net.step(x0, net.init_state(1), rel)
        args = (x1, rel, *st.hidden, st.prev_input, st.valid, st.gate)
        ref = step(*args)
    path = tmp_path / "step.onnx"
    torch.onnx.export(step, args, str(path), opset_version=20, dynamo=False,
                      input_names=["input", "rel_affine", "h0", "h1", "prev_input", "valid", "gate"])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)})
    assert len(got) == len(ref) == 6
    for g, r in zip(got, ref):
        assert np.abs(g - r.numpy()).max() < 1e-4
    assert np.abs(got[0] - _base()(x1)[0].detach().numpy()).max() > 1e-3  # the state mattered
