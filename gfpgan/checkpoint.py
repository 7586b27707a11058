"""Network checkpoints: self-describing safetensors files, official ``.pth`` files, atomic writes.

Our format is ONE file per network, ``<name>.safetensors``. Its safetensors metadata header (a
str -> str map) holds, under the key ``gfpgan_video``, one JSON string::

    {"format": "gfpgan-video/1", "arch": "GFPGANv1Clean", "kwargs": {...}, "extra": {...}}

so a single path is enough to rebuild the network (:func:`build_network`). ``arch`` is a name in
``ARCH_REGISTRY``; ``extra`` is free-form provenance (source file, its sha256, the key it came
from, the dtype written). There is no sidecar JSON: one file cannot get out of step with itself.

Official GFPGAN ``.pth`` files load with ``torch.load(weights_only=True)`` (``params_ema``, else
``params``, else a bare state dict). Their architecture comes from a model card
(:mod:`gfpgan.model_cards`) or is inferred from key names and tensor shapes
(:func:`infer_arch`). Every problem with a file (missing, empty, not a checkpoint, truncated, an
unsafe pickle, an unknown architecture, mismatched keys) raises one :class:`UserError` sentence
that names the file.

This module is on the inference path: it imports torch, safetensors and the standard library
only (``gfpgan.archs`` and ``gfpgan.model_cards`` are imported lazily, when needed).
"""

import contextlib
import json
import os
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple, Union

import torch
from torch import nn

from gfpgan.errors import UserError

FORMAT = "gfpgan-video/1"
METADATA_KEY = "gfpgan_video"
PREFERRED_KEYS = ("params_ema", "params")

PathLike = Union[str, os.PathLike]


# ----------------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_target(path: PathLike) -> Iterator[Path]:
    """Yield a temp sibling of ``path``; it replaces ``path`` only if the block succeeds.

    Built on :func:`gfpgan.utils.atomic_path` (temp file in the destination folder, so the final
    rename is atomic), plus an ``fsync`` so that a crash right after the rename cannot leave an
    empty checkpoint behind (data may otherwise still sit in the page cache).
    """
    from gfpgan.utils import atomic_path

    with atomic_path(path) as tmp:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions


def atomic_save_torch(obj: Any, path: PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically (temp file + rename); used for training states."""
    with atomic_target(path) as tmp:
        torch.save(obj, tmp)


def atomic_save_safetensors(tensors: Dict[str, torch.Tensor], path: PathLike,
                            metadata: Optional[Dict[str, str]] = None) -> None:
    """Write ``tensors`` as a safetensors file atomically.

    Tensors are moved to the CPU, made contiguous, and tensors that share memory (tied weights,
    views) are copied, since safetensors refuses shared storage.

    Args:
        tensors: name -> tensor of any shape and dtype.
        path: destination file.
        metadata: str -> str map stored in the file header.
    """
    from safetensors.torch import save_file

    with atomic_target(path) as tmp:
        save_file(_saveable(tensors), str(tmp), metadata=metadata)


def _saveable(tensors: Dict[str, torch.Tensor], dtype: Optional[torch.dtype] = None):
    out, seen = {}, set()
    for name, t in tensors.items():
        if not torch.is_tensor(t):
            raise TypeError(f"state dict entry {name!r} is a {type(t).__name__}, not a tensor")
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        storage = t.untyped_storage()
        whole = storage.nbytes() == t.numel() * t.element_size()
        if storage.data_ptr() in seen or not t.is_contiguous() or not whole:
            t = t.clone(memory_format=torch.contiguous_format)
        if t.numel():
            seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


# ------------------------------------------------------------------------------------ our format
def save_network(path: PathLike, net: nn.Module, arch: str, kwargs: Dict[str, Any],
                 extra: Optional[Dict[str, Any]] = None, dtype: Optional[torch.dtype] = None) -> None:
    """Save ``net``'s state dict with its config as one self-describing ``.safetensors`` file.

    Args:
        path: destination, conventionally ``<name>.safetensors``; written atomically.
        net: the network; its ``state_dict()`` (parameters and persistent buffers) is saved.
        arch: the ``ARCH_REGISTRY`` name that rebuilds it.
        kwargs: constructor kwargs (JSON-serialisable; tuples come back as lists).
        extra: free-form JSON-serialisable provenance stored beside the config.
        dtype: e.g. ``torch.float16`` to halve the file; only floating-point tensors are cast.
            Loading casts back to the network's own dtype.
    """
    config = {"format": FORMAT, "arch": arch, "kwargs": dict(kwargs), "extra": dict(extra or {})}
    if dtype is not None:
        config["extra"]["dtype"] = str(dtype).replace("torch.", "")
    try:
        text = json.dumps(config, sort_keys=True)
    except TypeError as exc:
        raise TypeError(f"the config of {path} is not JSON-serialisable: {exc}") from None
    from safetensors.torch import save_file

    tensors = _saveable(net.state_dict(), dtype)
    with atomic_target(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", METADATA_KEY: text})


def read_config(path: PathLike) -> Dict[str, Any]:
    """Return the ``{"format", "arch", "kwargs", "extra"}`` config stored in one of our files.

    Only the header is read. Raises UserError for a ``.pth`` (no config: use a model card or
    convert it), a safetensors file written by another tool, or a damaged file.
    """
    path = _check_file(path)
    if _sniff(path) != "safetensors":
        raise UserError(f"{path} has no embedded config (it is not one of our .safetensors files); "
                        f"build it with a model card (--card) or convert it with "
                        f"`python -m gfpgan.tools.convert_checkpoint`")
    header = _safetensors_header(path)
    text = header.get("__metadata__", {}).get(METADATA_KEY)
    if text is None:
        raise UserError(f"{path} is a safetensors file without a gfpgan-video config in its header; "
                        f"rebuild it with gfpgan.checkpoint.save_network or pass a model card")
    try:
        config = json.loads(text)
    except json.JSONDecodeError:
        raise UserError(f"{path} has a corrupt gfpgan-video config in its header; re-convert it") from None
    if not isinstance(config, dict) or not str(config.get("format", "")).startswith("gfpgan-video/"):
        raise UserError(f"{path} has an unknown config format {config.get('format')!r}; "
                        f"expected {FORMAT!r}")
    if not isinstance(config.get("arch"), str) or not isinstance(config.get("kwargs"), dict):
        raise UserError(f"{path} has a config without 'arch' (a name) and 'kwargs' (a mapping); "
                        f"re-convert it")
    config.setdefault("extra", {})
    return config


# ------------------------------------------------------------------------------ reading any file
def _check_file(path: PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"checkpoint {path} not found; check the path")
    if not path.is_file():
        raise UserError(f"checkpoint {path} is not a file; pass a .pth or .safetensors file")
    if path.stat().st_size == 0:
        raise UserError(f"checkpoint {path} is empty (0 bytes); download or convert it again")
    return path


_MAGIC = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
          b"%PDF": "a PDF document", b"\x1f\x8b": "a gzip archive", b"<": "an HTML/XML page"}


def _sniff(path: Path) -> str:
    """Classify a file by its first bytes: 'safetensors', 'zip', 'pickle' or a description."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head.startswith(b"PK"):
        return "zip"
    # safetensors first: its 8-byte little-endian header length can start with 0x80 (1 file in 256)
    if len(head) == 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n < 100_000_000:
            return "safetensors"
    if head[:1] == b"\x80":  # pickle protocol >= 2: torch's legacy (pre-1.6) serialization
        return "pickle"
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            return what
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "not a checkpoint"


def _safetensors_header(path: Path) -> dict:
    size = path.stat().st_size
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        raw = f.read(n)
    if len(raw) < n:
        raise UserError(f"checkpoint {path} is truncated ({size} bytes, header alone needs {8 + n}); "
                        f"download or convert it again")
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"checkpoint {path} has a corrupt safetensors header; download or convert it again") \
            from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if size < 8 + n + end:
        raise UserError(f"checkpoint {path} is truncated ({size} of {8 + n + end} bytes); "
                        f"download or convert it again")
    return header


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
        _safetensors_header(path)  # clear messages for truncation before safetensors' own
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu"), None
        except Exception as exc:  # safetensors raises its own error types
            raise UserError(f"checkpoint {path} is corrupt ({exc}); download or convert it again") from None
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


def _few(names, n: int = 5) -> str:
    names = list(names)
    shown = ", ".join(str(k) for k in names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "") if names else "none"


# ------------------------------------------------------------------------- matching a network
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


def instantiate(arch: str, kwargs: Dict[str, Any], source: PathLike = "the config") -> nn.Module:
    """Build ``ARCH_REGISTRY[arch](**kwargs)``; unknown names and bad kwargs become UserErrors."""
    import gfpgan.archs  # noqa: F401  (registers the architectures)
    from gfpgan.registry import ARCH_REGISTRY

    try:
        cls = ARCH_REGISTRY.get(arch)
    except KeyError as exc:
        raise UserError(f"{source} names architecture {arch!r}, which this version cannot build "
                        f"({exc.args[0]})") from None
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UserError(f"{source} gives {arch} kwargs it does not accept ({exc}); "
                        f"fix the config or re-convert the file") from None


def build_network(path_or_card: Any, device: Union[str, torch.device] = "cpu",
                  key: Optional[str] = None, strict: bool = True, card: Any = None) -> nn.Module:
    """Rebuild a network, with its weights loaded, from one path or one model card.

    Args:
        path_or_card: one of our ``.safetensors`` files (arch and kwargs from its header); an
            official ``.pth`` (arch and kwargs from ``card``, else inferred by
            :func:`infer_arch`); a :class:`~gfpgan.model_cards.ModelCard`, or a card name such
            as ``"v1.4"`` (its weights are found with ``resolve_weights``).
        device: where to put the network.
        key: top-level key of a ``.pth`` to use (default: the card's ``param_key`` when the
            file has it, else ``params_ema`` > ``params`` > bare).
        strict: require exactly the network's keys (shapes must always match).
        card: a card (or card name) that describes a ``.pth`` given as ``path_or_card``.

    Returns:
        The network in eval mode on ``device``, with the network's own dtype (fp16 files are cast).
    """
    from gfpgan import model_cards

    if isinstance(path_or_card, str) and "/" not in path_or_card and os.sep not in path_or_card \
            and not Path(path_or_card).exists() \
            and Path(path_or_card).suffix not in (".pth", ".pt", ".safetensors"):
        path_or_card = model_cards.load_card(path_or_card)  # a card name such as "v1.4"
    if isinstance(card, (str, os.PathLike)):
        card = model_cards.load_card(card)
    if isinstance(path_or_card, model_cards.ModelCard):
        card, path = path_or_card, model_cards.resolve_weights(path_or_card)
    else:
        path = _check_file(path_or_card)
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
    return net.eval().to(device)


def count_parameters(net: nn.Module) -> int:
    """Number of parameter elements (buffers such as StyleGAN noise maps not included)."""
    return sum(p.numel() for p in net.parameters())
