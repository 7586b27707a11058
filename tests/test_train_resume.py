"""Interrupted training resumes exactly, with the shipped tiny recipe's own random draws.

The runs load ``options/train_gfpgan_tiny.yml`` as it is (its degradations: blur, downsampling,
noise, JPEG; its flips and shuffle; its networks with noise injection, losses, optimizers) and
change only its size: 8 faces, 2 per batch and rank, 6 iterations, a state every 3. A run
SIGKILLed after its state at iteration 3 (mid-epoch on 1 and on 2 ranks) and continued with
``--auto-resume`` must end with the net_g, net_g_ema and net_d of an uninterrupted run, bit for
bit, on 1 rank and on 2 (gloo), with 0 and with 2 DataLoader workers. One reference per world
size serves both worker counts: the worker count must not change a sample either.

What made resumed runs differ before: each new DataLoader iterator drew its workers' base seed
from the global torch RNG (the stream of the generator's noise injection), so the extra iterator
of a mid-epoch resume shifted that stream; and samples depended on the worker that made them.

Small on purpose (CI has 2 cores): the ranks are forked from the test process with torchrun's
environment (``Job``) rather than started by torchrun, which would cost an interpreter and a
torch import (~5 s of CPU) per process; tests/test_train_ddp.py runs torchrun itself.
"""

import multiprocessing
import os
import random
import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gfpgan.errors import UserError
from tests.helpers import REPO, final_weights, make_faces, train_main, write_options

TOTAL, EVERY = 6, 3  # iterations; a training state every EVERY iterations (the kill lands after it)
RECIPE = REPO / "options" / "train_gfpgan_tiny.yml"


def recipe_options(tmp: Path, faces: Path, name: str, workers: int) -> dict:
    """The shipped tiny recipe, shrunk in size only (the data, batch, length and save interval)."""
    opt = yaml.safe_load(RECIPE.read_text())
    train_set = opt["datasets"]["train"]
    assert train_set["blur_sigma"] and train_set["noise_range"] and train_set["jpeg_range"]
    assert train_set["downsample_range"] and train_set["use_hflip"] and train_set["use_shuffle"]
    train_set.update(dataroot_gt=str(faces), batch_size_per_gpu=2, num_worker_per_gpu=workers)
    opt["name"] = name
    opt["path"]["experiments_root"] = str(tmp / "experiments")
    opt["train"]["total_iter"] = TOTAL
    opt["logger"].update(save_checkpoint_freq=EVERY, print_freq=1, keep_checkpoints=10)
    return opt


# ----------------------------------------------------------------------------- jobs
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(argv: list, rank: int, ranks: int, port: int, log: str) -> None:
    """One rank of ``python -m gfpgan.train ARGV`` with torchrun's environment (RANK, LOCAL_RANK,
    WORLD_SIZE, MASTER_ADDR/PORT: gloo on the CPU), in a process forked from the test's."""
    os.setpgrp()  # the rank and its DataLoader workers: one group, killed at once
    if ranks > 1:
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(ranks),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    out = open(log, "a", buffering=1)
    os.dup2(out.fileno(), 1)
    os.dup2(out.fileno(), 2)
    sys.stdout = sys.stderr = out
    torch.set_num_threads(1)  # as OMP_NUM_THREADS=1 everywhere: the same reduction order
    from gfpgan.train import main

    sys.exit(main([str(a) for a in argv]))


class Job:
    """``ranks`` processes running one training command, like a torchrun job; output in ``log``."""

    def __init__(self, argv: list, ranks: int, log: Path):
        ctx = multiprocessing.get_context("fork")
        port = _free_port()
        self.log = log
        self.procs = [ctx.Process(target=_rank_main, args=(argv, r, ranks, port, str(log)))
                      for r in range(ranks)]
        for proc in self.procs:
            proc.start()

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def running(self) -> bool:
        return all(p.is_alive() for p in self.procs)

    def wait(self, timeout: float = 300) -> list:
        end = time.time() + timeout
        for proc in self.procs:
            proc.join(max(0.0, end - time.time()))
        if any(p.exitcode is None for p in self.procs):
            self.sigkill()
            raise AssertionError(f"the job did not finish in {timeout} s:\n{self.output()[-3000:]}")
        return [p.exitcode for p in self.procs]

    def sigkill(self) -> None:
        """SIGKILL every rank and its DataLoader workers at once, as a node failure would."""
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            proc.join(30)


def run_job(argv: list, ranks: int, log: Path) -> str:
    """Run a job to its end; its output."""
    job = Job(argv, ranks, log)
    assert job.wait() == [0] * ranks, job.output()[-3000:]
    return job.output()


def _wait_for(pred, job: Job, timeout: float = 240.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        if not job.running():
            raise AssertionError(f"training ended before the signal:\n{job.output()[-3000:]}")
        time.sleep(0.02)
    job.sigkill()
    raise AssertionError("timed out waiting for the run to reach the signal point")


def _assert_same(run_a: Path, run_b: Path, it: int) -> None:
    for net in ("net_g", "net_g_ema", "net_d"):
        wa, wb = final_weights(run_a, it, net), final_weights(run_b, it, net)
        assert wa.keys() == wb.keys()
        for k in wa:
            assert torch.equal(wa[k], wb[k]), (net, it, k, (wa[k] - wb[k]).abs().max().item())


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return make_faces(tmp_path_factory.mktemp("faces") / "faces", n=8, size=64)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, faces):
    """Uninterrupted runs (0 workers) by world size, each made once, on first use."""
    runs = {}

    def get(ranks: int) -> Path:
        if ranks not in runs:
            tmp = tmp_path_factory.mktemp(f"ref{ranks}")
            opt_path = write_options(tmp, recipe_options(tmp, faces, "ref", workers=0))
            run_job(["-opt", opt_path], ranks, tmp / "ref.log")
            runs[ranks] = tmp / "experiments" / "ref"
        return runs[ranks]

    return get


# ----------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("ranks,workers", [(1, 0), (1, 2), (2, 0), (2, 2)])
def test_sigkill_mid_epoch_then_auto_resume_is_bit_identical(ranks, workers, reference, faces, tmp_path):
    opt_path = write_options(tmp_path, recipe_options(tmp_path, faces, "run", workers))
    run = tmp_path / "experiments" / "run"
    states = run / "training_states"
    job = Job(["-opt", opt_path], ranks, tmp_path / "killed.log")
    _wait_for(lambda: (states / f"{EVERY}.state").exists(), job)
    job.sigkill()
    assert [p.exitcode for p in job.procs] == [-signal.SIGKILL] * ranks
    assert sorted(int(p.stem) for p in states.glob("*.state")) == [EVERY]
    kept = torch.load(states / f"{EVERY}.state", weights_only=True)
    # mid-epoch: 4 batches per epoch on 1 rank (8 faces, 2 a batch), 2 per rank on 2 ranks
    assert kept["sampler"]["next_batch"] != 0 and kept["world_size"] == ranks, kept["sampler"]
    # a half-written newer state (as a kill during a save would leave) must be skipped
    (states / "99.state").write_bytes(b"PK\x03\x04 truncated")
    if ranks == 1:
        with pytest.raises(UserError, match="--auto-resume"):  # without it: refuses to clobber
            train_main(["-opt", opt_path])

    out = run_job(["-opt", opt_path, "--auto-resume"], ranks, tmp_path / "resumed.log")
    assert "skipping training state" in out and f"resuming 'run' at iteration {EVERY}" in out, out[-3000:]
    ref = reference(ranks)
    _assert_same(ref, run, EVERY)  # what the killed run kept matches (sanity)
    _assert_same(ref, run, TOTAL)


def test_sigterm_saves_state_and_resume_matches(reference, faces, tmp_path):
    opt = recipe_options(tmp_path, faces, "run", workers=0)
    opt["logger"]["save_checkpoint_freq"] = 1000  # only the signal saves
    opt_path = write_options(tmp_path, opt)
    run = tmp_path / "experiments" / "run"
    job = Job(["-opt", opt_path], 1, tmp_path / "stopped.log")
    _wait_for(lambda: (run / "train.log").exists() and "iter 1/" in (run / "train.log").read_text(),
              job)
    os.kill(job.procs[0].pid, signal.SIGTERM)
    assert job.wait(120) == [0], job.output()[-3000:]
    assert "stopped by SIGTERM" in job.output()
    saved = sorted(int(p.stem) for p in (run / "training_states").glob("*.state"))
    assert len(saved) == 1 and 1 <= saved[0] < TOTAL, saved
    out = run_job(["-opt", opt_path, "--auto-resume"], 1, tmp_path / "resumed.log")
    assert f"resuming 'run' at iteration {saved[0]}" in out
    _assert_same(reference(1), run, TOTAL)


# ----------------------------------------------------------------------------- the causes, one by one
class GlobalRngDataset(torch.utils.data.Dataset):
    """Draws from every global generator, as BasicSR-style datasets do."""

    def __len__(self):
        return 6

    def __getitem__(self, index):
        return torch.tensor([random.random(), float(np.random.rand()), float(torch.rand(()))])


def _take(workers: int, epoch: int, k: int, n: int) -> list:
    """``n`` (epoch, batch) pairs of the trainer's data stream, from batch ``k`` of ``epoch``."""
    from gfpgan.dist import DistInfo
    from gfpgan.engine.trainer import batches, build_train_loader

    opt = {"manual_seed": 5, "datasets": {"train": {
        "name": "t", "batch_size_per_gpu": 2, "num_worker_per_gpu": workers, "use_shuffle": True,
        "dataset_enlarge_ratio": 1, "pin_memory": False}}}
    loader, sampler = build_train_loader(opt, GlobalRngDataset(), DistInfo(0, 0, 1, torch.device("cpu")))
    data = batches(loader, sampler, epoch, k, seed=5)
    return [next(data) for _ in range(n)]


def test_data_loading_leaves_the_training_rng_alone():
    """A new epoch iterator used to draw its workers' base seed from the global torch RNG (the
    noise-injection stream), and a resumed run makes one iterator more than the run it replays."""
    torch.manual_seed(0)
    before, py, npy = torch.get_rng_state(), random.getstate(), np.random.get_state()
    _take(workers=0, epoch=0, k=1, n=5)  # a mid-epoch start, an epoch boundary, global draws
    assert torch.equal(torch.get_rng_state(), before)
    assert random.getstate() == py
    after = np.random.get_state()
    assert after[2] == npy[2] and (after[1] == npy[1]).all()


@pytest.mark.parametrize("workers", [0, 2])
def test_every_sample_is_a_function_of_seed_epoch_and_index(workers):
    """Even a dataset drawing from the global generators gives the same batches whichever worker
    makes them, and a run resumed at batch 1 of epoch 0 gets the uninterrupted run's batches."""
    whole = _take(0, epoch=0, k=0, n=6)  # 3 batches per epoch: epochs 0 and 1
    assert [e for e, _ in whole] == [0, 0, 0, 1, 1, 1]
    assert len({tuple(b.flatten().tolist()) for _, b in whole}) == 6  # epochs and items differ
    resumed = _take(workers, epoch=0, k=1, n=5)
    for (ea, a), (eb, b) in zip(whole[1:], resumed):
        assert ea == eb and torch.equal(a, b)
