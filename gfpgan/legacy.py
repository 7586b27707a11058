"""Official GFPGAN ``.pth`` files: safe reading, key choice, architecture inference, matching.

Official files load with ``torch.load(weights_only=True)`` (``params_ema``, else ``params``, else
a bare state dict; a DDP ``module.`` prefix is stripped). Their architecture comes from a model
card (:mod:`gfpgan.model_cards`) or is inferred from key names and tensor shapes
(:func:`infer_arch`). :func:`load_state_dict` reads either kind of file (ours through
:mod:`gfpgan.checkpoint`), and :func:`check_state_dict` says in one sentence why a state dict
does not fit a network. (stylegan3 keeps its old formats in a ``legacy.py`` the same way.)

Layer: above :mod:`gfpgan.checkpoint`, below :mod:`gfpgan.model_cards`; it imports neither
cards nor the network builder.
"""

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from gfpgan.checkpoint import PathLike, _check_file, _few, _sniff, load_safetensors
from gfpgan.errors import UserError

PREFERRED_KEYS = ("params_ema", "params")


def _torch_load(path: Path, kind: str) -> Any:
    if kind == "zip" and not zipfile.is_zipfile(path):
        raise UserError(f"checkpoint {path} is truncated or corrupt (its zip directory is missing); "
                        f"download it again")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=(kind == "zip"))
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            found = re.search(r"GLOBAL ([\w.]+)", str(exc))
            what = f" ({found.group(1)})" if found else ""
            raise UserError(f"checkpoint {path} contains pickled Python objects{what} that cannot be loaded "
                            f"safely with weights_only=True; re-save only its tensors (a state dict) from a "
                            f"trusted environment") from None
        raise UserError(f"checkpoint {path} is corrupt ({exc}); download it again") from None
    except (EOFError, RuntimeError, ValueError, OSError, zipfile.BadZipFile) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"checkpoint {path} is truncated or corrupt ({reason}); download it again") from None


def load_checkpoint(path: PathLike, key: Optional[str] = None, prefer: Optional[str] = None
                    ) -> Tuple[Dict[str, torch.Tensor], Optional[str]]:
    """Like :func:`load_state_dict`, and also return the top-level key used (None: bare / ours).

    ``prefer`` (a model card's ``param_key``) is used when the file has it; unlike ``key`` it
    falls back to ``params_ema`` > ``params`` > bare, so a wrong card reports the real mismatch.
    """
    path = _check_file(path)
    kind = _sniff(path)
    if kind == "safetensors":
        return load_safetensors(path), None
    if kind not in ("zip", "pickle"):
        raise UserError(f"{path} is not a checkpoint (it looks like {kind}); "
                        f"pass a .pth or .safetensors file")
    obj = _torch_load(path, kind)
    if not isinstance(obj, dict):
        raise UserError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict; "
                        f"re-save it with torch.save(net.state_dict())")
    if key is not None:
        if key not in obj:
            if all(torch.is_tensor(v) for v in obj.values()):
                raise UserError(f"checkpoint {path} is a bare state dict without a {key!r} key; "
                                f"load it without a key")
            raise UserError(f"checkpoint {path} has no key {key!r} (top-level keys: {_few(obj)}); "
                            f"pass one of them as the key")
        sd, used = obj[key], key
    else:
        used = next((k for k in (prefer, *PREFERRED_KEYS) if k is not None and k in obj), None)
        sd = obj[used] if used else obj
    if not isinstance(sd, dict) or not sd or not all(torch.is_tensor(v) for v in sd.values()):
        where = f"under {used!r}" if used else "at its top level"
        raise UserError(f"checkpoint {path} holds no state dict {where} (top-level keys: {_few(obj)}); "
                        f"pass the key that holds the network's tensors")
    # DataParallel / DDP saves prefix every key with "module."; strip it as BasicSR does
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd, used


def load_state_dict(path: PathLike, key: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Load a network's state dict from our ``.safetensors`` or an official ``.pth`` (on the CPU).

    Args:
        path: the file.
        key: for ``.pth`` files, the top-level key to use (e.g. ``"params"``); by default
            ``params_ema``, else ``params``, else the file is a bare state dict. Ignored for
            ``.safetensors`` files, which hold one network.

    Returns:
        name -> tensor, as stored (dtype unchanged).
    """
    return load_checkpoint(path, key)[0]


def check_state_dict(net: nn.Module, sd: Dict[str, torch.Tensor], path: PathLike = "<state dict>",
                     strict: bool = True) -> None:
    """Raise one UserError sentence if ``sd`` does not fit ``net``.

    Lists the first few missing, unexpected and wrong-shape keys with their counts. With
    ``strict=False`` only wrong shapes are errors (missing/unexpected keys are allowed).
    """
    expected = net.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k} {list(sd[k].shape)} vs {list(v.shape)}" for k, v in expected.items()
             if k in sd and sd[k].shape != v.shape]
    if not wrong and (not strict or not (missing or unexpected)):
        return
    parts = []
    if missing and strict:
        parts.append(f"{len(missing)} missing key(s) ({_few(missing, 3)})")
    if unexpected and strict:
        parts.append(f"{len(unexpected)} unexpected key(s) ({_few(unexpected, 3)})")
    if wrong:
        parts.append(f"{len(wrong)} key(s) with a different shape, file vs network ({_few(wrong, 3)})")
    hint = ""
    guessed = _guess_arch(sd)
    if guessed and guessed != type(net).__name__:
        hint = f"; the file looks like a {guessed} checkpoint"
    raise UserError(f"checkpoint {path} does not match {type(net).__name__}: {'; '.join(parts)}{hint}; "
                    f"use the model card or architecture the file was saved with")


def _guess_arch(sd: Dict[str, torch.Tensor]) -> Optional[str]:
    if "conv_body_first.weight" in sd and "stylegan_decoder.constant_input.weight" in sd:
        return "GFPGANv1Clean"
    if "conv_body_first.0.weight" in sd and "stylegan_decoder.constant_input.weight" in sd:
        return "GFPGANv1"
    return None


def infer_arch(sd: Dict[str, torch.Tensor]) -> Tuple[str, Dict[str, Any]]:
    """Infer the architecture and kwargs of a GFPGAN generator state dict from names and shapes.

    Clean vs original comes from the key naming (``conv_body_first.weight`` for ``GFPGANv1Clean``,
    ``conv_body_first.0.weight`` for the ``ConvLayer``-sequential ``GFPGANv1``). ``out_size`` is
    ``2 ** (number of toRGB layers + 2)``, ``num_style_feat`` and ``num_mlp`` come from the style
    MLP, ``narrow`` from the constant input's channels (512 * narrow), ``channel_multiplier`` from
    the 64 px decoder conv (256 * cm * narrow; it changes no shape below 64 px, where the arch's
    default is kept), ``different_w`` from ``final_linear``'s outputs and ``sft_half`` from the
    SFT convs. ``input_is_latent`` is not in the weights: every official release uses True.

    Returns:
        (ARCH_REGISTRY name, constructor kwargs). Raises UserError for other networks.
    """
    arch = _guess_arch(sd)
    if arch is None:
        raise UserError("cannot tell the architecture from the key names (this is not a GFPGAN generator "
                        f"state dict; first keys: {_few(sd, 3)}); pass a model card")
    n_rgb = len([k for k in sd if re.fullmatch(r"toRGB\.\d+\.weight", k)])
    out_size = 2 ** (n_rgb + 2)
    num_style_feat = sd["stylegan_decoder.style_mlp.1.weight"].shape[0]
    num_mlp = len([k for k in sd if re.fullmatch(r"stylegan_decoder\.style_mlp\.\d+\.weight", k)])
    c4 = sd["stylegan_decoder.constant_input.weight"].shape[1]
    narrow = c4 / 512
    cm = 1  # the archs' default; the multiplier changes no shape below 64 px
    conv64 = sd.get("stylegan_decoder.style_convs.6.modulated_conv.weight")
    if out_size >= 64 and conv64 is not None:
        cm = round(conv64.shape[1] / (256 * narrow))
    n_latent = 2 * (n_rgb + 2) - 2
    different_w = sd["final_linear.weight"].shape[0] == n_latent * num_style_feat
    c8 = sd["condition_scale.0.0.weight"].shape[0]
    sft_half = sd["condition_scale.0.2.weight"].shape[0] == c8
    kwargs = dict(out_size=out_size, num_style_feat=num_style_feat, channel_multiplier=cm,
                  decoder_load_path=None, fix_decoder=arch == "GFPGANv1", num_mlp=num_mlp,
                  input_is_latent=True, different_w=different_w, narrow=narrow, sft_half=sft_half)
    if arch == "GFPGANv1":
        kwargs.update(resample_kernel=[1, 3, 3, 1], lr_mlp=0.01)
    return arch, kwargs
