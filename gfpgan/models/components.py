"""Helpers of the GFPGAN model: component crops, image pyramid, optimizers, schedulers, weights.

Kept apart from ``gfpgan_model.py`` so that the model file reads as the training recipe: what is
built, and the generator / discriminator alternation of one step.
"""

import inspect
import logging
import math
import os
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torchvision.ops import roi_align

from gfpgan.dist import DistInfo
from gfpgan.errors import UserError
from gfpgan.legacy import check_state_dict, load_state_dict
from gfpgan.losses import IdentityLoss
from gfpgan.registry import ARCH_REGISTRY

logger = logging.getLogger("gfpgan")

# The three facial components of the recipe: options key suffix and crop side at out_size 512.
COMPONENTS = ("left_eye", "right_eye", "mouth")
CROP_SIZE_512 = {"left_eye": 80, "right_eye": 80, "mouth": 120}


def component_crop_size(name: str, out_size: int) -> int:
    """Side of the ROI crop of a component for a generator of ``out_size``.

    The reference scales the 80/120 crops by ``int(out_size / 512)``, which is 0 below 512 (a
    crash) and also multiplies the crop's *pixel values* by that factor at 1024. Here the size is
    scaled by ``out_size / 512`` (rounded, at least 8) and the pixel values are left alone; at 512
    both agree.
    """
    return max(8, round(CROP_SIZE_512[name] * out_size / 512))


def crop_components(img: torch.Tensor, locs: Dict[str, torch.Tensor],
                    out_size: int) -> Dict[str, torch.Tensor]:
    """Crop eyes and mouth with ``torchvision.ops.roi_align``.

    Args:
        img: (B, 3, S, S) images.
        locs: {component: (B, 4) float boxes x1, y1, x2, y2 in ``img`` pixels}.
        out_size: Generator size (sets the crop side, see :func:`component_crop_size`).
    Returns:
        {component: (B, 3, s, s) crops}.
    """
    batch_idx = torch.arange(img.shape[0], device=img.device, dtype=img.dtype).unsqueeze(1)
    crops = {}
    for name, boxes in locs.items():
        rois = torch.cat([batch_idx, boxes.to(img.device, img.dtype)], dim=1)  # (B, 5) rows
        size = component_crop_size(name, out_size)
        # Defaults of the reference (spatial_scale 1, adaptive sampling, aligned=False).
        crops[name] = roi_align(img, rois, output_size=size)
    return crops


def image_pyramid(gt: torch.Tensor, levels: int) -> List[torch.Tensor]:
    """GT pyramid for the intermediate-restoration loss, coarsest first.

    Args:
        gt: (B, 3, S, S).
        levels: Number of levels (log2(S) - 2 for sizes 8 .. S).
    Returns:
        ``levels`` tensors of sides S / 2^(levels-1) .. S, each a bilinear x0.5 of the next.
    """
    out = [gt]
    for _ in range(levels - 1):
        out.insert(0, F.interpolate(out[0], scale_factor=0.5, mode="bilinear", align_corners=False))
    return out


def load_weights(net: nn.Module, path: str, key: Optional[str], strict: bool, what: str) -> None:
    """Load ``path`` into ``net`` (``weights_only``), picking ``key`` from an official ``.pth``.

    Args:
        net: Plain (unwrapped) network.
        path: A ``.pth`` / ``.safetensors`` file.
        key: 'params_ema' / 'params' / None (None: a bare state dict, or the file's preferred key).
        strict: Require matching key sets.
        what: Option name for error messages (e.g. 'path.pretrain_network_g').
    """
    if not os.path.isfile(path):
        raise UserError(f"{what}: weight file {path} does not exist; fix the path in the options file.")
    try:
        state = load_state_dict(path, key=key)
    except UserError:
        # BasicSR's load_network: a file without ``key`` but with 'params' loads its 'params'
        # (an official file saved without an EMA, read with the recipe's param_key_g: params_ema)
        if key in (None, "params"):
            raise
        try:
            state = load_state_dict(path, key="params")
        except UserError:
            raise UserError(f"{what}: {path} has neither {key!r} nor 'params'; set its param_key "
                            f"option to the key that holds the network's tensors (~: the whole file)."
                            ) from None
        logger.info("%s: %s has no %r, loaded its 'params' (as BasicSR does)", what, path, key)
    check_state_dict(net, state, path, strict=strict)  # one UserError sentence on a mismatch
    result = net.load_state_dict(state, strict=strict)
    if not strict and (result.missing_keys or result.unexpected_keys):
        logger.info("%s: loaded %s non-strictly (%d missing, %d unexpected keys)", what, path,
                    len(result.missing_keys), len(result.unexpected_keys))


def build_optimizer(params: Iterable[nn.Parameter], cfg: dict, reg_ratio: float = 1.0,
                    betas: Sequence[float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """Optimizer from an options block; lazy-regularisation ratio applied to lr and betas.

    StyleGAN2's lazy R1 (every k steps) is compensated by ``lr * c`` and ``betas ** c`` with
    ``c = k / (k + 1)``; ``reg_ratio=1`` leaves the block as written.

    Args:
        params: Trainable parameters only (frozen ones get no optimizer state).
        cfg: {'type': 'Adam'|'AdamW'|'SGD', 'lr': ..., 'betas': [b1, b2], 'weight_decay': ...};
            Adam/AdamW on CUDA are ``fused`` unless the block sets ``fused`` or ``foreach``.
        reg_ratio: c above.
        betas: Adam's betas when the block has none: a recipe's own (the reference hard-codes
            (0, 0.99) for G and D, so its option files, which spell none, mean those).
    """
    cfg = dict(cfg)
    kind = cfg.pop("type", "Adam")
    cfg["lr"] = float(cfg.get("lr", 1e-3)) * reg_ratio
    params = list(params)
    if kind in ("Adam", "AdamW"):
        betas = cfg.get("betas", betas)
        cfg["betas"] = tuple(float(b) ** reg_ratio for b in betas)
        if "fused" not in cfg and "foreach" not in cfg and params and all(p.is_cuda for p in params):
            # one kernel per step on CUDA, and no per-parameter host sync of the step counts
            cfg["fused"] = True
        return getattr(torch.optim, kind)(params, **cfg)
    if kind == "SGD":
        return torch.optim.SGD(params, **cfg)
    raise UserError(f"optimizer type {kind!r} is not supported; use Adam, AdamW or SGD.")


class _CosineRestart:
    """Cosine annealing with restarts (BasicSR's CosineAnnealingRestartLR) as a LambdaLR factor."""

    def __init__(self, periods: Sequence[int], restart_weights: Sequence[float], eta_min_ratio: float):
        self.periods, self.weights, self.eta_min_ratio = list(periods), list(restart_weights), eta_min_ratio

    def __call__(self, step: int) -> float:
        start = 0
        for period, weight in zip(self.periods, self.weights):
            if step < start + period:
                cos = 0.5 * (1 + math.cos(math.pi * (step - start) / period))
                return self.eta_min_ratio + weight * (1 - self.eta_min_ratio) * cos
            start += period
        return self.eta_min_ratio


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Optional[dict]):
    """Learning-rate scheduler stepped once per iteration; None when ``cfg`` is empty."""
    if not cfg:
        return None
    cfg = dict(cfg)
    kind = cfg.pop("type")
    if kind == "MultiStepLR":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.get("milestones", [])),
                                                    gamma=float(cfg.get("gamma", 0.5)))
    if kind == "CosineAnnealingLR":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(cfg["T_max"]),
                                                          eta_min=float(cfg.get("eta_min", 0.0)))
    if kind == "CosineAnnealingRestartLR":
        base = optimizer.param_groups[0]["lr"]
        fn = _CosineRestart(cfg["periods"], cfg.get("restart_weights", [1] * len(cfg["periods"])),
                            float(cfg.get("eta_min", 0.0)) / base if base else 0.0)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
    if kind == "ConstantLR":
        return None
    raise UserError(f"scheduler type {kind!r} is not supported; use MultiStepLR, CosineAnnealingLR, "
                    f"CosineAnnealingRestartLR or ConstantLR.")


def unused_without_pyramid(net_g: nn.Module, lq: torch.Tensor) -> List[str]:
    """Names of the generator's trainable parameters that ``return_rgb=False`` leaves unused.

    Found by one probe forward/backward on a single sample (cheap, done once per run and once
    per resume), so it holds for any generator arch, not only for ``toRGB.*`` names.
    """
    named = [(n, p) for n, p in net_g.named_parameters() if p.requires_grad]
    with torch.enable_grad():
        out, _ = net_g(lq[:1], return_rgb=False)
        grads = torch.autograd.grad(out.float().sum(), [p for _, p in named], allow_unused=True)
    return [n for (n, _), g in zip(named, grads) if g is None]


def build_identity_loss(net_opt: Optional[dict], train: dict, path: dict,
                        device: torch.device) -> Optional[IdentityLoss]:
    """The ArcFace identity loss from ``network_identity`` + ``path.pretrain_network_identity``.

    Args:
        net_opt: The ``network_identity`` block, or None.
        train, path: The validated ``train`` and ``path`` options.
        device: Where the loss runs.
    Returns:
        None when no identity network is configured or its weight (``train.identity_opt``'s
        ``loss_weight``, else ``train.identity_weight``) is 0. The network is frozen and never
        DDP-wrapped.
    """
    if not net_opt:
        return None
    weight = float((train["identity_opt"] or {}).get("loss_weight", train["identity_weight"]))
    if weight <= 0:
        logger.info("network_identity is configured but its weight is 0: no identity loss")
        return None
    net = ARCH_REGISTRY.build(net_opt)
    if path["pretrain_network_identity"]:
        load_weights(net, path["pretrain_network_identity"], path["param_key_identity"],
                     path["strict_load_identity"], "path.pretrain_network_identity")
    else:
        logger.warning("path.pretrain_network_identity is not set: the identity loss uses a random ArcFace")
    return IdentityLoss(net, loss_weight=weight).to(device)


def wrap_ddp(net: nn.Module, dist: DistInfo, find_unused: bool = False) -> nn.Module:
    """``net`` in its own DDP wrapper when ``dist`` has several ranks, else ``net`` itself."""
    if not dist.distributed:
        return net
    # A (1, C) weight (a final linear layer) gets its gradient with strides (1, 1) where the
    # bucket has (C, 1): the same memory order, but DDP warns of a slow copy once per rank.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    ids = [dist.device.index] if dist.device.type == "cuda" else None
    # Buffers are constants (noise maps, blur kernels): synced once at wrap time, not every
    # step. torch >= 2.15 spells this forward_sync_buffers (broadcast_buffers is deprecated).
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        sync = {"forward_sync_buffers": False}
    else:
        sync = {"broadcast_buffers": False}
    return DistributedDataParallel(net, device_ids=ids, find_unused_parameters=find_unused, **sync)


def maybe_compile(net: nn.Module, mode: Union[bool, str]) -> Callable:
    """``torch.compile(net)`` when ``mode`` is true or a torch.compile mode, else ``net``."""
    if not mode:
        return net
    return torch.compile(net, mode=None if mode is True else mode)


@dataclass
class TrainedNet:
    """One trainable network and the ways a training step runs it.

    Attributes:
        module: The plain network: saved, loaded, EMA-tracked; its parameters are optimized.
        wrapped: Its DDP wrapper (``module`` itself on one rank). R1 differentiates D twice,
            which compiled graphs cannot, so that pass runs ``wrapped`` eagerly.
        call: ``wrapped``, compiled when ``train.compile`` asks: the pass that trains the network.
        frozen_call: ``module``, compiled likewise: scores G's output while the network is frozen
            (no DDP wrapper there, so nothing of it is all-reduced).
    """

    module: nn.Module
    wrapped: nn.Module
    call: Callable
    frozen_call: Callable

    @classmethod
    def build(cls, net: nn.Module, dist: DistInfo, find_unused: bool,
              compile_mode: Union[bool, str]) -> "TrainedNet":
        """Wrap ``net`` for DDP (one wrapper per trainable network) and compile its calls."""
        wrapped = wrap_ddp(net, dist, find_unused)
        return cls(net, wrapped, maybe_compile(wrapped, compile_mode), maybe_compile(net, compile_mode))
