"""The training entry point end to end on one process, and every bad-input case of issue 5.

Also home of the tiny-experiment helpers the other engine/train tests import: a face folder made
from scikit-image's LFW crops, and an options tree for a 32 px GFPGANv1Clean with a narrow
StyleGAN2 discriminator (no VGG, no ArcFace, no weight files).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from gfpgan.legacy import load_state_dict

REPO = Path(__file__).resolve().parents[1]
SIZE = 32


def make_faces(folder: Path, n: int = 8, size: int = SIZE) -> Path:
    """``n`` real face crops (LFW, gray -> RGB) resized to ``size`` and written as PNG."""
    import cv2
    from skimage.data import lfw_subset

    folder.mkdir(parents=True, exist_ok=True)
    faces = lfw_subset()[:n]
    for i, face in enumerate(faces):
        img = cv2.resize((face * 255).astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
        img = np.stack([img, np.roll(img, 1, 0), np.roll(img, 1, 1)], -1)  # some colour
        cv2.imwrite(str(folder / f"{i:08d}.png"), img)
    return folder


def tiny_options(tmp: Path, name: str = "tiny", **train_over) -> dict:
    """A complete tiny experiment: 32 px, narrow nets, pixel + pyramid + GAN + R1 losses."""
    faces = tmp / "faces"
    if not faces.exists():
        make_faces(faces)
    no_degradation = dict(blur_sigma=None, downsample_range=None, noise_range=None, jpeg_range=None)
    opt = {
        "name": name,
        "model_type": "GFPGANModel",
        "manual_seed": 7,
        "datasets": {
            "train": dict(type="FFHQDegradationDataset", dataroot_gt=str(faces),
                          io_backend={"type": "disk"}, out_size=SIZE, use_hflip=False,
                          batch_size_per_gpu=2, num_worker_per_gpu=0, **no_degradation),
            "val": dict(type="FFHQDegradationDataset", dataroot_gt=str(faces), out_size=SIZE,
                        use_hflip=False, batch_size_per_gpu=4, **no_degradation),
        },
        "network_g": dict(type="GFPGANv1Clean", out_size=SIZE, num_style_feat=32,
                          channel_multiplier=1, fix_decoder=True, num_mlp=2, input_is_latent=True,
                          different_w=True, narrow=0.125, sft_half=True),
        "network_d": dict(type="StyleGAN2Discriminator", out_size=SIZE, channel_multiplier=1,
                          stddev_group=1, narrow=0.125),
        "path": {"experiments_root": str(tmp / "experiments")},
        "train": {
            # a large Adam eps: near-zero gradients are not blown up to +-lr by rounding noise,
            # so a 1-rank and a 2-rank run can be compared with a tight tolerance
            "optim_g": {"type": "Adam", "lr": 1e-3, "betas": [0.0, 0.99], "eps": 1e-4},
            "optim_d": {"type": "Adam", "lr": 1e-3, "betas": [0.0, 0.99], "eps": 1e-4},
            "scheduler": {"type": "MultiStepLR", "milestones": [1000], "gamma": 0.5},
            "total_iter": 4,
            "pixel_opt": {"type": "L1Loss", "loss_weight": 0.1},
            "gan_opt": {"type": "GANLoss", "gan_type": "wgan_softplus", "loss_weight": 0.1},
            "pyramid_loss_weight": 1.0,
            "remove_pyramid_loss": 2,
            "r1_reg_weight": 10.0,
            "net_d_reg_every": 2,
        },
        "val": {"val_freq": 2, "metrics": {"psnr": {"type": "calculate_psnr"}}},
        "logger": {"print_freq": 1, "save_checkpoint_freq": 2, "keep_checkpoints": 2,
                   "image_freq": 2, "use_tb_logger": True},
    }
    opt["train"].update(train_over)
    return opt


def write_options(tmp: Path, opt: dict, filename: str = "opt.yml") -> Path:
    path = tmp / filename
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def run_train(args, cwd: Path, timeout: int = 240, env_extra=None) -> subprocess.CompletedProcess:
    """``python -m gfpgan.train ARGS`` in a subprocess (list argv, no shell)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "gfpgan.train", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)


def train_main(args) -> int:
    """``gfpgan.train.main(ARGS)`` in this process (saves the ~10 s import of a subprocess).

    One intra-op thread, like the subprocess runs (OMP_NUM_THREADS=1): bit-exact comparisons
    between in-process and subprocess runs need the same reduction order.
    """
    from gfpgan.train import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main([str(a) for a in args])
    finally:
        torch.set_num_threads(threads)


def final_weights(run_dir: Path, it: int, net: str = "net_g") -> dict:
    return load_state_dict(run_dir / "models" / f"{net}_{it}.safetensors")


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
