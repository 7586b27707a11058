"""One ``build_network(spec)``: a network with its weights, from a file or a model card.

The top of the weights stack: :mod:`gfpgan.checkpoint` (our format) <- :mod:`gfpgan.legacy`
(official ``.pth`` files, architecture inference) <- :mod:`gfpgan.model_cards` <- this module.
Every layer imports only the ones below it, so nothing here hides a cycle.
"""

import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import nn

from gfpgan import model_cards
from gfpgan.checkpoint import PathLike, _check_file, _sniff, instantiate, read_config
from gfpgan.errors import UserError
from gfpgan.legacy import check_state_dict, infer_arch, load_checkpoint

Spec = Union[str, PathLike, model_cards.ModelCard]


def _is_card_name(spec: Any) -> bool:
    return (isinstance(spec, str) and "/" not in spec and os.sep not in spec and not Path(spec).exists()
            and Path(spec).suffix not in (".pth", ".pt", ".safetensors"))


def load_network(spec: Spec, key: Optional[str] = None, strict: bool = True,
                 card: Optional[Union[str, model_cards.ModelCard]] = None
                 ) -> Tuple[nn.Module, str, Dict[str, Any], Path]:
    """Like :func:`build_network` (on the CPU, eval mode), and also say what was built.

    Returns:
        (network, ARCH_REGISTRY name, constructor kwargs, weights file).
    """
    if _is_card_name(spec):
        spec = model_cards.load_card(spec)  # a card name such as "v1.4"
    if isinstance(card, (str, os.PathLike)):
        card = model_cards.load_card(card)
    if isinstance(spec, model_cards.ModelCard):
        card, path = spec, model_cards.resolve_weights(spec)
    else:
        path = _check_file(spec)
    if _sniff(path) == "safetensors":
        config = read_config(path)
        arch, kwargs = config["arch"], config["kwargs"]
    elif card is not None:
        if card.arch is None:
            raise UserError(f"model card {card.name} describes auxiliary weights ({card.kind}), "
                            f"not a network this framework builds")
        arch, kwargs = card.arch, dict(card.kwargs)
    else:
        arch = kwargs = None
    sd, _ = load_checkpoint(path, key, prefer=card.param_key if card is not None else None)
    if arch is None:
        try:
            arch, kwargs = infer_arch(sd)
        except UserError as exc:
            raise UserError(f"checkpoint {path}: {exc}") from None
    net = instantiate(arch, kwargs, source=path)
    check_state_dict(net, sd, path, strict=strict)
    net.load_state_dict(sd, strict=strict)  # copy_ casts fp16 files to the network's dtype
    return net.eval(), arch, dict(kwargs), path


def build_network(spec: Spec, device: Union[str, torch.device] = "cpu", key: Optional[str] = None,
                  strict: bool = True, card: Optional[Union[str, model_cards.ModelCard]] = None
                  ) -> nn.Module:
    """Rebuild a network, with its weights loaded, from one path or one model card.

    Args:
        spec: one of our ``.safetensors`` files (arch and kwargs from its header); an official
            ``.pth`` (arch and kwargs from ``card``, else inferred by
            :func:`gfpgan.legacy.infer_arch`); a :class:`~gfpgan.model_cards.ModelCard`, or a
            card name such as ``"v1.4"`` (its weights are found with ``resolve_weights``).
        device: where to put the network.
        key: top-level key of a ``.pth`` to use (default: the card's ``param_key`` when the
            file has it, else ``params_ema`` > ``params`` > bare).
        strict: require exactly the network's keys (shapes must always match).
        card: a card (or card name) that describes a ``.pth`` given as ``spec``.

    Returns:
        The network in eval mode on ``device``, with the network's own dtype (fp16 files are cast).
    """
    return load_network(spec, key, strict, card)[0].to(device)
