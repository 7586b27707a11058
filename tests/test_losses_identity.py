"""Identity loss: gray conversion, resize, L1 of embeddings, GT detached, frozen network."""

import pytest
import torch
from torch import nn

from gfpgan.losses import IdentityLoss, gray_resize


class _TinyEmbed(nn.Module):
    """A stand-in for ArcFace: (N,1,S,S) -> (N,8)."""

    def __init__(self, size=16):
        super().__init__()
        self.bn = nn.BatchNorm2d(1)
        self.fc = nn.Linear(size * size, 8)

    def forward(self, x):
        return self.fc(self.bn(x).flatten(1))


def test_gray_resize_values():
    x = torch.zeros(1, 3, 4, 4)
    x[:, 0], x[:, 1], x[:, 2] = 1.0, 0.5, -1.0
    g = gray_resize(x, size=4)
    assert g.shape == (1, 1, 4, 4)
    assert torch.allclose(g, torch.full_like(g, 0.2989 + 0.587 * 0.5 - 0.114))
    # A constant image stays constant when resized.
    assert torch.allclose(gray_resize(x, size=8), torch.full((1, 1, 8, 8), 0.2989 + 0.2935 - 0.114))


def test_identity_loss_value_gradients_and_frozen_net():
    torch.manual_seed(0)
    net = _TinyEmbed(16)
    loss = IdentityLoss(net, loss_weight=10.0, size=16)
    assert not any(p.requires_grad for p in net.parameters())
    loss.train()
    assert not net.training  # BatchNorm stats must stay fixed
    gt = torch.rand(2, 3, 32, 32) * 2 - 1
    out = (gt + 0.3 * torch.randn_like(gt)).requires_grad_(True)
    gt.requires_grad_(True)
    value = loss(out, gt)
    expected = (net(gray_resize(out, 16)) - net(gray_resize(gt, 16))).abs().mean() * 10
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    value.backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    assert gt.grad is None  # the GT embedding is a constant
    assert all(p.grad is None for p in net.parameters())
    assert loss(gt.detach(), gt.detach()).item() == 0.0
