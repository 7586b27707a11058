"""The arithmetic the generator runs in at inference, chosen for the device and the CPU.

``--precision`` takes one of :data:`PRECISIONS`:

* ``fp32``: float32, the reference's exact computation (parity tests use it). On a CPU the
  tensors keep PyTorch's default layout; on CUDA they are channels_last.
* ``bf16``: bfloat16 weights and activations, channels_last. On a CPU it is only fast where the
  CPU computes bf16 natively (AVX512-BF16 or AMX-BF16: oneDNN then runs the convolutions on
  the matrix units, about 3-4x the fp32 forward of the 512 generator on a 2-core Xeon); elsewhere
  oneDNN emulates it many times slower than fp32, so it is refused there.
* ``fp16``: float16, CUDA only (a CPU has no fast fp16 convolution).
* ``auto`` (default): bf16 on a CPU with native bf16 for the GFPGANv1Clean layout (v1.2-v1.4,
  measured 51 dB from fp32), else fp32; fp32 on CUDA (as before). The other layouts (v1, the
  bilinear one, RestoreFormer) drift further in bf16 and stay fp32 unless bf16 is asked for.

The reduced precisions keep what decides accuracy in fp32: the modulated convolutions'
demodulation factors (:func:`gfpgan.archs.stylegan2_arch.modulated_conv`) and the output's
conversion back. How close each path stays to fp32 is measured by ``gfpgan.tools.bench_generator``
(PSNR against fp32) and tested in ``tests/test_precision.py``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import FrozenSet, Iterable, Optional

import torch

from gfpgan.errors import UserError

__all__ = ["PRECISIONS", "Precision", "choose_precision", "cpu_features", "native_bf16"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo's names
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """A resolved precision.

    Attributes:
        name: "fp32", "bf16" or "fp16".
        dtype: the torch dtype of the weights and activations.
        channels_last: run the network in the channels_last memory format.
        reason: why this one was chosen, for the commands' reports.
    """

    name: str
    dtype: torch.dtype
    channels_last: bool
    reason: str


@functools.lru_cache(maxsize=1)
def cpu_features() -> FrozenSet[str]:
    """The CPU features the choice depends on, named as Linux's /proc/cpuinfo names them.

    Read from /proc/cpuinfo where there is one, else from PyTorch's own cpuinfo queries (these
    cover Windows and macOS on x86); an empty set where neither answers (e.g. ARM)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split()) & NATIVE_BF16_FLAGS
    except OSError:
        pass
    found = set()
    for flag, query in (("avx512_bf16", "_is_avx512_bf16_supported"), ("amx_bf16", "_is_amx_tile_supported")):
        try:
            if getattr(torch.cpu, query)():
                found.add(flag)
        except (AttributeError, RuntimeError):  # a PyTorch without the query
            pass
    return frozenset(found)


def native_bf16(features: Iterable[str]) -> bool:
    """Whether a CPU with these features computes bf16 natively (AVX512-BF16 or AMX-BF16)."""
    return bool(NATIVE_BF16_FLAGS & set(features))


def choose_precision(requested: str = "auto", device: torch.device | str = "cpu",
                     features: Optional[Iterable[str]] = None, bf16_faithful: bool = True) -> Precision:
    """Resolve ``--precision`` for a device.

    Args:
        requested: one of :data:`PRECISIONS`.
        device: where the network runs.
        features: the CPU's features (default: :func:`cpu_features`; tests simulate others).
        bf16_faithful: the network is one measured close to fp32 in bf16 (GFPGANv1Clean, the
            v1.2-v1.4 layout); "auto" keeps the others in fp32.

    Raises:
        UserError: an unknown name, fp16 on a CPU, or bf16 on a CPU without native bf16.
    """
    if requested not in PRECISIONS:
        raise UserError(f"--precision {requested!r} is not one of {', '.join(PRECISIONS)}.")
    if torch.device(device).type == "cuda":
        name = "fp32" if requested == "auto" else requested
        return Precision(name, _DTYPES[name], True, "CUDA" if requested == "auto" else "asked for")
    native = native_bf16(cpu_features() if features is None else features)
    if requested == "fp16":
        raise UserError("--precision fp16 is for CUDA GPUs (a CPU has no fast fp16 convolution); "
                        "use --precision auto on a CPU.")
    if requested == "bf16" and not native:
        raise UserError("--precision bf16: this CPU has no native bf16 (AVX512-BF16 or AMX), where it "
                        "runs many times slower than fp32; use --precision auto or fp32.")
    if requested == "fp32" or (requested == "auto" and not (native and bf16_faithful)):
        reason = ("asked for" if requested == "fp32" else "the CPU has no native bf16" if not native
                  else "the network is not one measured faithful in bf16")
        return Precision("fp32", torch.float32, False, reason)
    return Precision("bf16", torch.bfloat16, True,
                     "asked for" if requested == "bf16" else "the CPU computes bf16 natively")
