"""StyleGAN2Model (issue 27): one step's losses, regularisers and EMA, the path-length penalty's
value, the discriminator augmentation, FID plumbing, and the tiny recipe end to end: it trains,
resumes bit-exactly after a kill, logs sample grids, and GFP-GAN reads its prior unchanged."""

import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gfpgan.errors import UserError
from gfpgan.losses import PathLengthPenalty
from gfpgan.models import StyleGAN2Model
from gfpgan.models.stylegan2_augment import DiscriminatorAugment, cutout, translation
from tests.helpers import CPU, REPO, final_weights, make_faces, one_thread, train_main  # noqa: F401

S = 16


def tiny_sg2(**train):
    return {
        "network_g": {"type": "StyleGAN2Generator", "out_size": S, "num_style_feat": 16, "num_mlp": 2,
                      "channel_multiplier": 1, "narrow": 1 / 16},
        "network_d": {"type": "StyleGAN2Discriminator", "out_size": S, "channel_multiplier": 1,
                      "narrow": 1 / 16},
        "train": {"optim_g": {"type": "Adam", "lr": 2e-3}, "optim_d": {"type": "Adam", "lr": 2e-3},
                  "net_d_reg_every": 2, "net_g_reg_every": 3, "ema_decay": 0.9, **train},
    }


def _real(b=4, seed=0):
    return {"gt": torch.rand(b, 3, S, S, generator=torch.Generator().manual_seed(seed)) * 2 - 1}


def _flat(net):
    return torch.cat([p.detach().flatten() for p in net.parameters()])


# ------------------------------------------------------------------ the model
def test_step_losses_lazy_regularisers_ema_and_optimizers():
    from gfpgan.engine.train_model import TrainModel

    torch.manual_seed(0)
    model = StyleGAN2Model(tiny_sg2(), CPU)
    assert isinstance(model, TrainModel)
    # StyleGAN2's lazy-regularisation ratio on lr and betas: c = k / (k + 1)
    g, d = model.optimizers["net_g"].param_groups[0], model.optimizers["net_d"].param_groups[0]
    assert g["lr"] == pytest.approx(2e-3 * 3 / 4) and g["betas"][1] == pytest.approx(0.99 ** 0.75)
    assert d["lr"] == pytest.approx(2e-3 * 2 / 3) and d["betas"] == pytest.approx((0.0, 0.99 ** (2 / 3)))

    seen = {}
    for it in (1, 2, 3):
        g_before, ema_before = _flat(model.net_g), _flat(model.ema.module)
        d_before = _flat(model.net_d)
        logs = model.train_step(_real(seed=it), it)
        seen[it] = set(logs)
        assert all(math.isfinite(v) for v in logs.values()) and logs["skipped"] == 0.0
        assert not torch.equal(_flat(model.net_d), d_before) and not torch.equal(_flat(model.net_g), g_before)
        # EMA: decay * old EMA + (1 - decay) * the new generator
        assert torch.allclose(_flat(model.ema.module), 0.9 * ema_before + 0.1 * _flat(model.net_g), atol=1e-6)
        assert all(p.requires_grad for p in model.net_d.parameters())  # D unfrozen again
    base = {"l_d", "real_score", "fake_score", "l_g_gan", "skipped"}
    assert seen[1] == base
    assert seen[2] == base | {"l_d_r1"}  # 2 % net_d_reg_every == 0
    assert seen[3] == base | {"l_g_path", "path_length"}  # 3 % net_g_reg_every == 0
    assert model.cri_path.mean.item() > 0  # the running mean moved from 0

    # no regulariser at weight 0: plain lr, no lazy step
    model = StyleGAN2Model(tiny_sg2(r1_reg_weight=0, path_reg_weight=0), CPU)
    lrs = [o.param_groups[0]["lr"] for o in model.optimizers.values()]
    assert lrs == [2e-3, 2e-3]
    assert set(model.train_step(_real(), 6)) == base


def test_style_mixing_crosses_over_and_visuals_draw_no_randomness():
    torch.manual_seed(0)
    model = StyleGAN2Model(tiny_sg2(mixing_prob=1.0), CPU)
    styles, cross = model._styles(3)
    assert len(styles) == 2 and 1 <= cross < model.num_latent
    model = StyleGAN2Model(tiny_sg2(mixing_prob=0.0), CPU)
    styles, cross = model._styles(3)
    assert len(styles) == 1 and cross is None and styles[0].shape == (3, 16)

    model.train_step(_real(), 1)
    state = torch.get_rng_state()
    vis = model.last_visuals()
    assert torch.equal(torch.get_rng_state(), state)  # grids never shift the training stream
    assert {k: tuple(v.shape) for k, v in vis.items()} == {k: (4, 3, S, S) for k in ("lq", "output", "gt")}
    assert torch.equal(vis["gt"], _real()["gt"])
    again = model.last_visuals()  # fixed latents and noise: the same grid
    assert torch.equal(again["output"], vis["output"]) and not torch.equal(vis["lq"], vis["output"])


def test_refuses_other_generators_and_a_val_dataset():
    opt = tiny_sg2()
    opt["network_g"]["type"] = "GFPGANv1"
    with pytest.raises(UserError, match="StyleGAN2Generator or StyleGAN2GeneratorClean"):
        StyleGAN2Model(opt, CPU)
    opt = dict(tiny_sg2(), datasets={"val": {"type": "PairedImageDataset"}})
    with pytest.raises(UserError, match="validated by FID"):
        StyleGAN2Model(opt, CPU)
    model = StyleGAN2Model(tiny_sg2(), CPU)
    with pytest.raises(UserError, match="restores none"):
        model.restore(torch.zeros(1, 3, S, S))


def test_path_length_penalty_value_and_running_mean():
    """Images linear in the latents: the path length is c * ||y|| for the random direction y."""
    b, h, w = 3, 4, 5
    c = torch.tensor(0.7, requires_grad=True)  # the "generator's" one parameter
    latents = torch.randn(b, 1, 3 * h * w, requires_grad=True)
    images = c * latents.view(b, 3, h, w)
    pl = PathLengthPenalty(decay=0.25)
    torch.manual_seed(0)
    penalty, lengths = pl(images, latents)
    torch.manual_seed(0)
    y = torch.randn(b, 3, h, w) / math.sqrt(h * w)
    expected = c.detach() * y.flatten(1).norm(dim=1)
    assert torch.allclose(lengths, expected, atol=1e-6)
    mean = 0.25 * expected.mean()  # lerp from 0
    assert pl.mean.item() == pytest.approx(mean.item(), rel=1e-6)
    assert penalty.item() == pytest.approx((expected - mean).pow(2).mean().item(), rel=1e-5)
    # differentiable w.r.t. the generator's parameters: d/dc mean((c a - m)^2) = mean(2 (c a - m) a)
    (g,) = torch.autograd.grad(penalty, c)
    a = expected / 0.7
    assert g.item() == pytest.approx((2 * (expected - mean) * a).mean().item(), rel=1e-5)
    # a reduce hook replaces the batch mean (other ranks' lengths)
    pl2 = PathLengthPenalty(decay=1.0)
    pl2(c * latents.view(b, 3, h, w), latents, reduce=lambda t: t * 0 + 5.0)
    assert pl2.mean.item() == 5.0


# ------------------------------------------------------------------ augmentation
def test_augment_ops_are_shifts_and_holes_and_differentiable():
    torch.manual_seed(0)
    x = torch.zeros(16, 1, 16, 16)
    x[:, :, 8, 8] = 1.0
    out = translation(x)
    for i in range(16):  # the dot moved by whole pixels, at most 1/8 of the side, nothing else
        ys, xs = torch.nonzero(out[i, 0], as_tuple=True)
        assert len(ys) == 1 and abs(int(ys) - 8) <= 2 and abs(int(xs) - 8) <= 2
    assert any(not torch.equal(out[i], x[i]) for i in range(16))
    ones = torch.ones(16, 1, 16, 16, requires_grad=True)
    holes = cutout(ones)
    zeros = (holes == 0).sum(dim=[1, 2, 3])
    assert zeros.max() <= 64 and zeros.min() >= 16 and (zeros == 64).any()  # an 8x8 square, maybe clipped
    holes.sum().backward()
    assert torch.equal(ones.grad, (holes != 0).float())  # gradient = the mask


def test_ada_probability_follows_the_overfitting_heuristic():
    aug = DiscriminatorAugment(["color", "translation", "cutout"], p=0.0, adaptive=True, target=0.6,
                               interval=2, kimg=0.1)
    x = torch.randn(4, 3, 8, 8)
    assert aug(x) is x  # p = 0: untouched
    aug.observe(1.0, 8)
    assert aug.p == 0.0  # adjusted every 2 iterations only
    aug.observe(0.8, 8)  # r_t = 0.9 > 0.6: p += 16 / 100
    assert aug.p == pytest.approx(0.16)
    aug.observe(0.0, 8)
    aug.observe(0.2, 8)  # r_t = 0.1 < 0.6: p -= 0.16
    assert aug.p == pytest.approx(0.0)
    aug.observe(-1.0, 8)
    aug.observe(-1.0, 8)
    assert aug.p == 0.0  # clamped
    state = dict(aug.state_dict())
    aug.observe(1.0, 8)
    aug.load_state_dict(state)
    assert aug.state_dict() == state
    fixed = DiscriminatorAugment(["color"], p=1.0)
    fixed.observe(1.0, 8)
    fixed.observe(1.0, 8)
    assert fixed.p == 1.0 and not torch.equal(fixed(x), x)


# ------------------------------------------------------------------ FID
def test_fid_skips_with_one_sentence_without_weights(caplog, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setattr("gfpgan.metrics.common.DEFAULT_SEARCH_DIRS", ())
    opt = dict(tiny_sg2(), val={"val_freq": 1, "fid_images": 4})
    with caplog.at_level(logging.WARNING, logger="gfpgan"):
        model = StyleGAN2Model(opt, CPU)
    lines = [r.getMessage() for r in caplog.records if "FID" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("FID skipped: weight file") and "\n" not in lines[0]
    assert "fid" not in model.train_step(_real(), 1)


def test_fid_is_computed_when_due_deterministic_and_outside_the_rng(monkeypatch, tmp_path):
    """A stand-in feature extractor (the Inception weights are not downloaded in tests)."""
    from gfpgan.metrics import fid as fid_mod

    class FakeFID:
        def __init__(self, *args, **kwargs):
            pass

        def features(self, imgs):
            return np.stack([np.asarray(im, np.float64)[::4, ::4].reshape(-1) for im in imgs])

        def score(self, feats, ref_feats=None):
            return fid_mod.frechet_distance_features(feats, ref_feats)

    monkeypatch.setattr("gfpgan.metrics.common.find_weights", lambda *a, **k: "inception.pth")
    monkeypatch.setattr(fid_mod, "FIDMetric", FakeFID)
    faces = make_faces(tmp_path / "faces", n=6, size=S)
    opt = dict(tiny_sg2(total_iter=5), val={"val_freq": 2, "fid_images": 5, "fid_batch": 2},
               datasets={"train": {"type": "FFHQDegradationDataset", "dataroot_gt": str(faces)}})
    torch.manual_seed(0)
    model = StyleGAN2Model(opt, CPU)
    assert "fid" not in model.train_step(_real(), 1)
    state = torch.get_rng_state()
    first = model.fid()
    assert torch.equal(torch.get_rng_state(), state)  # validation never shifts the training stream
    assert first == model.fid() and first > 0  # the same samples every time
    assert model.train_step(_real(), 2)["fid"] == pytest.approx(model.fid())  # val_freq
    assert "fid" in model.train_step(_real(), 5)  # the last iteration


# ------------------------------------------------------------------ the recipe, end to end
TOTAL = 8
RECIPE = REPO / "options" / "train_stylegan2_tiny.yml"


def _overrides(root: Path, faces: Path):
    return ["--force-yml", f"path.experiments_root={root}", "name=prior",
            f"datasets.train.dataroot_gt={faces}", "datasets.train.out_size=32", "network_g.out_size=32",
            "network_d.out_size=32",
            "datasets.train.batch_size_per_gpu=4", f"train.total_iter={TOTAL}", "train.net_d_reg_every=2",
            "train.net_g_reg_every=2", "train.ada_interval=2", "train.ada_kimg=0.05",
            "logger.save_checkpoint_freq=3", "logger.image_freq=4", "logger.print_freq=1", "val=~"]


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    """An uninterrupted run of the tiny recipe (32 px, 8 iterations, states at 3 and 6)."""
    tmp = tmp_path_factory.mktemp("sg2")
    faces = make_faces(tmp / "faces", n=8, size=32)
    assert train_main(["-opt", RECIPE, *_overrides(tmp / "experiments", faces)]) == 0
    return tmp, faces


def test_tiny_recipe_logs_sample_grids_and_writes_the_prior(recipe_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tmp, _ = recipe_run
    run = tmp / "experiments" / "prior"
    acc = EventAccumulator(str(run / "tb_logger"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Images("images/lq_output_gt")] == [4, 8]
    assert {"losses/l_d", "losses/l_g_gan", "losses/l_d_r1", "losses/l_g_path", "losses/aug_p"} <= set(
        acc.Tags()["scalars"])
    assert any(e.value > 0 for e in acc.Scalars("losses/aug_p"))  # ADA moved p
    prior = torch.load(run / "models" / "stylegan2_prior.pth", weights_only=True)
    assert set(prior) == {"params", "params_ema"}
    ema = final_weights(run, TOTAL, "net_g_ema")
    assert prior["params_ema"].keys() == ema.keys()
    assert all(torch.equal(prior["params_ema"][k], ema[k]) for k in ema)
    assert any(not torch.equal(prior["params"][k], ema[k]) for k in ema)


def test_tiny_recipe_resumes_bit_exactly_after_a_kill(recipe_run, tmp_path):
    ref, faces = recipe_run
    args = ["-opt", RECIPE, *_overrides(tmp_path / "experiments", faces)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "gfpgan.train", *map(str, args)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    states = tmp_path / "experiments" / "prior" / "training_states"
    end = time.time() + 180
    while not (states / "3.state").exists():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < end, "timed out"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert train_main([*args, "--auto-resume"]) == 0
    a, b = ref / "experiments" / "prior", tmp_path / "experiments" / "prior"
    for net in ("net_g", "net_g_ema", "net_d"):
        wa, wb = final_weights(a, TOTAL, net), final_weights(b, TOTAL, net)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), net
    sa = torch.load(a / "training_states" / f"{TOTAL}.state", weights_only=True)["model"]["stylegan2"]
    sb = torch.load(b / "training_states" / f"{TOTAL}.state", weights_only=True)["model"]["stylegan2"]
    assert torch.equal(sa["path_mean"], sb["path_mean"]) and sa["augment"] == sb["augment"]


def test_gfpgan_recipe_reads_the_prior_through_decoder_load_path(recipe_run):
    """options/train_gfpgan_tiny.yml with the prior's file, as it is: the decoder is the prior's EMA."""
    from gfpgan.models import GFPGANModel
    from gfpgan.options import load_train_options

    tmp, faces = recipe_run
    run = tmp / "experiments" / "prior"
    prior = run / "models" / "stylegan2_prior.pth"
    opt = load_train_options(REPO / "options" / "train_gfpgan_tiny.yml", [
        f"datasets.train.dataroot_gt={faces}", "datasets.train.out_size=32", "network_g.out_size=32",
        "network_d.out_size=32", f"network_g.decoder_load_path={prior}", "network_g.fix_decoder=true"])
    model = GFPGANModel(opt, CPU)
    decoder = model.net_g.stylegan_decoder.state_dict()
    ema = final_weights(run, TOTAL, "net_g_ema")
    assert decoder.keys() == ema.keys()
    assert all(torch.equal(decoder[k], ema[k]) for k in ema)
    assert not any(p.requires_grad for p in model.net_g.stylegan_decoder.parameters())  # frozen
    assert all(torch.equal(model.ema.module.stylegan_decoder.state_dict()[k], ema[k]) for k in ema)


def test_recipes_match_their_consumers(tmp_path):
    """The tiny prior has the tiny GFP-GAN's decoder shape; the 512 recipe is the released prior's
    architecture with BasicSR's effective learning rates (2e-3 after the lazy-regularisation ratio)."""
    from gfpgan.options import load_train_options

    faces = make_faces(tmp_path / "faces", n=2)
    over = [f"datasets.train.dataroot_gt={faces}"]
    tiny = load_train_options(RECIPE, over)
    gfpgan = load_train_options(REPO / "options" / "train_gfpgan_tiny.yml", over)["network_g"]
    keys = ("out_size", "num_style_feat", "num_mlp", "channel_multiplier", "resample_kernel", "lr_mlp",
            "narrow")
    assert {k: tiny["network_g"][k] for k in keys} == {k: gfpgan[k] for k in keys}
    assert tiny["datasets"]["train"]["out_size"] == gfpgan["out_size"] == tiny["network_d"]["out_size"]

    big = load_train_options(REPO / "options" / "train_stylegan2_512.yml", over)
    assert {k: v for k, v in big["network_g"].items() if k != "type"} == dict(
        out_size=512, num_style_feat=512, num_mlp=8, channel_multiplier=1, resample_kernel=[1, 3, 3, 1],
        lr_mlp=0.01)
    train = big["train"]
    assert train["optim_g"]["lr"] * 4 / 5 == pytest.approx(2e-3)
    assert train["optim_d"]["lr"] * 16 / 17 == pytest.approx(2e-3)
    regs = ("net_g_reg_every", "net_d_reg_every", "r1_reg_weight", "path_reg_weight", "mixing_prob",
            "total_iter")
    assert [train[k] for k in regs] == [4, 16, 10, 2, 0.9, 800000]
    assert big["datasets"]["train"]["batch_size_per_gpu"] == 12


def test_bench_prior_pairs_scores_and_table(tmp_path):
    """The benchmark's held-out pairs are the recipe's degradation, seeded; its table reads them."""
    from gfpgan.tools.bench_prior import heldout_pairs, score, table

    faces = make_faces(tmp_path / "heldout", n=2, size=64)
    lq, gt = heldout_pairs(faces, draws=2)
    assert lq.shape == gt.shape == (4, 3, 64, 64)
    assert torch.equal(gt[:2], gt[2:]) and not torch.equal(lq[:2], lq[2:])  # two draws per face
    again = heldout_pairs(faces, draws=2)
    assert torch.equal(again[0], lq)
    s = score(gt, gt)
    assert s["psnr"] == [float("inf")] * 4 and s["ssim"] == pytest.approx([1.0] * 4)
    s = score(lq, gt)
    assert all(10 < p < 60 for p in s["psnr"])
    d = {"psnr": {"mean": 1.5, "se": 0.1}, "ssim": {"mean": 0.1, "se": 0.01}}
    rows = {"degraded input": {"psnr": 20.0, "ssim": 0.5},
            "no prior": {"psnr": 21.0, "ssim": 0.6, "train_s": 6},
            "prior 4 it, decoder frozen": {"psnr": 22.5, "ssim": 0.7, "train_s": 7, "prior_iters": 4,
                                           "prior_s": 5, "vs_no_prior": d}}
    text = table({"rows": rows, "iters": 3})
    assert "| prior 4 it, decoder frozen | 3 it, 7 s + prior 4 it, 5 s | 22.50 | 0.7000 | +1.50 ± 0.10 | " \
           "+0.1000 ± 0.0100 |" in text
    assert "| no prior | 3 it, 6 s | 21.00 | 0.6000 |  |  |" in text


def test_bench_prior_reads_training_time_from_the_log(tmp_path):
    from gfpgan.tools.bench_prior import _train_seconds

    (tmp_path / "train.log").write_text(
        "2026-01-01 10:00:00 INFO starting 'x' at iteration 0 of 8\n"
        "2026-01-01 10:00:30 INFO [epoch 0 iter 3/8]\n"
        "garbage line\n"
        "2026-01-01 10:05:00 INFO resuming 'x' at iteration 3 of 8\n"
        "2026-01-01 10:05:20 INFO finished 'x' at iteration 8\n")
    assert _train_seconds(tmp_path) == 50.0  # 30 s + 20 s: the time between the processes is not training


# ------------------------------------------------------------------ DDP
def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import json

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from gfpgan.dist import init_dist

    info = init_dist("cpu")
    torch.manual_seed(0)
    model = StyleGAN2Model(tiny_sg2(augment="ada", ada_interval=2, ada_kimg=0.01), info)
    logs = [model.train_step(_real(seed=10 * it + rank), it) for it in (1, 2, 3)]  # R1 at 2, path at 3
    bad = _real(seed=99)
    if rank == 1:
        bad["gt"][0, 0, 0, 0] = float("inf")
    before = {k: _flat(n) for k, n in model.trainable_nets().items()}
    logs.append(model.train_step(bad, 4))
    same = {}
    for k, net in list(model.trainable_nets().items()) + [("ema", model.ema.module)]:
        flat = _flat(net)
        ref = flat.clone()
        dist.broadcast(ref, 0)
        same[k] = bool(torch.equal(flat, ref))
    result = {"logs": logs, "same_as_rank0": same, "path_mean": model.cri_path.mean.item(),
              "aug": model.augment.state_dict(),
              "d_unchanged_after_skip": torch.equal(before["net_d"], _flat(model.net_d))}
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


def test_ddp_two_ranks_stay_identical_and_skip_together(tmp_path):
    """R1 through D's wrapper, path length through G's, ADA's p and the path-length mean kept
    the same on every rank (rank-averaged statistics), a non-finite loss on one rank skipping D's
    update on all ranks."""
    import json
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    for r in (r0, r1):
        assert all(r["same_as_rank0"].values()), r["same_as_rank0"]
        assert r["d_unchanged_after_skip"]
    assert r0["logs"] == r1["logs"]  # averaged over ranks
    assert "l_d_r1" in r0["logs"][1] and "l_g_path" in r0["logs"][2]
    assert r0["logs"][3]["skipped"] == 1.0 and all(log["skipped"] == 0.0 for log in r0["logs"][:3])
    assert r0["path_mean"] == r1["path_mean"] > 0 and r0["aug"] == r1["aug"]
