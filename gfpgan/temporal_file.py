"""Temporal files: the learned temporal module, self-describing, naming the base it was trained on.

A temporal file is one of our ``.safetensors`` files (:mod:`gfpgan.checkpoint`) whose config says
``arch: TemporalGFPGAN`` with the adapter's kwargs, and whose ``extra`` names the base generator
it was trained on: its architecture, kwargs, a display name and the sha256 of its weights
(:func:`gfpgan.checkpoint.state_dict_sha256`, the same for the official ``.pth`` and a converted
``.safetensors`` of the same weights). It holds the adapter's weights only (small; use it with
``--model BASE --temporal FILE``) or, with ``include_base``, the base's too (one file).
A base whose weights differ from the one named gets one sentence; so does a file that is not a
temporal file.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

import torch
from torch import nn

from gfpgan.checkpoint import instantiate, load_safetensors, read_config, save_network, state_dict_sha256
from gfpgan.errors import UserError

__all__ = ["ARCH", "save_temporal", "read_temporal_config", "load_temporal", "adapter_kwargs"]

ARCH = "TemporalGFPGAN"
PathLike = Union[str, os.PathLike]


def adapter_kwargs(net: nn.Module) -> Dict[str, Any]:
    """The constructor kwargs of a TemporalGFPGAN besides its base (the fusion's only when it is on,
    so a ConvGRU-only module writes the same config as before fusion existed)."""
    kwargs = {"num_scales": net.num_scales, "hidden_channels": net.hidden_channels,
              "gate_sharpness": net.gate_sharpness}
    if net.fusion:
        kwargs.update(fusion=True, fusion_channels=net.fusion_channels, fusion_scale=net.fusion_scale)
        if net.fusion_mode != "residual":
            kwargs["fusion_mode"] = net.fusion_mode
    if net.motion_refine:
        kwargs["motion_refine"] = True
    return kwargs


def save_temporal(path: PathLike, net: nn.Module, base_name: str = "", include_base: bool = False,
                  base_arch: Optional[str] = None, base_kwargs: Optional[Dict[str, Any]] = None,
                  dtype: Optional[torch.dtype] = None) -> None:
    """Write ``net`` (a TemporalGFPGAN) as a temporal file, atomically.

    Args:
        path: destination ``.safetensors``.
        net: the adapter with its base.
        base_name: how to call the base in messages (a card name or file name).
        include_base: also store the base's weights (needs ``base_arch`` and ``base_kwargs``).
        base_arch, base_kwargs: how to rebuild the base (required with ``include_base``).
        dtype: e.g. ``torch.float16`` for a smaller file.
    """
    if include_base and (base_arch is None or base_kwargs is None):
        raise ValueError("include_base needs base_arch and base_kwargs")
    sd = net.state_dict()
    tensors = sd if include_base else {k: v for k, v in sd.items() if not k.startswith("base.")}
    extra = {"kind": "temporal", "base_name": str(base_name),
             "base_sha256": state_dict_sha256(net.base), "contains_base": bool(include_base),
             "base_arch": base_arch, "base_kwargs": base_kwargs}
    save_network(path, net, ARCH, adapter_kwargs(net), extra=extra, dtype=dtype, tensors=tensors)


def read_temporal_config(path: PathLike) -> Dict[str, Any]:
    """The config of a temporal file; a UserError for any other file."""
    config = read_config(path)
    if config["arch"] != ARCH or config["extra"].get("kind") != "temporal":
        raise UserError(f"{path} is not a temporal file (it holds a {config['arch']}); give the "
                        f"temporal.safetensors that temporal training wrote.")
    return config


def load_temporal(path: PathLike, base: Optional[nn.Module] = None) -> nn.Module:
    """Rebuild the TemporalGFPGAN of a temporal file, on the CPU in eval mode.

    Args:
        path: the temporal file.
        base: the base generator; required unless the file contains its base, and then it must
            have the weights the file was trained on.

    Raises:
        UserError: not a temporal file, a missing or mismatched base, damaged weights.
    """
    config = read_temporal_config(path)
    extra, kwargs = config["extra"], config["kwargs"]
    name = extra.get("base_name") or "its base"
    want = extra["base_sha256"]
    if base is None:
        if not extra.get("contains_base"):
            raise UserError(f"{path} holds only the temporal module; give the base it was trained "
                            f"on ({name}, weights sha256 {want[:12]}) with --model.")
        base = instantiate(extra["base_arch"], extra["base_kwargs"], source=path)
        sd = load_safetensors(path)
        base.load_state_dict({k[5:]: v for k, v in sd.items() if k.startswith("base.")})
    got = state_dict_sha256(base)
    if got != want:
        raise UserError(f"{path} was trained on {name} (weights sha256 {want[:12]}), not on the "
                        f"given model (sha256 {got[:12]}); give that base with --model.")
    net = instantiate(ARCH, {"base": base, **kwargs}, source=path)
    sd = {k: v for k, v in load_safetensors(path).items() if not k.startswith("base.")}
    expected = {k for k in net.state_dict() if not k.startswith("base.")}
    if set(sd) != expected:
        missing, extra_keys = sorted(expected - set(sd)), sorted(set(sd) - expected)
        raise UserError(f"{path} does not fit its own config (missing {missing[:3]}, unexpected "
                        f"{extra_keys[:3]}); write it again.")
    net.load_state_dict(sd, strict=False)
    return net.eval()
