"""Pixel, GAN, R1 and Gram losses: values against BasicSR's implementations and closed forms."""

import basicsr.losses.basic_loss as basic_loss  # a required dependency: a broken import fails
import basicsr.losses.gan_loss as gan_loss
import pytest
import torch
from torch import nn

from gfpgan.losses import CharbonnierLoss, GANLoss, L1Loss, MSELoss, build_loss, gram_matrix, r1_penalty
from gfpgan.registry import LOSS_REGISTRY


def _pair(seed=0, shape=(2, 3, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


@pytest.mark.parametrize("ours, theirs", [(L1Loss, basic_loss.L1Loss), (MSELoss, basic_loss.MSELoss),
                                          (CharbonnierLoss, basic_loss.CharbonnierLoss)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_pixel_losses_match_basicsr(ours, theirs, reduction):
    x, y = _pair()
    mask = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    for weight in (None, mask):
        a = ours(loss_weight=0.3, reduction=reduction)(x, y, weight=weight)
        b = theirs(loss_weight=0.3, reduction=reduction)(x, y, weight=weight)
        torch.testing.assert_close(a, b)


def test_l1_closed_form_and_registry():
    x = torch.zeros(1, 1, 2, 2)
    y = torch.tensor([[[[1.0, -3.0], [0.0, 2.0]]]])
    assert build_loss({"type": "L1Loss", "loss_weight": 0.1}).loss_weight == pytest.approx(0.1)
    assert L1Loss(loss_weight=0.5)(x, y).item() == pytest.approx(0.5 * 6 / 4)
    assert "PerceptualLoss" in LOSS_REGISTRY and "GANLoss" in LOSS_REGISTRY
    with pytest.raises(KeyError, match="did you mean"):
        build_loss({"type": "L1Los"})
    with pytest.raises(ValueError):
        L1Loss(reduction="average")


@pytest.mark.parametrize("gan_type", ["vanilla", "lsgan", "wgan", "wgan_softplus", "hinge"])
def test_gan_loss_matches_basicsr(gan_type):
    pred = torch.randn(4, 1, 5, 5, generator=torch.Generator().manual_seed(3))
    ours = GANLoss(gan_type, loss_weight=0.1)
    theirs = gan_loss.GANLoss(gan_type, loss_weight=0.1)
    for real in (True, False):
        for is_disc in (True, False):
            torch.testing.assert_close(ours(pred, real, is_disc), theirs(pred, real, is_disc))


def test_gan_weight_only_on_generator_side_and_softplus_equals_vanilla():
    pred = torch.tensor([[0.5], [-2.0]])
    soft, vanilla = GANLoss("wgan_softplus", loss_weight=0.1), GANLoss("vanilla", loss_weight=1.0)
    expected_real = torch.nn.functional.softplus(-pred).mean()
    assert soft(pred, True, is_disc=True).item() == pytest.approx(expected_real.item())
    assert soft(pred, True, is_disc=False).item() == pytest.approx(0.1 * expected_real.item())
    # The reference's component-D fake term uses softplus where vanilla BCE was configured:
    # softplus(x) == BCEWithLogits(x, 0), so both spell the same loss.
    assert soft(pred, False, True).item() == pytest.approx(vanilla(pred, False, True).item(), rel=1e-6)
    with pytest.raises(ValueError):
        GANLoss("wgangp")


def test_r1_penalty_matches_basicsr_and_closed_form():
    torch.manual_seed(0)
    d = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(4 * 6 * 6, 1))
    img = torch.randn(3, 3, 8, 8, requires_grad=True)
    pred = d(img)
    ours = r1_penalty(pred, img)
    theirs = gan_loss.r1_penalty(d(img), img)
    torch.testing.assert_close(ours, theirs)
    # D(x) = sum(w * x): the gradient is w everywhere, so R1 = ||w||^2 for every sample.
    w = torch.randn(1, 2, 3, 3)
    x = torch.randn(2, 2, 3, 3, requires_grad=True)
    assert r1_penalty((x * w).sum(dim=(1, 2, 3)), x).item() == pytest.approx(w.pow(2).sum().item(), rel=1e-5)
    # With a GradScaler-style scale the result is unchanged.
    assert r1_penalty((x * w).sum(dim=(1, 2, 3)), x, grad_scale=1024.0).item() == pytest.approx(
        w.pow(2).sum().item(), rel=1e-5)
    # It is differentiable w.r.t. D's parameters.
    ours.backward()
    assert d[0].weight.grad is not None and d[0].weight.grad.abs().sum() > 0


def test_gram_matrix_matches_basicsr_and_definition():
    x = torch.randn(2, 3, 4, 5)
    ref = basic_loss.PerceptualLoss.__new__(basic_loss.PerceptualLoss)._gram_mat(x)
    torch.testing.assert_close(gram_matrix(x), ref)
    f = x[0].reshape(3, -1)
    torch.testing.assert_close(gram_matrix(x)[0], f @ f.T / 60)
