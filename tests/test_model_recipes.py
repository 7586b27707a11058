"""The recipes in options/: they validate, build the model they describe, and carry the paper's
numbers; the tiny one trains without any weight file and lowers its loss on real faces."""

from pathlib import Path

import numpy as np
import pytest
import torch

from gfpgan.errors import UserError
from gfpgan.models import GFPGANModel
from gfpgan.options import LOADER_KEYS, load_train_options
from tests.helpers import CPU, one_thread  # noqa: F401  (one_thread: autouse)

ROOT = Path(__file__).resolve().parents[1] / "options"


def _real_faces(folder: Path, n: int = 100, size: int = 64) -> Path:
    """scikit-image's LFW subset faces (its first 100 images; real 25x25 gray faces) as PNGs."""
    import cv2
    import skimage.data as skdata
    folder.mkdir(parents=True, exist_ok=True)
    for i, face in enumerate(skdata.lfw_subset()[:n]):
        img = cv2.resize((face * 255).round().astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    return folder


def _paper_overrides(tmp_path: Path, with_components: bool):
    """Point every weight/data path of a 512 recipe at stand-ins (no weight file exists here)."""
    faces = tmp_path / "faces"
    faces.mkdir(exist_ok=True)
    ov = [f"datasets.train.dataroot_gt={faces}", "datasets.val=~", "network_g.decoder_load_path=~",
          "train.perceptual_opt.pretrained=false"]
    if with_components:
        ov += ["datasets.train.crop_components=false", "datasets.train.component_path=~",
               "path.pretrain_network_identity=~"]
    return ov


@pytest.mark.parametrize("name", ["train_gfpgan_v1.yml", "train_gfpgan_v1_simple.yml"])
def test_paper_recipes_validate_and_need_their_weight_files(name):
    # Without the weight files, options validation stops with one sentence naming the first one.
    with pytest.raises(UserError, match="does not exist"):
        load_train_options(ROOT / name)


def test_paper_recipe_numbers_and_model(tmp_path):
    opt = load_train_options(ROOT / "train_gfpgan_v1.yml", _paper_overrides(tmp_path, True))
    tr = opt["train"]
    pixel = (tr["pixel_opt"]["loss_weight"], tr["pyramid_loss_weight"], tr["remove_pyramid_loss"])
    assert pixel == (0.1, 1, 50000)
    assert tr["perceptual_opt"]["layer_weights"] == {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1,
                                                      "conv4_4": 1, "conv5_4": 1}
    gan = (tr["perceptual_opt"]["style_weight"], tr["gan_opt"]["gan_type"], tr["gan_opt"]["loss_weight"])
    assert gan == (50, "wgan_softplus", 0.1)
    assert (tr["comp_style_weight"], tr["identity_weight"], tr["r1_reg_weight"], tr["net_d_reg_every"]) == (
        200, 10, 10, 16)
    assert tr["optim_g"]["betas"] == [0, 0.99] and tr["optim_component"]["betas"] == [0.9, 0.99]
    assert tr["ema_decay"] == pytest.approx(0.5 ** (32 / 10000), abs=1e-6)
    assert opt["network_g"]["fix_decoder"] is True and opt["network_g"]["out_size"] == 512
    # Build the 512 model it describes (random weights; no forward at this size on a CPU).
    model = GFPGANModel(opt, CPU)
    assert set(model.optimizers) == {"net_g", "net_d", "net_d_left_eye", "net_d_right_eye", "net_d_mouth"}
    assert model.optimizers["net_d"].param_groups[0]["lr"] == pytest.approx(2e-3 * 16 / 17)
    n_opt_g = sum(p.numel() for g in model.optimizers["net_g"].param_groups for p in g["params"])
    n_decoder = sum(p.numel() for p in model.net_g.stylegan_decoder.parameters())
    assert n_opt_g == sum(p.numel() for p in model.net_g.parameters()) - n_decoder  # prior frozen
    assert model.cri_identity is not None and model.cri_perceptual is not None


def test_simple_recipe_has_no_components_or_identity(tmp_path):
    opt = load_train_options(ROOT / "train_gfpgan_v1_simple.yml", _paper_overrides(tmp_path, False))
    assert not any(opt.get(f"network_d_{c}") for c in ("left_eye", "right_eye", "mouth"))
    assert not opt.get("network_identity") and not opt["train"].get("identity_weight")
    full = load_train_options(ROOT / "train_gfpgan_v1.yml", _paper_overrides(tmp_path, True))
    for key in ("pixel_opt", "perceptual_opt", "gan_opt", "optim_g", "optim_d", "scheduler", "total_iter"):
        assert opt["train"][key] == full["train"][key], key
    assert opt["network_g"] == full["network_g"] and opt["network_d"] == full["network_d"]


@pytest.mark.slow
def test_tiny_recipe_trains_on_real_faces_and_lowers_its_loss(tmp_path):
    import gfpgan.data  # noqa: F401  (registers the datasets)
    from gfpgan.registry import DATASET_REGISTRY

    faces = _real_faces(tmp_path / "lfw_tiny")
    # A faster EMA so that 40 iterations show in the EMA generator too.
    opt = load_train_options(ROOT / "train_gfpgan_tiny.yml", [f"datasets.train.dataroot_gt={faces}",
                                                              "train.ema_decay=0.9"])
    block = {k: v for k, v in opt["datasets"]["train"].items() if k not in LOADER_KEYS}
    dataset = DATASET_REGISTRY.build(block, rank=0)
    torch.manual_seed(0)
    model = GFPGANModel(opt, CPU)
    held = [dataset[i] for i in range(88, 100)]
    held_lq, held_gt = torch.stack([h["lq"] for h in held]), torch.stack([h["gt"] for h in held])
    start = (model.restore(held_lq) - held_gt).abs().mean().item()
    g = torch.Generator().manual_seed(0)
    pix = []
    for it in range(1, 41):
        items = [dataset[i] for i in torch.randint(0, 88, (4,), generator=g).tolist()]
        logs = model.train_step({"lq": torch.stack([x["lq"] for x in items]),
                                 "gt": torch.stack([x["gt"] for x in items])}, it)
        model.update_learning_rate(it)
        assert logs["skipped"] == 0.0
        pix.append(logs["l_g_pix"])
    end = (model.restore(held_lq) - held_gt).abs().mean().item()
    assert np.mean(pix[-10:]) < 0.6 * np.mean(pix[:5])  # the training loss falls
    assert end < 0.6 * start  # and the EMA generator restores unseen faces better
