"""Engine building blocks: sampler, worker seeding, EMA, checkpoint manager, logger, validation."""

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from gfpgan.dist import DistInfo
from gfpgan.engine.checkpoint_manager import CheckpointManager, get_rng_state, set_rng_state
from gfpgan.engine.ema import DEFAULT_EMA_DECAY, ModelEMA, unwrap
from gfpgan.engine.logger import TrainLogger, format_eta
from gfpgan.engine.sampler import ResumableDistributedSampler, make_worker_init_fn
from gfpgan.errors import UserError


# ----------------------------------------------------------------------------- sampler
def test_ranks_split_the_one_rank_order_into_global_batches():
    full = ResumableDistributedSampler(10, 1, 0, seed=3)
    ranks = [ResumableDistributedSampler(10, 2, r, seed=3) for r in range(2)]
    for s in [full, *ranks]:
        s.set_epoch(5)
    order = list(full)
    assert sorted(order) == list(range(10))
    r0, r1 = (list(s) for s in ranks)
    # step k of a 2-rank run with batch b == step k of a 1-rank run with batch 2b
    b = 2
    for k in range(2):
        step = r0[k * b:(k + 1) * b] + r1[k * b:(k + 1) * b]
        assert sorted(step) == sorted(order[2 * b * k:2 * b * (k + 1)])


def test_epochs_differ_are_seeded_and_start_resumes():
    s = ResumableDistributedSampler(20, 1, 0, seed=0)
    s.set_epoch(0)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert e0 != e1 and sorted(e0) == sorted(e1)
    s.set_epoch(1)
    s.set_start(7)
    assert list(s) == e1[7:] and len(s) == 13
    s.set_epoch(1)  # a new epoch starts at its head again
    assert list(s) == e1
    assert list(ResumableDistributedSampler(20, 1, 0, shuffle=False)) == list(range(20))


def test_padding_and_enlarge_ratio():
    ranks = [ResumableDistributedSampler(5, 2, r, seed=1, enlarge_ratio=3) for r in range(2)]
    a, b = list(ranks[0]), list(ranks[1])
    assert len(a) == len(b) == 8 and all(0 <= i < 15 for i in a + b)
    assert len(set(a + b)) == 15  # every repeat of every item has its own index (own seed); 1 pad
    counts = np.bincount([i % 5 for i in a + b], minlength=5)
    assert counts.sum() == 16 and counts.min() >= 3  # 15 draws + 1 pad
    with pytest.raises(ValueError):
        ResumableDistributedSampler(0)


def test_worker_init_fn_is_deterministic_per_seed_rank_worker():
    def draw(seed, rank, worker):
        make_worker_init_fn(seed, rank)(worker)
        return (np.random.rand(), random.random(), torch.rand(1).item())

    state = get_rng_state()
    try:
        assert draw(0, 0, 0) == draw(0, 0, 0)
        assert len({draw(0, 0, 0), draw(0, 1, 0), draw(0, 0, 1), draw(1, 0, 0)}) == 4
    finally:
        set_rng_state(state)


# ----------------------------------------------------------------------------- EMA
def test_ema_update_math_and_buffers():
    net = nn.BatchNorm1d(3)
    ema = ModelEMA(net, decay=0.9)
    assert not any(p.requires_grad for p in ema.module.parameters())
    w0 = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
        net.running_mean.fill_(5.0)
    ema.update(net)
    assert torch.allclose(ema.module.weight, 0.9 * w0 + 0.1 * (w0 + 1.0))
    assert torch.equal(ema.module.running_mean, net.running_mean)  # buffers copied
    assert math.isclose(DEFAULT_EMA_DECAY, 0.997784, abs_tol=1e-6)
    sd = ema.state_dict()
    ema2 = ModelEMA(nn.BatchNorm1d(3))
    ema2.load_state_dict(sd)
    assert torch.equal(ema2.module.weight, ema.module.weight)
    with pytest.raises(ValueError):
        ModelEMA(net, decay=1.5)


def test_unwrap_compiled_and_nested():
    inner = nn.Linear(2, 2)

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self._orig_mod = inner

    assert unwrap(Wrapper()) is inner and unwrap(inner) is inner


# ----------------------------------------------------------------------------- checkpoints
def _nets():
    net = nn.Linear(3, 2)
    return {"net_g": (net, "Linear", {"in_features": 3, "out_features": 2})}


def test_keep_last_k_and_newest_complete_state(tmp_path):
    ckpt = CheckpointManager(tmp_path / "run", "exp", keep=2)
    for it in (2, 4, 6):
        ckpt.save(it, _nets(), {"model": {"w": torch.full((2,), float(it))}})
    assert sorted(ckpt.state_iters()) == [4, 6]
    assert sorted(p.name for p in ckpt.models_dir.iterdir()) == ["net_g_4.safetensors", "net_g_6.safetensors"]
    # a truncated newer file (a kill during a write outside the atomic path) is skipped
    (ckpt.states_dir / "8.state").write_bytes(b"PK\x03\x04broken")
    warnings = []
    newest = ckpt.newest_state(warn=warnings.append)
    assert newest.name == "6.state" and warnings and "8.state" in warnings[0]
    state = ckpt.load(newest)
    assert state["iter"] == 6 and torch.equal(state["model"]["w"], torch.full((2,), 6.0))
    # no temp files left behind by the atomic writes
    assert not [p for p in (tmp_path / "run").rglob("*") if p.name.startswith(".")]


def test_state_of_another_experiment_or_format_is_refused(tmp_path):
    path = CheckpointManager(tmp_path / "a", "a").save(1, {}, {"model": {}})
    with pytest.raises(UserError, match="belongs to experiment 'a', not 'b'"):
        CheckpointManager(tmp_path / "b", "b").load(path)
    other = tmp_path / "x.state"
    torch.save({"iter": 1}, other)
    with pytest.raises(UserError, match="not a training state"):
        CheckpointManager(tmp_path / "b", "b").load(other)
    assert CheckpointManager(tmp_path / "empty", "e").newest_state() is None


def test_rng_state_roundtrip_through_weights_only_file(tmp_path):
    torch.save(get_rng_state(), tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])
    assert expected[2] == got[2]


# ----------------------------------------------------------------------------- logger
def test_logger_text_eta_and_tensorboard(tmp_path):
    log = TrainLogger(tmp_path, total_iter=100, start_iter=10, use_tb=True)
    log.record_times(0.5, 0.1)
    log.log_iter(20, 0, {"l_g_pix": 0.25, "real_score": 1.0}, {"net_g": 2e-3})
    log.log_images(20, torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 16, 16), -torch.ones(2, 3, 16, 16))
    log.log_val(20, {"psnr": 30.0}, "best psnr so far")
    log.close()
    text = (tmp_path / "train.log").read_text()
    assert "iter 20/100" in text and "l_g_pix:2.5000e-01" in text and "eta 0m 40s" in text
    assert "lr_net_g:2.000e-03" in text and "[val iter 20] psnr:30.0000 | best psnr so far" in text
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb_logger"))
    acc.Reload()
    tags = acc.Tags()
    assert {"losses/l_g_pix", "scores/real_score", "lr/net_g", "time/iter", "time/data",
            "val/psnr"} <= set(tags["scalars"])
    assert "images/lq_output_gt" in tags["images"]
    assert format_eta(90061) == "1d 1h 1m" and format_eta(59) == "0m 59s"


def test_logger_is_silent_off_rank_zero(tmp_path):
    log = TrainLogger(tmp_path, 10, is_main=False)
    log.log_iter(1, 0, {"a": 1.0}, {})
    log.close()
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- validation
def test_validator_means_over_the_set(tmp_path):
    from gfpgan.engine.validation import Validator
    from gfpgan.images import tensor_to_img
    from gfpgan.metrics.psnr_ssim import calculate_psnr, calculate_ssim

    g = torch.Generator().manual_seed(0)
    gts = torch.rand(5, 3, 16, 16, generator=g) * 2 - 1
    data = [{"lq": gts[i], "gt": gts[i], "gt_path": f"img{i}.png"} for i in range(5)]
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    dist = DistInfo(0, 0, 1, torch.device("cpu"))
    metrics = {"psnr": {"type": "calculate_psnr"}, "ssim": {"type": "ssim", "crop_border": 2}}
    val = Validator(metrics, dist)

    def restore(lq):
        return lq * 0.8

    out = val.run(restore, loader, save_dir=tmp_path / "vis", suffix="it3")
    want_psnr = np.mean([calculate_psnr(tensor_to_img(gts[i] * 0.8), tensor_to_img(gts[i]))
                         for i in range(5)])
    want_ssim = np.mean([calculate_ssim(tensor_to_img(gts[i] * 0.8), tensor_to_img(gts[i]), crop_border=2)
                         for i in range(5)])
    assert out["psnr"] == pytest.approx(want_psnr) and out["ssim"] == pytest.approx(want_ssim)
    assert sorted(p.name for p in (tmp_path / "vis").iterdir()) == [f"img{i}_it3.png" for i in range(5)]
    assert val.main_metric == "psnr" and val.is_better("psnr", 30.0, 29.0)
    assert val.run(restore, loader, max_images=2)["psnr"] == pytest.approx(
        np.mean([calculate_psnr(tensor_to_img(gts[i] * 0.8), tensor_to_img(gts[i])) for i in range(2)]))


def test_lpips_is_skipped_with_one_line_when_its_weights_are_missing(tmp_path):
    from gfpgan.engine.validation import Validator

    msgs = []
    val = Validator({"lpips": {"type": "lpips"}, "psnr": {"type": "psnr"}},
                    DistInfo(0, 0, 1, torch.device("cpu")),
                    lpips_weights=str(tmp_path / "alexnet-owt-7be5be79.pth"), warn=msgs.append)
    assert list(val.metrics) == ["psnr"] and val.main_metric == "psnr"
    assert len(msgs) == 1 and "LPIPS skipped" in msgs[0] and "alexnet" in msgs[0]
