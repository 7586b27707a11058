"""``GFPGANer``: the reference's (TencentARC/GFPGAN 1.3.8) restorer class, on this project's pipeline.

Programs written for the reference (Real-ESRGAN's ``--face_enhance``, roop, facefusion 1.x,
SadTalker, older webui and Deep-Live-Cam ...) call::

    restorer = GFPGANer(model_path, upscale=2, arch='clean', channel_multiplier=2,
                        bg_upsampler=None, device=None)
    cropped_faces, restored_faces, restored_img = restorer.enhance(
        img, has_aligned=False, only_center_face=False, paste_back=True, weight=0.5)

with BGR uint8 images (also RGBA, 16-bit, gray and non-contiguous views). This class keeps that
contract and runs the project's stages instead of facexlib's helper: detection
(:func:`~gfpgan.inference.faces.detection.build_detector`: RetinaFace when its weights are on the
machine, else MTCNN, whose weights ship with its wheel), deterministic alignment, all faces of an
image in one batch through the network with its fixed noise buffers, and paste-back limited to
each face's box. What differs from the reference, on purpose:

* nothing is downloaded for detection or parsing; the model's URL resolves to a local file first;
* the StyleGAN2 noise is fixed (the same image gives the same result every time);
* ``weight`` works (see :func:`gfpgan.compat.archs.weight_to_strength`; 0.5, the default,
  is the reference's full restoration);
* ``enhance`` keeps its state per call, so threads may share one restorer, and the returned lists
  are new on every call; ``face_helper.clean_all()`` is kept for callers and does nothing.
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


class FaceHelper:
    """What callers touch of the reference's ``face_helper``: ``face_det``, ``face_parse``, ``clean_all()``.

    Detection and parsing weights are looked up locally (never downloaded): RetinaFace's
    ``detection_Resnet50_Final.pth`` (else MTCNN) and ``parsing_parsenet.pth`` (else a feathered
    square mask), in :func:`gfpgan.compat.weights.weight_dirs`.

    Args:
        device: torch device of the detector and parser.
        upscale: the restorer's output scale (kept as ``upscale_factor`` for callers that read it).
    """

    def __init__(self, device: torch.device, upscale: float):
        from gfpgan.compat.weights import find_weights
        from gfpgan.inference.faces.detection import RETINAFACE_FILE, build_detector
        from gfpgan.inference.faces.paste import ParseMasker

        self.upscale_factor = upscale
        self.face_size = FACE_SIZE
        retina = find_weights(RETINAFACE_FILE)
        self.detector = build_detector("retinaface" if retina else "mtcnn", device=device,
                                       weights=str(retina) if retina else None, min_face=20)
        parse = find_weights("parsing_parsenet.pth")
        self.parser = ParseMasker(str(parse), device) if parse else None
        # facexlib's detectors are not re-entrant (they keep per-call sizes on the instance)
        self.lock = threading.Lock()

    @property
    def face_det(self) -> nn.Module:
        """The detection network (``.to(device)`` moves it; the next call follows it)."""
        return self.detector.net

    @property
    def face_parse(self) -> nn.Module:
        """The parsing network, or an empty module when parsing is off."""
        return self.parser.net if self.parser is not None else nn.Identity()

    def clean_all(self) -> None:
        """Kept for callers; there is nothing to clean: ``enhance`` keeps its state per call."""

    def detect(self, rgb: np.ndarray, only_center_face: bool):
        """Faces of one RGB frame: eye distance >= 5 px, then all or the centre one."""
        from gfpgan.inference.faces.pipeline import select_faces

        with self.lock:
            net = self.detector.net
            net.device = _module_device(net)  # follow a caller's face_det.to(device)
            det = self.detector.detect([rgb])[0]
        det = det.filter(min_face=EYE_DIST_THRESHOLD)
        return select_faces(det, rgb.shape, "center" if only_center_face else "all")

    def masks(self, restored: List[np.ndarray]) -> Optional[List[np.ndarray]]:
        """ParseNet blend masks for RGB crops (None: the paste's feathered square)."""
        if self.parser is None or not restored:
            return None
        from gfpgan.inference.faces.batch import crops_to_tensor
        from gfpgan.inference.faces.paste import feather_mask

        parsed = self.parser(crops_to_tensor(restored, self.parser.device)).cpu().numpy()
        return [np.minimum(m, feather_mask(m.shape[0])) for m in parsed]


class GFPGANer:
    """The reference's restorer API on this project's pipeline.

    Args:
        model_path: a ``.pth`` (or converted ``.safetensors``) file, a release URL (resolved to a
            local file of the same name first) or a model card name.
        upscale: final scale of the whole image (float allowed).
        arch: 'clean', 'original', 'bilinear' or 'RestoreFormer'.
        channel_multiplier: StyleGAN2 channel multiplier (2 for v1.2-v1.4, 1 for v1).
        bg_upsampler: None (Lanczos resize) or an object with ``enhance(img, outscale=) -> (img, _)``
            (Real-ESRGAN's ``RealESRGANer``).
        device: None (CUDA when available), a string or a ``torch.device``.

    Attributes:
        gfpgan: the network, an instance of the reference-named class.
        face_helper: :class:`FaceHelper`.
        device: the torch device.
    """

    def __init__(self, model_path, upscale: float = 2, arch: str = "clean", channel_multiplier: float = 2,
                 bg_upsampler=None, device: Union[str, torch.device, None] = None):
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
        self.gfpgan = net.eval().requires_grad_(False).to(self.device)
        self.face_helper = FaceHelper(self.device, upscale)
        self._model_lock = threading.Lock()
        self._face_model = None

    def _model(self):
        """The network wrapped for inference (fixed noise), rebuilt if a caller moved ``gfpgan``."""
        from gfpgan.inference.faces.model import TorchFaceModel

        with self._model_lock:
            dev = _module_device(self.gfpgan)
            fm = self._face_model
            if fm is None or fm.net is not self.gfpgan or fm.device != dev:
                fm = self._face_model = TorchFaceModel(self.gfpgan, device=dev, fixed_noise=True,
                                                       size=FACE_SIZE)
            return fm

    def _restore(self, crops_rgb: List[np.ndarray], weight: float) -> List[np.ndarray]:
        """Restore RGB crops in one batch; a RuntimeError keeps the crops (one warning)."""
        from gfpgan.compat.archs import weight_to_strength
        from gfpgan.inference.faces.batch import FaceBatchRestorer

        restorer = FaceBatchRestorer(self._model(), batch_faces=8, strength=weight_to_strength(weight))
        try:
            return restorer.restore(crops_rgb)
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
        if has_aligned:
            crops = [cv2.cvtColor(cv2.resize(bgr, (FACE_SIZE, FACE_SIZE)), cv2.COLOR_BGR2RGB)]
            affines = []
        else:
            from gfpgan.inference.faces.alignment import estimate_affine, warp_face

            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            det = self.face_helper.detect(rgb, only_center_face)
            affines = [estimate_affine(lm, FACE_SIZE) for lm in det.landmarks]
            crops = [warp_face(rgb, m, FACE_SIZE) for m in affines]
        restored = self._restore(crops, weight) if crops else []
        to_bgr = [cv2.cvtColor(c, cv2.COLOR_RGB2BGR) for c in crops]
        restored_bgr = [cv2.cvtColor(c, cv2.COLOR_RGB2BGR) for c in restored]
        if has_aligned or not paste_back:
            return to_bgr, restored_bgr, None
        return to_bgr, restored_bgr, self._paste(img, bgr, restored, affines)

    def _paste(self, img: np.ndarray, bgr: np.ndarray, restored: List[np.ndarray],
               affines: List[np.ndarray]) -> np.ndarray:
        from gfpgan.inference.faces.paste import paste_face, scale_affine

        h, w = bgr.shape[:2]
        size = (int(w * self.upscale), int(h * self.upscale))
        bg = self._background(img, bgr, size)
        if not restored:
            return bg
        wide = bg.dtype == np.uint16  # a 16-bit upsampler output: paste in 8 bits, return 16
        canvas = (bg[:, :, :3] // 257).astype(np.uint8) if wide else np.ascontiguousarray(bg[:, :, :3])
        canvas = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
        masks = self.face_helper.masks(restored)
        for i, (face, m) in enumerate(zip(restored, affines)):
            paste_face(canvas, face, scale_affine(m, size[0] / w), None if masks is None else masks[i])
        canvas = cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)
        if wide:
            canvas = canvas.astype(np.uint16) * 257
        if bg.ndim == 3 and bg.shape[2] == 4:  # keep the upsampler's alpha
            canvas = np.concatenate([canvas, bg[:, :, 3:]], 2)
        return canvas
