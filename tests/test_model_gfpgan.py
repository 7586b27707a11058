"""GFPGANModel: one full-recipe step (log keys, gradients, frozen nets), pyramid removal, EMA,
non-finite skip, resume equivalence and the helpers' values."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from gfpgan.errors import UserError
from gfpgan.models import GFPGANModel
from gfpgan.models.components import build_optimizer, component_crop_size, crop_components, image_pyramid
from tests.helpers import CPU, S, one_thread, tiny_batch, tiny_opt  # noqa: F401  (autouse fixture)

RECIPE_KEYS = {"l_g_pix", "l_p_8", "l_p_16", "l_p_32", "l_g_percep", "l_g_style", "l_g_gan",
               "l_g_gan_left_eye", "l_g_gan_right_eye", "l_g_gan_mouth", "l_g_comp_style_loss", "l_identity",
               "l_d", "real_score", "fake_score", "l_d_r1", "l_d_left_eye", "l_d_right_eye", "l_d_mouth",
               "skipped"}


def _flat(net):
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_model_owns_its_options_and_meets_the_trainer_contract():
    from gfpgan.engine.ema import DEFAULT_EMA_DECAY
    from gfpgan.engine.train_model import TrainModel
    from gfpgan.options import train_schema, validate

    opt = tiny_opt(identity=False, perceptual=False, components=False)
    del opt["train"]["L1_opt"]
    model = GFPGANModel(opt, CPU)
    assert isinstance(model, TrainModel)
    assert model.train_opt["ema_decay"] == DEFAULT_EMA_DECAY == model.ema.decay  # one default, in the schema
    assert model.train_opt["L1_opt"] == {"type": "L1Loss", "loss_weight": 1.0}
    assert set(model.nets) == {"net_g", "net_d"} and model.nets["net_d"].module is model.net_d
    opt["train"]["r1_reg_weight"] = -1
    with pytest.raises(UserError, match="'train.r1_reg_weight' .* must be >= 0.0"):
        GFPGANModel(opt, CPU)
    # the experiment schema is the trainer's keys joined with the model's: a typo is caught there
    whole = {"name": "n", "datasets": {"train": {"type": "X"}}, "network_g": {"type": "G"},
             "train": {"optim_g": {"type": "Adam"}, "total_iter": 5, "net_d_reg_evry": 4}}
    with pytest.raises(UserError, match="did you mean 'net_d_reg_every'"):
        validate(whole, train_schema("GFPGANModel"))


def test_full_recipe_step_logs_gradients_and_frozen_networks():
    torch.manual_seed(0)
    model = GFPGANModel(tiny_opt(), CPU)
    logs = model.train_step(tiny_batch(), 16)  # 16 % net_d_reg_every == 0: lazy R1 runs
    assert set(logs) == RECIPE_KEYS
    assert all(math.isfinite(v) for v in logs.values()) and logs["skipped"] == 0.0
    assert logs["l_d_r1"] > 0 and logs["l_identity"] > 0 and logs["l_g_comp_style_loss"] > 0

    g = model.net_g
    decoder = {id(p) for p in g.stylegan_decoder.parameters()}
    for name, p in g.named_parameters():
        if id(p) in decoder:  # fix_decoder: the StyleGAN2 prior is frozen
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    for key in ("net_d", "net_d_left_eye", "net_d_right_eye", "net_d_mouth"):
        for name, p in model.trainable_nets()[key].named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{key}.{name}"
    frozen = list(model.cri_identity.net.parameters()) + list(model.cri_perceptual.vgg.parameters())
    assert frozen and all(p.grad is None and not p.requires_grad for p in frozen)
    # Frozen networks get no optimizer state; every trainable parameter is in exactly one optimizer.
    in_optim = {id(p) for o in model.optimizers.values() for grp in o.param_groups for p in grp["params"]}
    assert not in_optim & (decoder | {id(p) for p in frozen})
    assert {id(p) for p in g.parameters() if p.requires_grad} <= in_optim
    assert not any(id(p) in decoder for o in model.optimizers.values() for p in o.state)
    assert set(model.networks_to_save()) == {"net_g", "net_g_ema", "net_d", "net_d_left_eye",
                                             "net_d_right_eye", "net_d_mouth"}


def test_optimizer_hyper_parameters_follow_options_and_lazy_ratio():
    model = GFPGANModel(tiny_opt(identity=False, perceptual=False), CPU)
    og, od, oc = (model.optimizers[k].param_groups[0] for k in ("net_g", "net_d", "net_d_mouth"))
    assert og["lr"] == pytest.approx(2e-3) and og["betas"] == (0.0, 0.99)
    assert od["lr"] == pytest.approx(2e-3 * 16 / 17) and od["betas"][1] == pytest.approx(0.99 ** (16 / 17))
    assert od["betas"][0] == 0.0 and oc["betas"] == (0.9, 0.99)
    block = {"type": "AdamW", "lr": 1.0, "betas": [0.5, 0.9], "weight_decay": 0.1}
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], block, reg_ratio=0.5)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["weight_decay"] == 0.1
    assert opt.param_groups[0]["betas"] == pytest.approx((0.5 ** 0.5, 0.9 ** 0.5))
    assert not opt.param_groups[0]["fused"]  # fused is the default on CUDA only


@pytest.mark.gpu
def test_adam_is_fused_on_cuda_unless_the_options_say_otherwise():
    p = [torch.nn.Parameter(torch.zeros(3, device="cuda"))]
    assert build_optimizer(p, {"type": "Adam", "lr": 1.0}).param_groups[0]["fused"] is True
    assert not build_optimizer(p, {"type": "Adam", "lr": 1.0, "foreach": True}).param_groups[0]["fused"]


def test_pyramid_loss_turns_off_cleanly():
    torch.manual_seed(0)
    model = GFPGANModel(tiny_opt(identity=False, perceptual=False, components=False, remove_pyramid=1), CPU)
    logs = model.train_step(tiny_batch(), 1)
    assert {"l_p_8", "l_p_16", "l_p_32"} <= set(logs)
    torgb = list(model.net_g.toRGB.parameters())
    assert all(p.grad is not None for p in torgb)
    before = [p.detach().clone() for p in torgb]
    other_before = _flat(model.net_g.final_linear)
    logs = model.train_step(tiny_batch(seed=1), 2)
    assert not any(k.startswith("l_p_") for k in logs) and logs["skipped"] == 0.0
    # The pyramid branch is out of the graph: no gradient, no update; the rest still trains.
    assert all(p.grad is None and not p.requires_grad for p in torgb)
    assert all(torch.equal(a, p) for a, p in zip(before, torgb))
    assert not torch.equal(other_before, _flat(model.net_g.final_linear))
    assert model._pyramid_unused == {n for n, _ in model.net_g.named_parameters() if n.startswith("toRGB.")}


def test_ema_update_and_non_finite_step_is_skipped():
    torch.manual_seed(0)
    model = GFPGANModel(tiny_opt(identity=False, perceptual=False, components=False), CPU)
    ema0 = _flat(model.ema.module)
    assert torch.equal(ema0, _flat(model.net_g))  # the EMA starts as a copy of G
    model.train_step(tiny_batch(), 1)
    d = model.ema.decay
    assert d == pytest.approx(0.5 ** (32 / 10000))
    torch.testing.assert_close(_flat(model.ema.module), d * ema0 + (1 - d) * _flat(model.net_g))

    states = {k: _flat(n) for k, n in model.trainable_nets().items()}
    ema1 = _flat(model.ema.module)
    bad = tiny_batch(seed=2)
    bad["gt"][0, 0, 0, 0] = float("nan")
    logs = model.train_step(bad, 2)
    assert logs["skipped"] == 1.0
    assert all(torch.equal(states[k], _flat(n)) for k, n in model.trainable_nets().items())
    assert torch.equal(ema1, _flat(model.ema.module))
    assert model.train_step(tiny_batch(seed=3), 3)["skipped"] == 0.0


def test_state_dict_round_trip_resumes_identically():
    opt = tiny_opt(identity=False, perceptual=False, components=False)
    torch.manual_seed(0)
    a = GFPGANModel(opt, CPU)
    for it in (1, 2):
        a.train_step(tiny_batch(seed=it), it)
        a.update_learning_rate(it)
    state = copy.deepcopy(a.state_dict())
    torch.manual_seed(123)
    b = GFPGANModel(opt, CPU)  # different initial weights, replaced by the state
    b.load_state_dict(state)
    for m in (a, b):
        torch.manual_seed(7)
        logs = m.train_step(tiny_batch(seed=3), 3)
    for k in a.trainable_nets():
        torch.testing.assert_close(_flat(a.trainable_nets()[k]), _flat(b.trainable_nets()[k]), rtol=0, atol=0)
    torch.testing.assert_close(_flat(a.ema.module), _flat(b.ema.module), rtol=0, atol=0)
    assert set(a.networks_to_save()) == {"net_g", "net_g_ema", "net_d"}
    net, arch, kwargs = a.networks_to_save()["net_g_ema"]
    assert net is a.ema.module and arch == "GFPGANv1" and kwargs["out_size"] == S and "type" not in kwargs
    # restore() uses the EMA generator in eval mode: fixed noise, deterministic.
    lq = tiny_batch()["lq"]
    out1, out2 = a.restore(lq), a.restore(lq)
    assert out1.shape == (2, 3, S, S) and torch.equal(out1, out2)
    vis = a.last_visuals()
    assert set(vis) == {"lq", "output", "gt"} and vis["gt"].shape == (2, 3, S, S)
    assert logs["skipped"] == 0.0


def test_bad_options_raise_user_errors(tmp_path):
    opt = tiny_opt(identity=False, perceptual=False)
    del opt["network_d_mouth"]
    with pytest.raises(UserError, match="network_d_mouth"):
        GFPGANModel(opt, CPU)
    opt = tiny_opt(identity=False, perceptual=False, components=False)
    opt["path"]["pretrain_network_g"] = str(tmp_path / "missing.pth")
    with pytest.raises(UserError, match="missing.pth"):
        GFPGANModel(opt, CPU)


def test_component_crops_and_pyramid_values():
    assert [component_crop_size("left_eye", s) for s in (128, 512, 1024)] == [20, 80, 160]
    assert component_crop_size("mouth", 512) == 120 and component_crop_size("mouth", 256) == 60
    # An image whose value is its x coordinate: the crop samples bin centres of the box.
    xs = torch.arange(64, dtype=torch.float32).view(1, 1, 1, 64).expand(2, 3, 64, 64).contiguous()
    box = torch.tensor([[8.0, 16.0, 28.0, 36.0], [30.0, 2.0, 50.0, 22.0]])
    crops = crop_components(xs, {"left_eye": box}, out_size=128)["left_eye"]
    assert crops.shape == (2, 3, 20, 20)
    expected0 = 8 + (torch.arange(20) + 0.5) * 20 / 20
    torch.testing.assert_close(crops[0, 0, 5], expected0)
    torch.testing.assert_close(crops[1, 2, 0], expected0 + 22)
    gt = torch.rand(1, 3, 32, 32)
    pyr = image_pyramid(gt, 3)
    assert [p.shape[-1] for p in pyr] == [8, 16, 32] and pyr[-1] is gt
    torch.testing.assert_close(pyr[0], F.interpolate(pyr[1], scale_factor=0.5, mode="bilinear",
                                                     align_corners=False))


def test_pretrained_generator_and_ema_load_from_an_official_style_file(tmp_path):
    opt = tiny_opt(identity=False, perceptual=False, components=False)
    torch.manual_seed(1)
    src = GFPGANModel(opt, CPU)
    params = {k: v.clone() for k, v in src.net_g.state_dict().items()}
    ema = {k: v + 1.0 if v.is_floating_point() else v for k, v in params.items()}
    torch.save({"params": params, "params_ema": ema}, tmp_path / "net_g.pth")
    torch.save({"params": src.net_d.state_dict()}, tmp_path / "net_d.pth")
    opt["path"] = {"pretrain_network_g": str(tmp_path / "net_g.pth"), "param_key_g": "params",
                   "pretrain_network_d": str(tmp_path / "net_d.pth")}
    torch.manual_seed(2)
    model = GFPGANModel(opt, CPU)
    key = "final_linear.weight"
    assert torch.equal(model.net_g.state_dict()[key], params[key])
    assert torch.equal(model.ema.module.state_dict()[key], ema[key])  # the EMA gets params_ema
    assert torch.equal(_flat(model.net_d), _flat(src.net_d))
    opt["path"]["param_key_g"] = "params_ema"
    model = GFPGANModel(opt, CPU)
    assert torch.equal(model.net_g.state_dict()[key], ema[key])
    assert torch.equal(model.ema.module.state_dict()[key], ema[key])


def test_pretrained_files_load_as_basicsr_reads_strict_and_param_key(tmp_path):
    opt = tiny_opt(identity=False, perceptual=False, components=False)
    torch.manual_seed(1)
    src = GFPGANModel(opt, CPU)
    params = {k: v.clone() for k, v in src.net_g.state_dict().items()}
    # a file saved without an EMA, with one key the network lacks; D's file lacks one of D's keys
    torch.save({"params": {**params, "extra.weight": torch.ones(1)}}, tmp_path / "net_g.pth")
    d_state = src.net_d.state_dict()
    dropped = next(iter(d_state))
    torch.save({"params": {k: v for k, v in d_state.items() if k != dropped}}, tmp_path / "net_d.pth")
    # the reference's values: param_key_g: params_ema, strict_load_g: ~ (and strict_load_d: ~)
    opt["path"] = {"pretrain_network_g": str(tmp_path / "net_g.pth"), "param_key_g": "params_ema",
                   "strict_load_g": None, "pretrain_network_d": str(tmp_path / "net_d.pth"),
                   "strict_load_d": None}
    torch.manual_seed(2)
    model = GFPGANModel(opt, CPU)
    assert model.path_opt["strict_load_g"] is False and model.path_opt["strict_load_d"] is False
    key = "final_linear.weight"
    # no params_ema in the file: BasicSR loads its 'params', into net_g and into the EMA
    assert torch.equal(model.net_g.state_dict()[key], params[key])
    assert torch.equal(model.ema.module.state_dict()[key], params[key])
    assert all(torch.equal(model.net_d.state_dict()[k], v) for k, v in d_state.items() if k != dropped)
    for strict in ("strict_load_g", "strict_load_d"):  # true: the extra / missing key is an error
        with pytest.raises(UserError, match="does not match"):
            GFPGANModel({**opt, "path": {**opt["path"], strict: True}}, CPU)
    # param_key_g: ~ reads the whole file as the state dict (a bare one)
    torch.save(params, tmp_path / "bare.pth")
    bare = {"pretrain_network_g": str(tmp_path / "bare.pth"), "param_key_g": None}
    model = GFPGANModel({**opt, "path": bare}, CPU)
    assert torch.equal(model.net_g.state_dict()[key], params[key])
    torch.save({"weights": params}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="has neither 'params_ema' nor 'params'"):
        GFPGANModel({**opt, "path": {"pretrain_network_g": str(tmp_path / "other.pth")}}, CPU)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_autocast_step_with_r1_is_finite(amp):
    opt = tiny_opt(identity=False, perceptual=False, components=False, reg_every=1)
    opt["train"]["amp"] = amp
    torch.manual_seed(0)
    model = GFPGANModel(opt, CPU)
    assert (model.scaler is not None) == (amp == "fp16")
    before = _flat(model.net_d)
    # fp16's GradScaler skips steps whose scaled gradients overflow while it calibrates its scale.
    for it in range(1, 7):
        logs = model.train_step(tiny_batch(seed=it), it)
        assert logs["skipped"] == 0.0 and math.isfinite(logs["l_d_r1"]) and logs["l_d_r1"] > 0
        if not torch.equal(before, _flat(model.net_d)):
            break
    assert not torch.equal(before, _flat(model.net_d)), "the discriminator never stepped"
    assert model.restore(tiny_batch()["lq"]).dtype == torch.float32


@pytest.mark.slow  # torch.compile of five networks (about a minute on one core)
def test_compiled_step_matches_eager_including_the_eager_r1_pass():
    def run(compile_mode):
        torch.manual_seed(0)
        opt = tiny_opt(identity=False, perceptual=False, reg_every=2)
        opt["train"]["compile"] = compile_mode
        model = GFPGANModel(opt, CPU)
        logs = [model.train_step(tiny_batch(seed=i), i) for i in (1, 2)]  # step 2 runs R1
        return model, logs

    eager, eager_logs = run(False)
    compiled, compiled_logs = run(True)
    assert isinstance(compiled.nets["net_d"].call, torch._dynamo.eval_frame.OptimizedModule)
    assert "l_d_r1" in compiled_logs[1] and compiled_logs[1]["skipped"] == 0.0
    for a, b in zip(eager_logs, compiled_logs):
        assert a.keys() == b.keys()
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-3, abs=1e-5), k
    for name, net in eager.trainable_nets().items():
        for (pn, p), q in zip(net.named_parameters(), compiled.trainable_nets()[name].parameters()):
            torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-5, msg=f"{name}.{pn}")
