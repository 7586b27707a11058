"""Bad input stops before any training with one clear sentence and exit code 2 (issue 5, item 5),
and repeated non-finite losses stop a run with the last good checkpoint intact."""

from pathlib import Path

import pytest

from gfpgan.engine.checkpoint_manager import CheckpointManager
from gfpgan.errors import EXIT_USER_ERROR, UserError, run_cli
from gfpgan.train import main
from tests.helpers import tiny_options, train_main, write_options


def _fails(tmp_path: Path, opt: dict, capsys, *extra) -> str:
    """Run the CLI wrapper; assert exit code 2, one line on stderr, no training; return it."""
    path = write_options(tmp_path, opt)
    with pytest.raises(SystemExit) as exc:
        run_cli(main, ["-opt", str(path), *extra])
    assert exc.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert not list(tmp_path.glob("experiments/*/training_states/*.state"))
    return err


def test_unknown_option_gets_did_you_mean(tmp_path, capsys):
    opt = tiny_options(tmp_path)
    opt["datasets"]["train"]["blur_sgima"] = [0.1, 10]
    err = _fails(tmp_path, opt, capsys)
    assert "unknown option 'datasets.train.blur_sgima'" in err and "did you mean 'blur_sigma'?" in err
    assert "opt.yml" in err
    opt = tiny_options(tmp_path)
    opt["train"]["totl_iter"] = 5
    assert "did you mean 'total_iter'?" in _fails(tmp_path, opt, capsys)
    opt = tiny_options(tmp_path)
    opt["network_g"]["type"] = "GFPGANv1Clen"
    assert "did you mean 'GFPGANv1Clean'" in _fails(tmp_path, opt, capsys)
    err = _fails(tmp_path, tiny_options(tmp_path), capsys, "--force-yml", "logger.print_fre=3")
    assert "command-line overrides" in err and "did you mean 'print_freq'?" in err


def test_wrong_type_and_range(tmp_path, capsys):
    opt = tiny_options(tmp_path)
    opt["train"]["total_iter"] = "ten"
    assert "option 'train.total_iter'" in _fails(tmp_path, opt, capsys)
    opt = tiny_options(tmp_path)
    opt["logger"]["keep_checkpoints"] = 0
    assert "must be >= 1" in _fails(tmp_path, opt, capsys)
    opt = tiny_options(tmp_path)
    opt["train"]["amp"] = "fp8"
    assert "'bf16', 'fp16'" in _fails(tmp_path, opt, capsys)


def test_missing_dataset_and_weight_files(tmp_path, capsys):
    opt = tiny_options(tmp_path)
    opt["datasets"]["train"]["dataroot_gt"] = str(tmp_path / "no_such_faces")
    err = _fails(tmp_path, opt, capsys)
    assert "datasets.train.dataroot_gt" in err and "no_such_faces" in err
    opt = tiny_options(tmp_path)
    opt["path"]["pretrain_network_g"] = str(tmp_path / "missing_g.pth")
    assert "missing_g.pth" in _fails(tmp_path, opt, capsys)
    opt = tiny_options(tmp_path)
    opt["network_g"]["decoder_load_path"] = "experiments/pretrained_models/StyleGAN2_nope.pth"
    assert "StyleGAN2_nope.pth" in _fails(tmp_path, opt, capsys)


def test_bad_yaml_and_missing_options_file(tmp_path, capsys):
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\ntrain:\n  total_iter: [1,\n")
    with pytest.raises(SystemExit):
        run_cli(main, ["-opt", str(bad)])
    assert "not valid YAML at line" in capsys.readouterr().err
    with pytest.raises(UserError, match="does not exist"):
        main(["-opt", str(tmp_path / "nope.yml")])


def test_unwritable_experiments_folder(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    opt = tiny_options(tmp_path)
    opt["path"]["experiments_root"] = str(blocker / "experiments")
    err = _fails(tmp_path, opt, capsys)
    assert "not writable" in err and "path.experiments_root" in err


def test_resume_state_from_another_experiment(tmp_path, capsys):
    other = CheckpointManager(tmp_path / "elsewhere" / "other", "other")
    state = other.save(3, {}, {"model": {}})
    opt = tiny_options(tmp_path, name="mine")
    opt["path"]["resume_state"] = str(state)
    err = _fails(tmp_path, opt, capsys)
    assert "belongs to experiment 'other', not 'mine'" in err
    garbage = tmp_path / "garbage.state"
    garbage.write_text("hello")
    opt["path"]["resume_state"] = str(garbage)
    assert "cannot be loaded" in _fails(tmp_path, opt, capsys)


def test_non_finite_losses_skip_then_stop_with_last_good_checkpoint(tmp_path, capsys):
    # an absurd learning rate blows the weights up after the first step: every later loss is
    # non-finite, each step is skipped, and the run stops after max_nonfinite_steps of them
    opt = tiny_options(tmp_path, name="nan", total_iter=20, max_nonfinite_steps=3)
    opt["train"]["optim_g"]["lr"] = 1e38
    opt["datasets"]["val"] = None
    opt["logger"]["save_checkpoint_freq"] = 1
    path = write_options(tmp_path, opt)
    with pytest.raises(UserError, match="non-finite losses in a row") as exc:
        train_main(["-opt", path])
    msg = str(exc.value)
    out = capsys.readouterr().out
    assert "update skipped (1 in a row)" in out and "update skipped (3 in a row)" in out
    # no state is written during the streak: the newest one is from before it, and it is named
    ckpt = CheckpointManager(tmp_path / "experiments" / "nan", "nan")
    states = ckpt.state_iters()
    first_bad = int(out.split("update skipped (1 in a row)")[0].rsplit("iteration ", 1)[1].split(":")[0])
    assert states and max(states) == first_bad - 1
    assert f"training_states/{max(states)}.state" in msg
    state = ckpt.load(ckpt.states_dir / f"{max(states)}.state")  # intact and loadable
    assert state["iter"] == first_bad - 1


def test_debug_shows_the_traceback_instead(tmp_path):
    opt = tiny_options(tmp_path)
    opt["train"]["total_iter"] = -1
    path = write_options(tmp_path, opt)
    with pytest.raises(UserError, match="must be >= 1"):  # re-raised, not turned into exit 2
        run_cli(main, ["-opt", str(path), "--debug"])
