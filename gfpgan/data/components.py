"""Facial-component boxes (left eye, right eye, mouth): the box file and the box formula.

File format (the reference's ``FFHQ_eye_mouth_landmarks_512.pth``, reference §2.4): a dict keyed
by the image index as 8 digits (``'00000012'``), each value a dict with ``left_eye``,
``right_eye`` and ``mouth`` -> ``[cx, cy, half_len]`` in pixels of the 512 crop (``half_len``
is at least 16). Values may be lists of floats or numpy scalars, numpy arrays or tensors; the
reference file loads here with ``weights_only=True`` (its numpy scalars are allowed explicitly).
Files written by this project hold float64 tensors of shape (3,), which the reference dataset
also accepts.

"left" and "right" follow the landmark convention (the subject's right eye appears on the left
of the image and is point 36-41 of the 68-point scheme / point 0 of the 5-point scheme).

Box (x1, y1, x2, y2) of a part: ``[cx - h + 1, cy - h + 1, cx + h, cy + h]`` with
``h = half_len * eye_enlarge_ratio`` for the eyes. Under a horizontal flip of an image of width
``W`` the two eyes swap and each box is mirrored exactly in pixel-index coordinates
(``x1' = W - 1 - x2``, ``x2' = W - 1 - x1``), the convention of ``roi_align``. Two differences
from the reference, which maps ``cx -> W - cx`` on the cached entry itself: it mutates its cache
in place (a later unflipped sample of the same image, in the same worker, can get mirrored
boxes), and its flipped boxes sit 2 px right of the mirror of the unflipped ones.
"""

import os
from pathlib import Path
from typing import Dict, Mapping, Tuple, Union

import numpy as np
import torch

from gfpgan.errors import UserError

PARTS = ("left_eye", "right_eye", "mouth")
MIN_HALF_LEN = 16.0

# 68-point scheme (iBUG / FFHQ json): indices of each part
_PARTS_68 = {"left_eye": range(36, 42), "right_eye": range(42, 48), "mouth": range(48, 68)}

# 5-point -> box rules, mirroring the 68-point formula: the mouth corners are points 48/54, so the
# mouth extent is its width (half_len = width / 2) and its centre (mean of 20 lip points) lies a
# little below the corner line; an FFHQ-512 eye is ~45-50 px wide at an inter-ocular distance of
# d ~ 126 px, so half_len ~ 0.19 d.
EYE_HALF_PER_D = 0.19
MOUTH_HALF_PER_WIDTH = 0.5
MOUTH_DROP_PER_D = 0.05


def _numpy_globals():
    """The numpy reconstructors a reference box file pickles (under numpy 1 and 2 names)."""
    core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed = [np.ndarray, np.dtype]
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(core.scalar, f"{mod}.scalar"), (core._reconstruct, f"{mod}._reconstruct")]
    for name in ("Float64DType", "Float32DType", "Int64DType"):
        if hasattr(np, "dtypes") and hasattr(np.dtypes, name):
            allowed.append(getattr(np.dtypes, name))
    return allowed


def _as_entry(value, path, key) -> Dict[str, np.ndarray]:
    try:
        out = {}
        for part in PARTS:
            v = value[part]
            v = v.detach().cpu().double().numpy() if torch.is_tensor(v) else np.asarray(v, np.float64)
            out[part] = v.reshape(3)
        return out
    except (KeyError, TypeError, ValueError, IndexError):
        raise UserError(f"{path}: entry {key!r} is not {{left_eye, right_eye, mouth: [cx, cy, half_len]}}; "
                        f"remake the file with python -m gfpgan.tools.component_boxes.") from None


def load_components(path: Union[str, os.PathLike]) -> Dict[str, Dict[str, np.ndarray]]:
    """Load and validate a component box file.

    Returns:
        ``{key: {part: float64 array (3,) [cx, cy, half_len]}}``.
    Raises:
        UserError: the file is missing, unreadable or malformed (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"the component box file {path} does not exist; make it with "
                        f"python -m gfpgan.tools.component_boxes or set component_path.")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure is the file's fault
        raise UserError(f"{path} is not a readable component box file ({type(exc).__name__}); "
                        f"remake it with python -m gfpgan.tools.component_boxes.") from None
    if not isinstance(raw, Mapping) or not raw:
        raise UserError(f"{path} holds no component boxes; remake it with "
                        f"python -m gfpgan.tools.component_boxes.")
    return {str(k): _as_entry(v, path, k) for k, v in raw.items()}


def save_components(path: Union[str, os.PathLike], boxes: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Save boxes in the reference's format (float64 tensors (3,)), atomically."""
    from gfpgan.files import atomic_path

    data = {k: {p: torch.as_tensor(np.asarray(v[p], np.float64).reshape(3)) for p in PARTS}
            for k, v in boxes.items()}
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def component_key(name: str) -> str:
    """The box-file key of an image: its stem as 8 digits when numeric ('00012.png' -> '00000012')."""
    stem = Path(name).stem
    return f"{int(stem):08d}" if stem.isdigit() else stem


def _box(points: np.ndarray) -> np.ndarray:
    centre = points.mean(0)
    half = max(float((points.max(0) - points.min(0)).max()) / 2.0, MIN_HALF_LEN)
    return np.array([centre[0], centre[1], half], np.float64)


def boxes_from_68(landmarks: np.ndarray, scale: float = 1.0) -> Dict[str, np.ndarray]:
    """Reference formula from 68 landmarks (68, 2): part mean and max(extent/2, 16), after ``scale``."""
    lm = np.asarray(landmarks, np.float64).reshape(68, 2) * scale
    return {part: _box(lm[list(idx)]) for part, idx in _PARTS_68.items()}


def boxes_from_5(landmarks: np.ndarray, size: int = 512) -> Dict[str, np.ndarray]:
    """Boxes from 5 landmarks (5, 2): left eye, right eye, nose, left/right mouth corners.

    Eye boxes are centred on the eye points with a half length proportional to the eye distance;
    the mouth box is centred slightly below the middle of the corners, half length proportional
    to the mouth width (both at least 16 px at a 512 crop, like the 68-point formula; the
    minimum scales with ``size``, the crop side the landmarks refer to).
    """
    lm = np.asarray(landmarks, np.float64).reshape(5, 2)
    min_half = MIN_HALF_LEN * size / 512.0
    d = float(np.linalg.norm(lm[1] - lm[0]))
    eye_half = max(EYE_HALF_PER_D * d, min_half)
    mouth_w = float(np.linalg.norm(lm[4] - lm[3]))
    mouth_c = (lm[3] + lm[4]) / 2.0
    # "down" is perpendicular to the eye line, so tilted faces get the drop in the right direction
    eye_dir = (lm[1] - lm[0]) / max(d, 1e-6)
    down = np.array([-eye_dir[1], eye_dir[0]])
    mouth_c = mouth_c + down * MOUTH_DROP_PER_D * d
    return {"left_eye": np.array([lm[0, 0], lm[0, 1], eye_half]),
            "right_eye": np.array([lm[1, 0], lm[1, 1], eye_half]),
            "mouth": np.array([mouth_c[0], mouth_c[1], max(MOUTH_HALF_PER_WIDTH * mouth_w, min_half)])}


def component_locations(entry: Mapping[str, np.ndarray], hflip: bool, width: int,
                        eye_enlarge_ratio: float = 1.0, scale: float = 1.0) -> Tuple[torch.Tensor, ...]:
    """Boxes of one image, flipped if the image was, without touching ``entry``.

    Args:
        entry: ``{part: [cx, cy, half_len]}`` from the box file.
        hflip: whether the image was flipped horizontally.
        width: width of the (flipped) image the boxes refer to, after ``scale``.
        eye_enlarge_ratio: multiplier of the eyes' half length (reference: 1.4).
        scale: factor from box-file pixels to image pixels (out_size / 512 for the 512 file).
    Returns:
        (loc_left_eye, loc_right_eye, loc_mouth): float32 tensors (4,) as x1, y1, x2, y2.
    """
    boxes = {}
    for p in PARTS:
        cx, cy, half = np.asarray(entry[p], np.float64) * scale  # fresh values; entry is untouched
        if p != "mouth":
            half = half * eye_enlarge_ratio
        boxes[p] = [cx - half + 1, cy - half + 1, cx + half, cy + half]
    if hflip:
        # the exact mirror of each box in pixel-index coordinates (x -> width - 1 - x), so the
        # flipped crop is the mirrored unflipped crop; the subject's eyes swap image sides
        boxes = {p: [width - 1 - b[2], b[1], width - 1 - b[0], b[3]] for p, b in boxes.items()}
        boxes["left_eye"], boxes["right_eye"] = boxes["right_eye"], boxes["left_eye"]
    return tuple(torch.tensor(boxes[p], dtype=torch.float32) for p in PARTS)
