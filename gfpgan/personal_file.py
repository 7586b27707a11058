"""Personal files: a restorer tuned on one person, stored as the few tensors that changed.

A personal file is one of our ``.safetensors`` files (:mod:`gfpgan.checkpoint`) whose config
names the base generator's architecture and kwargs and whose ``extra`` says ``kind: personal``,
the base's display name and the sha256 of its weights (:func:`gfpgan.checkpoint.state_dict_sha256`),
the tuning scope and what the tuning measured. It holds only the tuned tensors (the CS-SFT
conditions and the decoder's style modulations for the ``adapter`` scope, 17% of the 512
generator; the modulations alone for ``style``, 5%), and cannot be applied to another base: a
base with other weights gets one sentence.

    net = build_network("generator.safetensors")
    apply_personal("person.safetensors", net)   # checks the base, then replaces the tuned tensors

A file tuned on one person is wrong for anyone else, and there is no identity model offline to
tell people apart. :class:`GatedPersonal` asks each face instead: it runs the base and the tuned
generator and keeps the tuned output only where it explains the degraded input better than the
base's (data consistency: both outputs and the input compared at a quarter of the crop's side,
where the degradation left the input's content; noise averages out there). The personal output's
weight is ``clip(margin / gate_db, 0, 1)``, ``margin`` the gain in dB of the tuned output's
consistency over the base's: a face of the person gains (measured on the benchmark's far faces:
+5.8 to +6.8 dB), another person's face loses (-1.9 to -3.5 dB) and keeps the base's output.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Dict, List, Union

import torch
import torch.nn.functional as F
from torch import nn

from gfpgan.checkpoint import load_safetensors, read_config, save_network, state_dict_sha256
from gfpgan.errors import UserError

__all__ = ["KIND", "SCOPES", "GATE_DB", "tuned_names", "save_personal", "read_personal_config",
           "apply_personal", "consistency_margin", "GatedPersonal", "personal_generator"]

KIND = "personal"
PathLike = Union[str, os.PathLike]
# What personalization tunes. style: the decoder's style modulations (which face the prior draws;
# 5% of the 512 generator); adapter: those and the CS-SFT conditions (how the degraded face's
# features steer the prior; 17%); full: everything.
SCOPES = ("adapter", "style", "full")
GATE_DB = 1.0  # --personal-gate: the consistency margin (dB) at which the tuned output is fully trusted


def tuned_names(net: nn.Module, scope: str) -> List[str]:
    """The parameter names of ``net`` that personalization tunes in ``scope``.

    Raises:
        ValueError: an unknown scope, or a network with none of the adapter's layers.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
    names = [n for n, _ in net.named_parameters()]
    if scope == "full":
        return names
    style = [n for n in names if n.startswith("stylegan_decoder.") and ".modulation." in n]
    conditions = [n for n in names if n.startswith(("condition_scale.", "condition_shift."))]
    picked = style if scope == "style" else [n for n in names if n in set(style + conditions)]
    if not picked:
        raise ValueError(f"{type(net).__name__} has no CS-SFT conditions or style modulations to tune")
    return picked


def save_personal(path: PathLike, net: nn.Module, names: List[str], base_sha256: str, base_arch: str,
                  base_kwargs: Dict[str, Any], base_name: str = "", scope: str = "adapter",
                  info: Dict[str, Any] = None) -> None:
    """Write the tuned tensors ``names`` of ``net`` as a personal file, atomically.

    Args:
        net: the tuned generator.
        names: its tuned parameter names (:func:`tuned_names`).
        base_sha256: the weights sha256 of the base it was tuned from.
        base_arch, base_kwargs: how to rebuild the base (recorded, for messages and tools).
        base_name: how to call the base in messages.
        scope: the tuning scope.
        info: what the tuning measured (targets, iterations, held-out PSNR ...), JSON-serialisable.
    """
    sd = net.state_dict()
    extra = {"kind": KIND, "base_name": str(base_name), "base_sha256": base_sha256, "scope": scope,
             "info": dict(info or {})}
    save_network(path, net, base_arch, base_kwargs, extra=extra,
                 tensors={n: sd[n].detach() for n in names})


def read_personal_config(path: PathLike) -> Dict[str, Any]:
    """The config of a personal file; a UserError for any other file."""
    config = read_config(path)
    if config["extra"].get("kind") != KIND:
        raise UserError(f"{path} is not a personal file; give the .safetensors that "
                        f"`python -m gfpgan.personalize` wrote.")
    return config


def apply_personal(path: PathLike, net: nn.Module) -> nn.Module:
    """Replace ``net``'s tuned tensors with the personal file's, after checking it is the base.

    Returns:
        ``net`` itself, tuned.

    Raises:
        UserError: not a personal file, another base, tensors that do not fit the base.
    """
    config = read_personal_config(path)
    extra = config["extra"]
    name = extra.get("base_name") or "its base"
    got, want = state_dict_sha256(net), extra["base_sha256"]
    if got != want:
        raise UserError(f"{path} was tuned from {name} (weights sha256 {want[:12]}), not from the "
                        f"given model (sha256 {got[:12]}); give that base with --model.")
    tensors = load_safetensors(path)
    own = net.state_dict()  # the file's layout (a network may store a weight reshaped)
    bad = sorted(k for k, v in tensors.items() if k not in own or own[k].shape != v.shape)
    if bad:
        raise UserError(f"{path} holds tensors its base does not have ({bad[:3]}); write it again.")
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=False)
    return net


def consistency_margin(x: torch.Tensor, base_out: torch.Tensor, personal_out: torch.Tensor) -> torch.Tensor:
    """(B,) how much better, in dB, ``personal_out`` explains the degraded faces ``x`` than
    ``base_out`` does: the ratio of their squared errors to ``x`` at a quarter of the side."""
    k = 4 if x.shape[-1] >= 16 else 1

    def err(out):
        return (F.avg_pool2d(out.float(), k) - F.avg_pool2d(x.float(), k)).pow(2).mean((1, 2, 3))
    return 10 * torch.log10(err(base_out).clamp_min(1e-10) / err(personal_out).clamp_min(1e-10))


class GatedPersonal(nn.Module):
    """A base generator and its personalized copy, the copy trusted face by face (module docstring).

    Args:
        base: the base generator.
        personal: the same architecture with the personal file's tensors.
        gate_db: the consistency margin (dB) at which the personal output gets full weight.

    Attributes:
        last_weights: (B,) the personal output's weight per face in this module's last call (a
            copy made to run in another precision keeps its own).
    """

    def __init__(self, base: nn.Module, personal: nn.Module, gate_db: float = GATE_DB):
        super().__init__()
        if gate_db <= 0:
            raise ValueError(f"gate_db must be positive, got {gate_db}")
        self.base, self.personal, self.gate_db = base, personal, float(gate_db)
        self.out_size = int(getattr(base, "out_size", 0) or 2 ** base.log_size)
        self.last_weights = torch.zeros(0)  # the personal output's weight per face, last call

    def forward(self, x: torch.Tensor, return_rgb: bool = False, randomize_noise=None, **kwargs):
        base = self.base(x, return_rgb=False, randomize_noise=randomize_noise)[0]
        tuned = self.personal(x, return_rgb=False, randomize_noise=randomize_noise)[0]
        w = (consistency_margin(x, base, tuned) / self.gate_db).clamp(0, 1)
        self.last_weights = w.detach()  # on the device: no host sync per batch
        w = w.to(base.dtype).view(-1, 1, 1, 1)
        return base + w * (tuned - base), []


def personal_generator(path: PathLike, base: nn.Module, gate_db: float = GATE_DB) -> nn.Module:
    """``base`` (not changed) with the personal file ``path``: a :class:`GatedPersonal` of the two,
    or, with ``gate_db`` 0, the tuned copy alone (every face gets the personal output)."""
    tuned = apply_personal(path, copy.deepcopy(base))
    return tuned if gate_db == 0 else GatedPersonal(base, tuned, gate_db)
