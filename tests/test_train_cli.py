"""The training entry point end to end on one process, and every bad-input case of issue 5.

The tiny experiment it runs (and the other engine/train tests too) is in ``tests/helpers.py``.
"""

import torch
import yaml

from tests.helpers import final_weights, run_train, tiny_options, write_options


# --------------------------------------------------------------------------------- tests
def test_single_process_run_writes_everything(tmp_path):
    opt_path = write_options(tmp_path, tiny_options(tmp_path))
    res = run_train(["-opt", opt_path, "--force-yml", "logger.keep_checkpoints=1"], tmp_path)
    assert res.returncode == 0, res.stderr + res.stdout
    run = tmp_path / "experiments" / "tiny"
    # run info: resolved options (with the override), command line, git commit
    saved = yaml.safe_load((run / "options.yml").read_text())
    assert saved["logger"]["keep_checkpoints"] == 1 and saved["train"]["ema_decay"] > 0.99
    assert "--force-yml" in (run / "command.txt").read_text()
    assert len((run / "git_commit.txt").read_text().strip()) in (40, 7) or \
        (run / "git_commit.txt").read_text().strip() == "unknown"
    # keep-K: only the newest state and its networks remain
    assert sorted(p.name for p in (run / "training_states").iterdir()) == ["4.state"]
    names = sorted(p.name for p in (run / "models").glob("*_4.safetensors"))
    assert names == ["net_d_4.safetensors", "net_g_4.safetensors", "net_g_ema_4.safetensors"]
    assert not list((run / "models").glob("*_2.safetensors"))
    assert (run / "models" / "net_g_ema_best.safetensors").is_file()
    # the state is loadable with weights_only and complete
    state = torch.load(run / "training_states" / "4.state", weights_only=True)
    assert state["iter"] == 4 and state["experiment"] == "tiny" and len(state["rng"]) == 1
    assert state["sampler"] == {"epoch": 1, "next_batch": 0, "iters_per_epoch": 4,
                                "batch_size": 2, "world_size": 1}
    assert set(state["model"]) >= {"networks", "net_g_ema", "optimizers", "schedulers"}
    # logs: a line per iteration with losses and ETA, validation, TensorBoard events
    log = (run / "train.log").read_text()
    assert "iter 3/4" in log and "l_g_pix" in log and "eta" in log and "[val iter 4] psnr" in log
    assert list((run / "tb_logger").glob("events.out.tfevents.*"))
    # the trained EMA generator differs from the raw one but both are finite
    g, g_ema = final_weights(run, 4), final_weights(run, 4, "net_g_ema")
    assert all(torch.isfinite(v).all() for v in g.values())
    assert any(not torch.equal(g[k], g_ema[k]) for k in g if g[k].is_floating_point())
