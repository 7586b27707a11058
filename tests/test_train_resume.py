"""Interrupted training resumes exactly: SIGKILL + --auto-resume ends with the weights of an
uninterrupted run; SIGTERM saves a resumable state and exits cleanly."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gfpgan.errors import UserError
from tests.helpers import REPO, final_weights, tiny_options, train_main, write_options

TOTAL = 8


def _popen(opt_path: Path, cwd: Path, *extra) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "gfpgan.train", "-opt", str(opt_path), *extra],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _wait_for(pred, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended before the signal:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("timed out waiting for the run to reach the signal point")


def _assert_same(run_a: Path, run_b: Path, it: int) -> None:
    for net in ("net_g", "net_g_ema", "net_d"):
        wa, wb = final_weights(run_a, it, net), final_weights(run_b, it, net)
        assert wa.keys() == wb.keys()
        for k in wa:
            assert torch.equal(wa[k], wb[k]), (net, k)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted run of TOTAL iterations (checkpoint every 3)."""
    tmp = tmp_path_factory.mktemp("ref")
    opt = tiny_options(tmp, name="resume", total_iter=TOTAL)
    opt["datasets"]["train"]["use_hflip"] = True  # sample randomness must be replayed too
    # two workers (the dataset seeds samples by worker id) and states at 3 and 6: resuming at a
    # batch that is not a multiple of the worker count must keep each batch on its worker
    opt["datasets"]["train"]["num_worker_per_gpu"] = 2
    opt["logger"]["save_checkpoint_freq"] = 3
    assert train_main(["-opt", write_options(tmp, opt)]) == 0
    return tmp, opt


def test_sigkill_then_auto_resume_matches_uninterrupted(reference_run, tmp_path, capsys):
    ref_tmp, opt = reference_run
    opt = dict(opt, path={"experiments_root": str(tmp_path / "experiments")})
    opt_path = write_options(tmp_path, opt)
    states = tmp_path / "experiments" / "resume" / "training_states"
    proc = _popen(opt_path, tmp_path)
    _wait_for(lambda: (states / "3.state").exists(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # a half-written newer state (as a kill during a save would leave) must be skipped
    (states / "99.state").write_bytes(b"PK\x03\x04 truncated")

    with pytest.raises(UserError, match="--auto-resume"):  # without it: refuses to clobber
        train_main(["-opt", opt_path])
    capsys.readouterr()
    assert train_main(["-opt", opt_path, "--auto-resume"]) == 0
    out = capsys.readouterr().out
    assert "skipping training state" in out and "resuming 'resume' at iteration" in out
    _assert_same(ref_tmp / "experiments" / "resume", tmp_path / "experiments" / "resume", TOTAL)


def test_sigterm_saves_state_and_resume_matches(reference_run, tmp_path, capsys):
    ref_tmp, opt = reference_run
    opt = dict(opt, path={"experiments_root": str(tmp_path / "experiments")})
    opt["logger"] = dict(opt["logger"], save_checkpoint_freq=1000)  # only the signal saves
    opt_path = write_options(tmp_path, opt)
    run = tmp_path / "experiments" / "resume"
    proc = _popen(opt_path, tmp_path)
    _wait_for(lambda: (run / "train.log").exists() and "iter 1/" in (run / "train.log").read_text(),
              proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    assert "stopped by SIGTERM" in out
    saved = sorted(int(p.stem) for p in (run / "training_states").glob("*.state"))
    assert len(saved) == 1 and 1 <= saved[0] < TOTAL, saved
    capsys.readouterr()
    assert train_main(["-opt", opt_path, "--auto-resume"]) == 0
    assert f"resuming 'resume' at iteration {saved[0]}" in capsys.readouterr().out
    _assert_same(ref_tmp / "experiments" / "resume", run, TOTAL)
