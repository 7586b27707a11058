"""The face restoration network as the inference pipeline sees it: aligned crops in, crops out.

Everything downstream of detection and alignment talks to a :class:`FaceModel`: a callable that
maps a batch of aligned faces ``(B, 3, S, S)`` in ``[-1, 1]`` to restored faces of the same shape,
with ``.size`` (S) and ``.device``. :func:`load_face_model` builds one from a model card name, one
of our ``.safetensors`` files, an official ``.pth`` file or a ready ``nn.Module``, for PyTorch or
ONNX Runtime.

Why the wrapper and not the bare generator: StyleGAN2 noise drawn fresh on every call gives two
identical video frames different skin detail (a flicker source). Here the noise is the fixed
buffers of the network by default, the intermediate RGB pyramid is not computed
(``return_rgb=False``), autograd is off and the input is moved/cast once, so callers only ever
hand over float tensors. :class:`TorchFaceModel` wraps this project's generators; a network with
other calling conventions comes with a FaceModel of its own (the reference's, for ``GFPGANer``,
is ``gfpgan.compat.archs.ReferenceFaceModel``).
"""

from __future__ import annotations

import copy
import functools
import os
from typing import Optional, Protocol, Union, runtime_checkable

import torch
from torch import nn

from gfpgan.errors import UserError
from gfpgan.precision import choose_precision

__all__ = ["FaceModel", "TorchFaceModel", "TemporalFaceModel", "bf16_faithful", "load_face_model",
           "resolve_device", "weights_digest"]


@runtime_checkable
class FaceModel(Protocol):
    """Protocol of a face restoration model (``TorchFaceModel`` subclasses it; ``OnnxFaceModel``
    follows it structurally, so that the ONNX backend needs no import of this module).

    Attributes:
        size: side S of the square aligned crop the model takes and returns.
        device: the torch device where inputs are expected and outputs are returned.
    """

    size: int
    device: torch.device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - protocol
        """Restore a batch of aligned faces.

        Args:
            x: (B, 3, S, S) float tensor in [-1, 1], RGB.

        Returns:
            (B, 3, S, S) float32 tensor in [-1, 1] (not clipped) on ``self.device``.
        """
        raise NotImplementedError


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """Turn ``"auto"``/``None``/a name into a torch device; ``auto`` picks CUDA when present.

    Raises:
        UserError: when CUDA is asked for and is not available.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{device}' was asked for but this machine has no usable CUDA GPU; "
                        "use --device cpu.")
    return dev


def bf16_faithful(net: nn.Module) -> bool:
    """Whether ``net`` is a generator measured close to fp32 in bf16: the GFPGANv1Clean layout
    (v1.2-v1.4; 51 dB on a 512 face, ``gfpgan.tools.bench_generator``), alone, as a temporal
    module's base or gated with its personalized copy."""
    from gfpgan.archs.gfpgan_arch import GFPGANv1Clean
    from gfpgan.archs.temporal_arch import TemporalGFPGAN
    from gfpgan.personal_file import GatedPersonal

    return isinstance(net.base if isinstance(net, (TemporalGFPGAN, GatedPersonal)) else net, GFPGANv1Clean)


def _network_size(net: nn.Module, size: Optional[int]) -> int:
    """The crop side: ``size``, else the network's ``out_size``, else ``2 ** log_size`` (this
    project's GFP-GAN and StyleGAN2 generators store log2 of their size)."""
    if size is not None:
        return int(size)
    out_size = getattr(net, "out_size", None)
    if isinstance(out_size, int) and out_size > 0:
        return out_size
    log_size = getattr(net, "log_size", None)
    if isinstance(log_size, int) and log_size > 0:
        return 2 ** log_size
    raise UserError(f"cannot tell the face size of {type(net).__name__} (no out_size or log_size); "
                    f"pass size=.")


class TorchFaceModel(FaceModel):
    """A PyTorch generator wrapped for inference (eval, no autograd, fixed noise, the precision
    chosen for the device).

    Args:
        net: one of this project's generators (:mod:`gfpgan.archs`), or any module whose
            ``forward(x, return_rgb=False, randomize_noise=bool)`` returns ``image`` or
            ``(image, ...)`` for (B,3,S,S) faces in [-1, 1] (``forward(x, **kwargs)`` will do).
            A network in another dtype than the precision's is copied, not converted in place
            (the caller's module stays as it was).
        device: target device ("auto", "cpu", "cuda", "cuda:1" ...).
        precision: one of :data:`gfpgan.precision.PRECISIONS` ("auto": bf16 on a CPU that
            computes it natively, else fp32).
        fixed_noise: use the network's fixed noise buffers (True) or fresh noise per call.
        size: crop side; the network's ``out_size`` (or ``2 ** log_size``) when None.
    """

    def __init__(self, net: nn.Module, device: Union[str, torch.device] = "auto",
                 precision: str = "auto", fixed_noise: bool = True, size: Optional[int] = None):
        self.device = resolve_device(device)
        self.precision = choose_precision(precision, self.device, bf16_faithful=bf16_faithful(net))
        self.dtype = self.precision.dtype
        self.size = _network_size(net, size)
        self.fixed_noise = bool(fixed_noise)
        if any(p.dtype != self.dtype for p in net.parameters()):
            net = copy.deepcopy(net)
        net = net.eval().requires_grad_(False).to(self.device, self.dtype)
        self.memory_format = torch.channels_last if self.precision.channels_last else torch.contiguous_format
        self.net = net.to(memory_format=self.memory_format)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, self.dtype, non_blocking=True).contiguous(memory_format=self.memory_format)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-1] != self.size or x.shape[-2] != self.size:
            raise ValueError(f"expected (B,3,{self.size},{self.size}) faces, got {tuple(x.shape)}")
        out = self.net(self._input(x), return_rgb=False, randomize_noise=not self.fixed_noise)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.float()

    def __repr__(self) -> str:
        return (f"TorchFaceModel({type(self.net).__name__}, size={self.size}, device={self.device}, "
                f"precision={self.precision.name}, fixed_noise={self.fixed_noise})")


class TemporalFaceModel(TorchFaceModel):
    """A :class:`~gfpgan.archs.temporal_arch.TemporalGFPGAN` for inference: what
    :class:`TorchFaceModel` does, plus one recurrent :meth:`step` over a batch of face tracks.

    Calling it restores every face as the first frame of a new track.
    """

    def init_state(self, batch: int):
        """The empty state of ``batch`` new tracks, on the model's device and dtype."""
        return self.net.init_state(batch, self.device, self.dtype)

    @torch.inference_mode()
    def step(self, x: torch.Tensor, state, rel_affine: torch.Tensor):
        """Restore one face per track and advance the tracks' states.

        Args:
            x: (B, 3, S, S) float in [-1, 1], one face per track.
            state: the tracks' ``TemporalState`` (rows of :meth:`init_state` for new tracks).
            rel_affine: (B, 2, 3) crop t-1 -> crop t (``gfpgan.motion.relative_affine``).

        Returns:
            (restored (B, 3, S, S) float32 on ``self.device``, the new state).
        """
        x = self._input(x)
        rel = rel_affine.to(self.device, torch.float32)
        out, _, state = self.net(x, state, rel, False, not self.fixed_noise)
        return out.float(), state


def build_from_spec(spec: str) -> nn.Module:
    """Build the generator named by ``spec``: a file (ours or official) or a model card name."""
    from gfpgan.networks import build_network

    if os.path.isdir(spec):
        raise UserError(f"model '{spec}' is a folder; give a .safetensors/.pth file or a model "
                        "card name (see configs/).")
    return build_network(spec, device="cpu")


def load_face_model(spec: Union[str, os.PathLike, nn.Module, FaceModel],
                    device: Union[str, torch.device] = "auto", backend: str = "torch",
                    precision: str = "auto", fixed_noise: bool = True,
                    size: Optional[int] = None) -> FaceModel:
    """Load a face restoration model for inference.

    Args:
        spec: a model card name (``"GFPGANv1.4"``, ``"v1.4"``; see configs/), a path to one of our
            ``.safetensors`` files or an official ``.pth``, an ``.onnx`` file (with
            ``backend="onnxruntime"``), an ``nn.Module`` or an already loaded FaceModel.
        device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
        backend: "torch" or "onnxruntime".
        precision: the network's arithmetic (:mod:`gfpgan.precision`; PyTorch backend only).
        fixed_noise: fixed StyleGAN2 noise buffers (stable video) instead of fresh noise per call.
        size: crop side when it cannot be read from the network.

    Returns:
        A :class:`FaceModel` mapping (B,3,S,S) [-1,1] to (B,3,S,S) [-1,1].

    Raises:
        UserError: unknown backend, missing/ill-fitting model file (one sentence naming it).
    """
    if isinstance(spec, FaceModel):
        return spec
    if backend in ("onnxruntime", "onnx", "ort"):
        if isinstance(spec, nn.Module):
            raise UserError("backend 'onnxruntime' needs an exported .onnx file, not a PyTorch "
                            "module; export it with gfpgan-export first.")
        path = os.fspath(spec)
        if not os.path.isfile(path):
            raise UserError(f"ONNX model '{path}' not found; export one with gfpgan-export.")
        from gfpgan.inference.faces.onnx_model import OnnxFaceModel  # lazy: onnxruntime is optional
        dev = resolve_device(device)
        providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if dev.type == "cuda"
                     else ["CPUExecutionProvider"])
        return OnnxFaceModel(path, providers=providers)
    if backend != "torch":
        raise UserError(f"unknown backend '{backend}'; use torch or onnxruntime.")
    net = spec if isinstance(spec, nn.Module) else build_from_spec(os.fspath(spec))
    from gfpgan.archs.temporal_arch import TemporalGFPGAN

    if isinstance(net, TemporalGFPGAN):
        return TemporalFaceModel(net, device=device, precision=precision, fixed_noise=fixed_noise, size=size)
    return TorchFaceModel(net, device=device, precision=precision, fixed_noise=fixed_noise, size=size)


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    from gfpgan.model_cards import sha256_file

    return sha256_file(path)


def weights_digest(spec) -> Optional[str]:
    """The sha256 of the weights a model spec names (a file, or a card's resolved file), of an
    ``nn.Module``'s state dict, or the class name of another ready model; None for None."""
    if spec is None:
        return None
    if isinstance(spec, nn.Module):
        from gfpgan.checkpoint import state_dict_sha256

        return state_dict_sha256(spec)
    if not isinstance(spec, (str, os.PathLike)):
        return type(spec).__name__
    path = os.fspath(spec)
    if not os.path.isfile(path):
        from gfpgan.model_cards import resolve_weights

        path = os.fspath(resolve_weights(path))
    st = os.stat(path)
    return _file_sha256(os.path.abspath(path), st.st_size, st.st_mtime_ns)
