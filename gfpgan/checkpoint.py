"""Our network checkpoint format: self-describing safetensors files, written atomically.

Our format is ONE file per network, ``<name>.safetensors``. Its safetensors metadata header (a
str -> str map) holds, under the key ``gfpgan_video``, one JSON string::

    {"format": "gfpgan-video/1", "arch": "GFPGANv1Clean", "kwargs": {...}, "extra": {...}}

so a single path is enough to rebuild the network (:func:`gfpgan.networks.build_network`).
``arch`` is a name in ``ARCH_REGISTRY``; ``extra`` is free-form provenance (source file, its
sha256, the key it came from, the dtype written). There is no sidecar JSON: one file cannot get
out of step with itself. Every problem with a file (missing, empty, truncated, a damaged header,
an unknown architecture) raises one :class:`UserError` sentence that names the file.

This is the bottom layer of the weights stack: ``checkpoint`` (our format) <- ``legacy``
(official ``.pth`` files, architecture inference) <- ``model_cards`` <- ``networks``
(``build_network``). It imports torch, safetensors and the standard library only
(``gfpgan.archs`` lazily, to instantiate a network).
"""

import json
import os
import struct
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
from torch import nn

from gfpgan.errors import UserError
from gfpgan.files import atomic_path

FORMAT = "gfpgan-video/1"
METADATA_KEY = "gfpgan_video"

PathLike = Union[str, os.PathLike]


# ----------------------------------------------------------------------------------- atomic writes
def atomic_save_torch(obj: Any, path: PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically (temp file + fsync + rename); training states."""
    with atomic_path(path, fsync=True) as tmp:
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

    with atomic_path(path, fsync=True) as tmp:
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
                 extra: Optional[Dict[str, Any]] = None, dtype: Optional[torch.dtype] = None,
                 tensors: Optional[Dict[str, torch.Tensor]] = None) -> None:
    """Save ``net``'s state dict with its config as one self-describing ``.safetensors`` file.

    Args:
        path: destination, conventionally ``<name>.safetensors``; written atomically.
        net: the network; its ``state_dict()`` (parameters and persistent buffers) is saved.
        arch: the ``ARCH_REGISTRY`` name that rebuilds it.
        kwargs: constructor kwargs (JSON-serialisable; tuples come back as lists).
        extra: free-form JSON-serialisable provenance stored beside the config.
        dtype: e.g. ``torch.float16`` to halve the file; only floating-point tensors are cast.
            Loading casts back to the network's own dtype.
        tensors: the part of ``net``'s state dict to save (default: all of it).
    """
    config = {"format": FORMAT, "arch": arch, "kwargs": dict(kwargs), "extra": dict(extra or {})}
    if dtype is not None:
        config["extra"]["dtype"] = str(dtype).replace("torch.", "")
    try:
        text = json.dumps(config, sort_keys=True)
    except TypeError as exc:
        raise TypeError(f"the config of {path} is not JSON-serialisable: {exc}") from None
    from safetensors.torch import save_file

    tensors = _saveable(net.state_dict() if tensors is None else tensors, dtype)
    with atomic_path(path, fsync=True) as tmp:
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


# ------------------------------------------------------------------------------ reading files
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


def load_safetensors(path: PathLike) -> Dict[str, torch.Tensor]:
    """The tensors of a safetensors file (ours or another tool's), on the CPU, as stored."""
    path = _check_file(path)
    _safetensors_header(path)  # clear messages for truncation before safetensors' own
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise UserError(f"checkpoint {path} is corrupt ({exc}); download or convert it again") from None


def _few(names, n: int = 5) -> str:
    names = list(names)
    shown = ", ".join(str(k) for k in names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "") if names else "none"


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


def state_dict_sha256(net: nn.Module) -> str:
    """sha256 of a network's weights (names, dtypes, shapes and values of its state dict), the
    same whichever file format they were loaded from."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        t = t.detach().cpu()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        # flattened first: a channels_last 1x1 weight counts as contiguous with a last stride > 1
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def count_parameters(net: nn.Module) -> int:
    """Number of parameter elements (buffers such as StyleGAN noise maps not included)."""
    return sum(p.numel() for p in net.parameters())
