"""``GFPGANer``: the reference's (TencentARC/GFPGAN 1.3.8) restorer class, on this project's pipeline.

Programs written for the reference (Real-ESRGAN's ``--face_enhance``, roop, facefusion 1.x,
SadTalker, older webui and Deep-Live-Cam ...) call::

    restorer = GFPGANer(model_path, upscale=2, arch='clean', channel_multiplier=2,
                        bg_upsampler=None, device=None)
    cropped_faces, restored_faces, restored_img = restorer.enhance(
        img, has_aligned=False, only_center_face=False, paste_back=True, weight=0.5)

with BGR uint8 images (also RGBA, 16-bit, gray and non-contiguous views). This class keeps that
contract and drives the project's face restorer (:class:`~gfpgan.inference.faces.pipeline.FaceStages`,
the stages ``gfpgan.infer_image`` and the video restorer use) instead of facexlib's helper: its
detection (RetinaFace when its weights are on the machine, else MTCNN, whose weights ship with its
wheel), deterministic alignment, the faces of an image batched through the network (8 a pass on
CUDA; one at a time on a CPU, in bf16 where the CPU computes it natively) with its fixed noise
buffers, its masks (ParseNet with ``parsing_parsenet.pth``, else a feathered square)
and its paste-back limited to each face's box. This module only translates: the reference's
input reading, ``weight``, the eye-distance filter and centre face, the output size
``int(h * upscale)``, the background upsampler's (possibly 16-bit or RGBA) image, BGR out.
What differs from the reference, on purpose:

* nothing is downloaded for detection or parsing; the model's URL resolves to a local file first;
* the StyleGAN2 noise is fixed (the same image gives the same result every time);
* ``weight`` works (see :func:`gfpgan.compat.archs.weight_to_strength`; 0.5, the default,
  is the reference's full restoration);
* ``enhance`` keeps its state per call, so threads may share one restorer, and the returned lists
  are new on every call; ``face_helper.clean_all()`` is kept for callers and does nothing;
* the paste mask fades over the crop's outer 12% (the reference cuts its mask at 10 px of 512),
  and at ``upscale`` other than 1 faces land on the pixel centres (the reference's inverse affine
  is off by half an output pixel above 1, by ``0.5 - 0.5 * upscale`` below).

How close the results are to the reference's (same weights, same RetinaFace and ParseNet files) is
measured by ``tests/test_compat_gfpganer_oracle.py`` and stated in the README.
"""

from __future__ import annotations

import threading
import warnings
from typing import List, Optional, Tuple, Union

import cv2
import numpy as np
import torch
from torch import nn

from gfpgan.errors import UserError
from gfpgan.personal_file import GATE_DB

__all__ = ["GFPGANer", "FaceHelper", "ARCHS"]

ARCHS = ("clean", "bilinear", "original", "RestoreFormer")
FACE_SIZE = 512
EYE_DIST_THRESHOLD = 5  # the reference skips faces whose eyes are closer than 5 px


def build_reference_net(arch: str, channel_multiplier: float = 2) -> nn.Module:
    """The network ``GFPGANer`` builds for ``arch``, with the reference's kwargs (random weights).

    Raises:
        UserError: ``arch`` is not one of :data:`ARCHS`.
    """
    kwargs = dict(out_size=FACE_SIZE, num_style_feat=512, channel_multiplier=channel_multiplier,
                  decoder_load_path=None, fix_decoder=arch == "original", num_mlp=8, input_is_latent=True,
                  different_w=True, narrow=1, sft_half=True)
    if arch == "clean":
        from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean

        return GFPGANv1Clean(**kwargs)
    if arch == "bilinear":
        from gfpgan.archs.gfpgan_bilinear_arch import GFPGANBilinear

        return GFPGANBilinear(**kwargs)
    if arch == "original":
        from gfpgan.archs.gfpganv1_arch import GFPGANv1

        return GFPGANv1(**kwargs)
    if arch == "RestoreFormer":
        from gfpgan.archs.restoreformer_arch import RestoreFormer

        return RestoreFormer()
    raise UserError(f"GFPGANer arch {arch!r} is not one of {', '.join(map(repr, ARCHS))} "
                    f"(CodeFormer and other models are not GFPGAN architectures).")


def _module_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def read_reference_image(img: np.ndarray) -> np.ndarray:
    """An image as the reference reads it, as contiguous BGR uint8 (H, W, 3).

    16-bit (values above 256) is scaled to 8 bits, gray becomes BGR, alpha is dropped.

    Raises:
        UserError: not a 2-D or (H, W, 3|4) array.
    """
    arr = np.asarray(img)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)) or arr.size == 0:
        raise UserError(f"GFPGANer.enhance expects a BGR image array (H, W, 3), (H, W, 4) or (H, W); "
                        f"got shape {arr.shape}.")
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32)
        if arr.max() > 256:  # 16-bit
            arr = arr * (255.0 / 65535.0)
        arr = np.clip(arr + 0.5, 0, 255).astype(np.uint8)
    if arr.ndim == 2 or arr.shape[2] == 1:
        return cv2.cvtColor(np.ascontiguousarray(arr.reshape(arr.shape[:2])), cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(arr[:, :, :3])


def build_stages(model, device: torch.device, upscale: float):
    """The project's face stages as ``GFPGANer`` runs them: detection and parsing weights looked up
    locally (never downloaded) in :func:`gfpgan.compat.weights.weight_dirs`, every face kept (the
    eye-distance filter and the centre face are chosen per call), the device's faces per forward
    pass (8 on CUDA, 1 on a CPU)."""
    from gfpgan.compat.weights import find_weights
    from gfpgan.inference.faces.detection import RETINAFACE_FILE
    from gfpgan.inference.faces.pipeline import FaceStages
    from gfpgan.inference.settings import RestorerConfig

    retina = find_weights(RETINAFACE_FILE)
    parse = find_weights("parsing_parsenet.pth")
    config = RestorerConfig(device=str(device), detector="retinaface" if retina else "mtcnn",
                            detector_weights=str(retina) if retina else None,
                            parse_weights=str(parse) if parse else None, only="all", min_face=0.0,
                            upscale=float(upscale), strength=1.0, keep_detail=0.0)
    return FaceStages(model, config)


class FaceHelper:
    """What callers touch of the reference's ``face_helper``: ``face_det``, ``face_parse``,
    ``clean_all()``, ``upscale_factor``, ``face_size``; a view of the restorer's stages.

    Args:
        stages: the :class:`~gfpgan.inference.faces.pipeline.FaceStages` ``GFPGANer`` drives.
        upscale: the restorer's output scale (kept as ``upscale_factor`` for callers that read it).
    """

    def __init__(self, stages, upscale: float):
        self.stages = stages
        self.upscale_factor = upscale
        self.face_size = FACE_SIZE

    @property
    def face_det(self) -> nn.Module:
        """The detection network (``.to(device)`` moves it; the next call follows it)."""
        return self.stages.detector.net

    @property
    def face_parse(self) -> nn.Module:
        """The parsing network, or an empty module when parsing is off."""
        return self.stages.parser.net if self.stages.parser is not None else nn.Identity()

    def clean_all(self) -> None:
        """Kept for callers; there is nothing to clean: ``enhance`` keeps its state per call."""


class GFPGANer:
    """The reference's restorer API on this project's face stages.

    Args:
        model_path: a ``.pth`` (or converted ``.safetensors``) file, a release URL (resolved to a
            local file of the same name first) or a model card name.
        upscale: final scale of the whole image (float allowed).
        arch: 'clean', 'original', 'bilinear' or 'RestoreFormer'.
        channel_multiplier: StyleGAN2 channel multiplier (2 for v1.2-v1.4, 1 for v1).
        bg_upsampler: None (Lanczos resize) or an object with ``enhance(img, outscale=) -> (img, _)``
            (Real-ESRGAN's ``RealESRGANer``).
        device: None (CUDA when available), a string or a ``torch.device``.
        precision: keyword only, not the reference's: the arithmetic of the restoration
            (:mod:`gfpgan.precision`; "auto" runs the clean layout in bf16 on a CPU that computes
            it natively, about 3.5x faster; "fp32" is the reference's exact computation).
        personal: keyword only, not the reference's: a personal file tuned from ``model_path``
            (``python -m gfpgan.personalize``), applied face by face as ``--personal`` is.
        personal_gate: keyword only: ``--personal-gate`` (dB; 0: every face gets the personal
            output).

    Attributes:
        gfpgan: the network, an instance of the reference-named class (a caller may move it, or
            replace it with another network of the same signature); with ``personal``, the
            tuned network (``personal_gate`` 0) or the base and tuned pair
            (:class:`~gfpgan.personal_file.GatedPersonal`, the base as its ``base``).
        face_helper: :class:`FaceHelper`.
        device: the torch device.
        stages: the project's :class:`~gfpgan.inference.faces.pipeline.FaceStages` it drives.
    """

    def __init__(self, model_path, upscale: float = 2, arch: str = "clean", channel_multiplier: float = 2,
                 bg_upsampler=None, device: Union[str, torch.device, None] = None, *,
                 precision: str = "auto", personal: Optional[str] = None, personal_gate: float = GATE_DB):
        from gfpgan.compat.archs import ReferenceFaceModel
        from gfpgan.compat.weights import resolve_model_path
        from gfpgan.inference.faces.model import resolve_device
        from gfpgan.legacy import check_state_dict, load_checkpoint

        if not upscale or float(upscale) <= 0:
            raise UserError(f"GFPGANer upscale {upscale} must be positive.")
        self.upscale = upscale
        self.bg_upsampler = bg_upsampler
        self.device = resolve_device(device)
        net = build_reference_net(arch, channel_multiplier)
        path = resolve_model_path(model_path)
        sd, _ = load_checkpoint(path)
        check_state_dict(net, sd, path)
        net.load_state_dict(sd, strict=True)
        if personal:
            from gfpgan.personal_file import personal_generator

            net = personal_generator(personal, net.eval(), personal_gate)
        self._face_model = ReferenceFaceModel(net.eval().requires_grad_(False).to(self.device), FACE_SIZE,
                                              precision)
        self.stages = build_stages(self._face_model, self.device, upscale)
        self.face_helper = FaceHelper(self.stages, upscale)
        # facexlib's detectors are not re-entrant (they keep per-call sizes on the instance)
        self._detect_lock = threading.Lock()

    @property
    def gfpgan(self) -> nn.Module:
        return self._face_model.net

    @gfpgan.setter
    def gfpgan(self, net: nn.Module) -> None:
        self._face_model.net = net

    def _detect(self, rgb: np.ndarray, only_center_face: bool):
        """Faces of one RGB image: the stages' detection, eye distance >= 5 px, all or the centre one."""
        from gfpgan.inference.faces.pipeline import select_faces

        with self._detect_lock:
            net = self.stages.detector.net
            net.device = _module_device(net)  # follow a caller's face_det.to(device)
            det = self.stages.detect_batch([rgb])[0]
        det = det.filter(min_face=EYE_DIST_THRESHOLD)
        return select_faces(det, rgb.shape, "center" if only_center_face else "all")

    def _restore(self, crops_rgb: List[np.ndarray], weight: float) -> List[np.ndarray]:
        """Restore RGB crops; a RuntimeError keeps the crops (one warning)."""
        from gfpgan.compat.archs import weight_to_strength

        strength = weight_to_strength(weight)
        try:
            return self.stages.restore_batch(crops_rgb, strength=strength)
        except RuntimeError as exc:
            warnings.warn(f"GFPGAN inference failed, the faces are left unrestored: {exc}", RuntimeWarning,
                          stacklevel=3)
            return [c.copy() for c in crops_rgb]

    def _background(self, img: np.ndarray, bgr: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
        """The whole image at ``size`` (w, h): the background upsampler's output or a Lanczos resize."""
        if self.bg_upsampler is not None:
            bg = np.asarray(self.bg_upsampler.enhance(img, outscale=self.upscale)[0])
            return cv2.resize(bg, size, interpolation=cv2.INTER_LANCZOS4) if bg.shape[1::-1] != size else bg
        return cv2.resize(bgr, size, interpolation=cv2.INTER_LANCZOS4)

    @torch.no_grad()
    def enhance(self, img: np.ndarray, has_aligned: bool = False, only_center_face: bool = False,
                paste_back: bool = True, weight: float = 0.5
                ) -> Tuple[List[np.ndarray], List[np.ndarray], Optional[np.ndarray]]:
        """Restore the faces of one BGR image.

        Args:
            img: BGR uint8 (H, W, 3); RGBA, 16-bit, gray and non-contiguous arrays are read as the
                reference reads them.
            has_aligned: ``img`` is one aligned face (resized to 512); no detection, no paste-back.
            only_center_face: restore only the face nearest the centre.
            paste_back: return the whole restored image as the third element.
            weight: fidelity in [0, 1]; 0.5 or less = full restoration, 1 = the input face.

        Returns:
            (cropped_faces, restored_faces, restored_img): new lists of BGR uint8 (512, 512, 3)
            faces, and the image at (int(H*upscale), int(W*upscale), C) or None when aligned or
            not pasted. An image without faces gives empty lists and the (upscaled) image.
        """
        bgr = read_reference_image(img)
        if has_aligned:  # the reference's only crop: cv2.resize's default (bilinear) to 512
            rgb = cv2.cvtColor(cv2.resize(bgr, (FACE_SIZE, FACE_SIZE)), cv2.COLOR_BGR2RGB)
            crops, affines = [rgb], []
        else:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            crops, affines = self.stages.align(rgb, self._detect(rgb, only_center_face).landmarks)
        restored = self._restore(crops, weight) if crops else []
        to_bgr = [cv2.cvtColor(c, cv2.COLOR_RGB2BGR) for c in crops]
        restored_bgr = [cv2.cvtColor(c, cv2.COLOR_RGB2BGR) for c in restored]
        if has_aligned or not paste_back:
            return to_bgr, restored_bgr, None
        return to_bgr, restored_bgr, self._paste(img, bgr, rgb, restored, affines)

    def _paste(self, img: np.ndarray, bgr: np.ndarray, rgb: np.ndarray, restored: List[np.ndarray],
               affines: List[np.ndarray]) -> np.ndarray:
        """The stages' masks and paste into the reference's background (``int(h * upscale)``, the
        upsampler's output as it is: 16-bit pasted in 8 bits and returned in 16, alpha kept)."""
        h, w = bgr.shape[:2]
        size = (int(w * self.upscale), int(h * self.upscale))
        bg = self._background(img, bgr, size)
        if not restored:
            return bg
        wide = bg.dtype == np.uint16
        canvas = (bg[:, :, :3] // 257).astype(np.uint8) if wide else np.ascontiguousarray(bg[:, :, :3])
        canvas = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)  # a new array, pasted into in place
        masks = self.stages.face_masks(restored)
        canvas = self.stages.paste(rgb, restored, affines, masks, background=canvas)
        canvas = cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)
        if wide:
            canvas = canvas.astype(np.uint16) * 257
        if bg.ndim == 3 and bg.shape[2] == 4:  # keep the upsampler's alpha
            canvas = np.concatenate([canvas, bg[:, :, 3:]], 2)
        return canvas
