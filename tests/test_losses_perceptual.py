"""PerceptualLoss: values against its own VGG features, frozen VGG, missing weights."""

import pytest
import torch

from gfpgan.errors import UserError
from gfpgan.losses import PerceptualLoss, build_loss, gram_matrix

LAYERS = {"conv1_2": 0.1, "conv2_2": 0.5, "conv3_4": 1.0}


def _loss(**kw):
    torch.manual_seed(0)
    args = dict(layer_weights=LAYERS, range_norm=True, perceptual_weight=1.0, style_weight=50.0,
                pretrained=False)
    args.update(kw)
    return PerceptualLoss(**args)


def test_values_match_the_definition():
    loss = _loss()
    x, gt = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    percep, style = loss(x, gt)
    fx, fg = loss.vgg(x), loss.vgg(gt)
    exp_p = sum((fx[k] - fg[k]).abs().mean() * w for k, w in LAYERS.items())
    exp_s = 50 * sum((gram_matrix(fx[k]) - gram_matrix(fg[k])).abs().mean() * w for k, w in LAYERS.items())
    assert percep.item() == pytest.approx(exp_p.item(), rel=1e-5)
    assert style.item() == pytest.approx(exp_s.item(), rel=1e-5)
    same_p, same_s = loss(gt, gt)
    assert same_p.item() == 0.0 and same_s.item() == 0.0
    l2, _ = _loss(criterion="l2")(x, gt)
    want = sum(((fx[k] - fg[k]) ** 2).mean() * w for k, w in LAYERS.items()).item()
    assert l2.item() == pytest.approx(want, rel=1e-5)
    fro, _ = _loss(criterion="fro")(x, gt)
    assert fro.item() == pytest.approx(sum(torch.linalg.vector_norm(fx[k] - fg[k]) * w
                                           for k, w in LAYERS.items()).item(), rel=1e-5)


def test_disabled_terms_are_none_and_vgg_is_frozen():
    loss = _loss(style_weight=0.0)
    loss.train()
    assert not loss.vgg.training
    x = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_(True)
    percep, style = loss(x, torch.zeros(1, 3, 32, 32))
    assert style is None
    percep.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss.vgg.parameters())
    assert _loss(perceptual_weight=0.0)(x, x)[0] is None
    with pytest.raises(ValueError):
        _loss(criterion="cosine")


def test_missing_vgg_file_is_one_clear_error(tmp_path):
    missing = tmp_path / "vgg19-dcbb9e9d.pth"
    with pytest.raises(UserError, match="vgg19-dcbb9e9d.pth"):
        build_loss({"type": "PerceptualLoss", "layer_weights": LAYERS, "vgg_weights": str(missing)})
