"""Temporal losses on values: zero for consistent clips, flicker penalised, true motion not."""

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from gfpgan.losses import TemporalIdentityLoss, TemporalLoss, build_loss
from gfpgan.motion import relative_affine, similarity

S, T = 48, 4


def _moving_clip(img, angles):
    """Frames (1, T, 3, S, S) of ``img`` (S, S, 3 float) rotated/shifted by ``angles`` and the transforms."""
    aff = [similarity(a, 1.0, a / 2, -a / 3, S) for a in angles]
    frames = [cv2.warpAffine(img, m, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
              for m in aff]
    rel = [np.eye(2, 3)] + [relative_affine(a, b) for a, b in zip(aff, aff[1:])]
    clip = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)[None]
    return clip, torch.tensor(np.stack(rel), dtype=torch.float32)[None]


def _still(seed):
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.random((6, 6, 3)).astype(np.float32), (S, S), interpolation=cv2.INTER_CUBIC)
    return img * 2 - 1


def test_consistent_output_costs_nothing_even_while_the_face_moves():
    gt, rel = _moving_clip(_still(0), [0, 3, 6, 8])
    loss = TemporalLoss()
    assert float(loss(gt, gt, rel)) == 0.0
    # an output with its own (wrong) detail that moves with the face is temporally consistent
    out, _ = _moving_clip(_still(0) + 0.3 * _still(1), [0, 3, 6, 8])
    assert float(loss(out, gt, rel)) < 0.01
    # static clips: a constant error costs exactly nothing
    static = gt[:, :1].expand(1, T, 3, S, S)
    ident = torch.eye(2, 3).expand(1, T, 2, 3)
    assert float(loss(static + 0.2, static, ident)) == pytest.approx(0.0, abs=1e-6)


def test_flicker_is_penalised_and_a_frozen_output_too():
    gt, rel = _moving_clip(_still(0), [0, 3, 6, 8])
    g = torch.Generator().manual_seed(0)
    flicker = gt + 0.1 * torch.randn(gt.shape, generator=g)
    loss = TemporalLoss(loss_weight=2.0)
    value = float(loss(flicker, gt, rel))
    # E|n_t - W n_t-1| for independent N(0, 0.1) noise is about 0.1 * 2 / sqrt(pi) (less: bilinear smooths)
    assert 2 * 0.08 < value < 2 * 0.12
    frozen = gt[:, :1].expand_as(gt)  # ignores the true motion: the GT's change is missing
    assert float(loss(frozen, gt, rel)) > 0.05
    with pytest.raises(ValueError, match="at least 2 frames"):
        loss(gt[:, :1], gt[:, :1], rel[:, :1])


def test_gradient_flows_to_the_output_only_and_registry_builds_it():
    gt, rel = _moving_clip(_still(0), [0, 2, 4, 6])
    out = (gt + 0.05 * torch.randn(gt.shape)).requires_grad_(True)
    loss = build_loss({"type": "TemporalLoss", "loss_weight": 1.0})
    loss(out, gt, rel).backward()
    assert out.grad.abs().sum() > 0


def test_identity_consistency_counts_only_the_change_the_gt_does_not_have():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 16))
    loss = TemporalIdentityLoss(net, loss_weight=1.0, size=32)
    gt, _ = _moving_clip(_still(0), [0, 3, 6, 8])
    assert float(loss(gt, gt)) == 0.0
    assert float(loss(gt + 0.5, gt)) == pytest.approx(0.0, abs=1e-5)  # a constant offset does not flicker
    alternating = gt.clone()
    alternating[:, 1::2] += 0.5
    assert float(loss(alternating, gt)) > 0.01
    assert all(not p.requires_grad for p in net.parameters())
