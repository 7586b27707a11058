"""ONNX Runtime backend of the face model, for CPU deployment without PyTorch kernels.

:class:`OnnxFaceModel` follows the :class:`~gfpgan.inference.faces.model.FaceModel` protocol, so
the image and video pipelines run an exported ``.onnx`` generator (``gfpgan-export``) with
``--backend onnxruntime``. onnxruntime is imported only here, and only when this backend is used.
"""

from typing import Optional, Sequence

import numpy as np
import torch

from gfpgan.errors import UserError


class OnnxFaceModel:
    """An exported generator run by ONNX Runtime.

    Args:
        path: ``.onnx`` file with input ``(B, 3, S, S)`` float32 and one output of the same shape.
        providers: ONNX Runtime execution providers (default: CPU).
        threads: intra-op threads (None: ONNX Runtime's default).
    """

    def __init__(self, path: str, providers: Optional[Sequence[str]] = None, threads: Optional[int] = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("the onnxruntime backend needs the onnxruntime package: "
                            "pip install onnxruntime") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        available = set(ort.get_available_providers())
        cpu = ["CPUExecutionProvider"]
        chosen = [p for p in (providers or cpu) if p in available] or cpu
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise UserError(f"cannot load ONNX model {path} ({str(exc).splitlines()[0]}); export it again "
                            "with python -m gfpgan.tools.export") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        shape = inp.shape
        if len(shape) != 4 or not isinstance(shape[-1], int):
            raise UserError(f"ONNX model {path} takes input shape {shape}; expected (B, 3, S, S) "
                            "with a fixed S")
        self.size = int(shape[-1])
        self.device = torch.device("cpu")
        self.providers = chosen

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) float tensor in [-1, 1] -> (B, 3, S, S) float32 CPU tensor (not clipped)."""
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-1] != self.size or x.shape[-2] != self.size:
            raise ValueError(f"expected (B,3,{self.size},{self.size}) faces, got {tuple(x.shape)}")
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        out = self.session.run([self.output_name], {self.input_name: arr})[0]
        return torch.from_numpy(out)

    def __repr__(self) -> str:
        return f"OnnxFaceModel(size={self.size}, providers={self.providers})"
