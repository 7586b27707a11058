"""Helpers several test files share: tiny networks, tiny options trees, tiny batches, runners.

* :func:`one_thread`: an autouse-able fixture (import it into a test module to use it).
* ``TINY_GFPGAN``: constructor kwargs of a 32 px GFPGANv1Clean with narrow channels.
* :func:`tiny_opt` / :func:`tiny_batch`: the paper recipe's structure at 32 px for the model
  tests (``GFPGANModel(tiny_opt(), CPU)``).
* :func:`tiny_options` and its runners: a complete tiny experiment for the train entry point: a
  face folder made from scikit-image's LFW crops, a 32 px GFPGANv1Clean with a narrow StyleGAN2
  discriminator (no VGG, no ArcFace, no weight files).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gfpgan.dist import DistInfo
from gfpgan.legacy import load_state_dict

TINY_GFPGAN = dict(out_size=32, num_style_feat=32, channel_multiplier=1, narrow=0.125, different_w=True,
                   input_is_latent=True, sft_half=True)


@pytest.fixture(autouse=True)
def one_thread():
    """These networks are tiny: one intra-op thread is faster than two, and much faster when
    the cores are shared (OpenMP threads spin-wait for each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------ the model tests
S = 32
CPU = DistInfo(0, 0, 1, torch.device("cpu"))


def tiny_opt(identity=True, perceptual=True, components=True, reg_every=16, remove_pyramid=1000):
    """The paper recipe's structure and weights at 32 px with narrow channels."""
    opt = {
        "network_g": {"type": "GFPGANv1", "out_size": S, "num_style_feat": 32, "channel_multiplier": 1,
                      "narrow": 1 / 16, "fix_decoder": True, "input_is_latent": True, "different_w": True,
                      "sft_half": True, "num_mlp": 2, "lr_mlp": 0.01},
        "network_d": {"type": "StyleGAN2Discriminator", "out_size": S, "channel_multiplier": 1,
                      "narrow": 1 / 16},
        "path": {},
        "train": {
            "optim_g": {"type": "Adam", "lr": 2e-3, "betas": [0, 0.99]},
            "optim_d": {"type": "Adam", "lr": 2e-3, "betas": [0, 0.99]},
            "optim_component": {"type": "Adam", "lr": 2e-3, "betas": [0.9, 0.99]},
            "scheduler": {"type": "MultiStepLR", "milestones": [600000, 700000], "gamma": 0.5},
            "pixel_opt": {"type": "L1Loss", "loss_weight": 0.1, "reduction": "mean"},
            "L1_opt": {"type": "L1Loss", "loss_weight": 1, "reduction": "mean"},
            "gan_opt": {"type": "GANLoss", "gan_type": "wgan_softplus", "loss_weight": 0.1},
            "pyramid_loss_weight": 1, "remove_pyramid_loss": remove_pyramid,
            "r1_reg_weight": 10, "net_d_reg_every": reg_every, "total_iter": 100,
        },
    }
    if perceptual:
        opt["train"]["perceptual_opt"] = {
            "type": "PerceptualLoss", "layer_weights": {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1},
            "use_input_norm": True, "range_norm": True, "perceptual_weight": 1.0, "style_weight": 50,
            "criterion": "l1", "pretrained": False}
    if components:
        for c in ("left_eye", "right_eye", "mouth"):
            opt[f"network_d_{c}"] = {"type": "FacialComponentDiscriminator"}
        opt["train"]["gan_component_opt"] = {"type": "GANLoss", "gan_type": "vanilla", "real_label_val": 1.0,
                                             "fake_label_val": 0.0, "loss_weight": 1}
        opt["train"]["comp_style_weight"] = 200
    if identity:
        opt["network_identity"] = {"type": "ResNetArcFace", "block": "IRBlock", "layers": [1, 1, 1, 1],
                                   "use_se": False}
        opt["train"]["identity_weight"] = 10
    return opt


def tiny_batch(b=2, seed=0):
    """Random LQ/GT faces in [-1, 1] and fixed eye/mouth boxes for ``tiny_opt``."""
    g = torch.Generator().manual_seed(seed)
    return {"lq": torch.rand(b, 3, S, S, generator=g) * 2 - 1,
            "gt": torch.rand(b, 3, S, S, generator=g) * 2 - 1,
            "loc_left_eye": torch.tensor([[4.0, 8, 14, 16]] * b),
            "loc_right_eye": torch.tensor([[18.0, 8, 28, 16]] * b),
            "loc_mouth": torch.tensor([[8.0, 20, 24, 28]] * b)}


# ------------------------------------------------------------------ the train entry point
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
    """``opt`` as a YAML file in ``tmp``."""
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
    """The state dict a run saved for ``net`` at iteration ``it``."""
    return load_state_dict(run_dir / "models" / f"{net}_{it}.safetensors")
