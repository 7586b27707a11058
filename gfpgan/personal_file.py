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
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Union

from torch import nn

from gfpgan.checkpoint import load_safetensors, read_config, save_network, state_dict_sha256
from gfpgan.errors import UserError

__all__ = ["KIND", "SCOPES", "tuned_names", "save_personal", "read_personal_config", "apply_personal"]

KIND = "personal"
PathLike = Union[str, os.PathLike]
# What personalization tunes. style: the decoder's style modulations (which face the prior draws;
# 5% of the 512 generator); adapter: those and the CS-SFT conditions (how the degraded face's
# features steer the prior; 17%); full: everything.
SCOPES = ("adapter", "style", "full")


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
