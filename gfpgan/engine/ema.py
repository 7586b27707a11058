"""Exponential moving average (EMA) of the generator's weights.

GFP-GAN evaluates and releases the EMA generator (``params_ema``), updated after every generator
step with decay ``0.5 ** (32 / (10 * 1000))`` (~0.997784): the weight of a step halves every
~312 iterations, i.e. every 10k images at the reference's global batch of 32 in StyleGAN2's
``ema_kimg`` terms.
"""

import copy
from typing import Optional

import torch
from torch import nn

DEFAULT_EMA_DECAY = 0.5 ** (32 / (10 * 1000))


def unwrap(net: nn.Module) -> nn.Module:
    """The plain module under DDP (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    while True:
        if hasattr(net, "_orig_mod"):
            net = net._orig_mod
        elif isinstance(net, nn.parallel.DistributedDataParallel):
            net = net.module
        else:
            return net


class ModelEMA:
    """A frozen copy of a network whose parameters track the live ones.

    ``ema = decay * ema + (1 - decay) * live`` for parameters; buffers (e.g. StyleGAN2's noise
    maps) are copied as they are.

    Args:
        model: The live network (may be DDP/compile-wrapped; the plain module is copied).
        decay: EMA decay in [0, 1].
    """

    def __init__(self, model: nn.Module, decay: float = DEFAULT_EMA_DECAY):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(unwrap(model)).eval()
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, decay: Optional[float] = None) -> None:
        """Move the EMA one step towards ``model`` (call after the optimizer step)."""
        d = self.decay if decay is None else float(decay)
        live = unwrap(model)
        ema_p = list(self.module.parameters())
        live_p = list(live.parameters())
        if len(ema_p) != len(live_p):
            raise RuntimeError("EMA and live network have different parameter lists")
        # lerp_: ema + (1 - d) * (live - ema) == d * ema + (1 - d) * live
        torch._foreach_lerp_(ema_p, live_p, 1.0 - d)  # no_grad: the live ones need no detach
        for eb, lb in zip(self.module.buffers(), live.buffers()):
            eb.copy_(lb)

    @torch.no_grad()
    def copy_from(self, model: nn.Module) -> None:
        """Set the EMA equal to ``model`` (e.g. after loading a pretrained generator)."""
        self.module.load_state_dict(unwrap(model).state_dict())

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state_dict: dict, strict: bool = True):
        return self.module.load_state_dict(state_dict, strict=strict)
