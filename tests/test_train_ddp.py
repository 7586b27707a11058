"""DDP under torchrun (2 CPU processes, gloo) matches one process with the same global batch.

The tiny recipe turns its image-pyramid loss off at iteration 2 (``remove_pyramid_loss``), so the
2-rank run also shows that the switch works under DDP (the pyramid's toRGB layers stop getting
gradients without an unused-parameter error), and validation runs on both ranks with reduced
metrics.
"""

import os
import subprocess
import sys

import pytest
import torch
import yaml

from tests.helpers import REPO, final_weights, tiny_options, train_main, write_options


def run_torchrun(opt_path, cwd, nproc=2, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "gfpgan.train", "-opt", str(opt_path)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # two torchrun workers: ~40 s on 2 shared cores
def test_two_ranks_match_one_rank_with_same_global_batch(tmp_path):
    one = tiny_options(tmp_path, name="one", total_iter=4)
    one["datasets"]["train"]["batch_size_per_gpu"] = 4
    two = tiny_options(tmp_path, name="two", total_iter=4)
    two["datasets"]["train"]["batch_size_per_gpu"] = 2
    assert train_main(["-opt", write_options(tmp_path, one, "one.yml")]) == 0
    res2 = run_torchrun(write_options(tmp_path, two, "two.yml"), tmp_path)
    assert res2.returncode == 0, res2.stderr[-5000:] + res2.stdout[-3000:]

    run1, run2 = tmp_path / "experiments" / "one", tmp_path / "experiments" / "two"
    log2 = (run2 / "train.log").read_text()
    assert "on 2 rank(s)" in log2
    for net in ("net_g", "net_d", "net_g_ema"):
        w1, w2 = final_weights(run1, 4, net), final_weights(run2, 4, net)
        assert w1.keys() == w2.keys()
        for k in w1:
            assert torch.allclose(w1[k], w2[k], rtol=1e-4, atol=5e-5), (net, k)
    # the generator did train (weights moved away from their initial values at iteration 2)
    g2 = final_weights(run2, 2) if (run2 / "models" / "net_g_2.safetensors").exists() else None
    g4 = final_weights(run2, 4)
    if g2 is not None:  # the runs moved much further than the tolerance allows them to differ
        assert max((g2[k] - g4[k]).abs().max().item() for k in g4) > 1e-3
    # after the pyramid switch (it > 2) the toRGB layers got no update on either rank
    state2 = torch.load(run2 / "training_states" / "2.state", weights_only=True)
    rgb_before = {k: v for k, v in state2["model"]["networks"]["net_g"].items() if k.startswith("toRGB")}
    assert rgb_before and all(torch.equal(v, g4[k]) for k, v in rgb_before.items())
    # validation ran on both ranks and was reduced over the whole set: same PSNR as one rank
    psnr1 = [ln for ln in (run1 / "train.log").read_text().splitlines() if "[val iter 4]" in ln]
    psnr2 = [ln for ln in log2.splitlines() if "[val iter 4]" in ln]
    v1 = float(psnr1[0].split("psnr:")[1].split()[0])
    v2 = float(psnr2[0].split("psnr:")[1].split()[0])
    assert abs(v1 - v2) < 1e-3
    # both ranks' RNG states are in the training state
    assert len(state2["rng"]) == 2 and not torch.equal(state2["rng"][0]["torch"], state2["rng"][1]["torch"])
    assert yaml.safe_load((run2 / "options.yml").read_text())["name"] == "two"


@pytest.mark.slow  # one torchrun job: ~25 s on 2 shared cores
def test_sigterm_under_torchrun_saves_every_ranks_state(tmp_path, capsys):
    import signal
    import time

    opt = tiny_options(tmp_path, name="term", total_iter=500)
    opt["logger"]["save_checkpoint_freq"] = 1000  # only the signal saves
    opt["val"] = None
    opt_path = write_options(tmp_path, opt)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node=2", "-m", "gfpgan.train", "-opt", str(opt_path)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    log = tmp_path / "experiments" / "term" / "train.log"
    end = time.time() + 180
    while not (log.exists() and "iter 1/" in log.read_text()):
        assert proc.poll() is None and time.time() < end, proc.stdout.read()[-3000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # torchrun forwards it to both workers
    out, _ = proc.communicate(timeout=120)
    assert "stopped by SIGTERM" in out  # (torchrun itself exits non-zero after forwarding)
    states = list((tmp_path / "experiments" / "term" / "training_states").glob("*.state"))
    assert len(states) == 1
    state = torch.load(states[0], weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert state["sampler"]["world_size"] == 2 and state["iter"] < 500
    # resumable, even on another world size (with a warning that the streams change)
    done = state["iter"]
    capsys.readouterr()
    assert train_main(["-opt", opt_path, "--auto-resume", "--force-yml",
                       f"train.total_iter={done + 1}"]) == 0
    printed = capsys.readouterr().out
    assert f"resuming 'term' at iteration {done}" in printed and "2-rank state on 1 ranks" in printed
    assert (tmp_path / "experiments" / "term" / "models" / f"net_g_{done + 1}.safetensors").is_file()
