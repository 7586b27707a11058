"""Shared pieces of the metrics: weight-file lookup, the skip-on-missing-weights error, colour helpers.

Metrics that need pretrained weights (Inception, AlexNet/VGG, ArcFace) never download: they look
for a file at the path given in the options, then in the usual caches, and raise
:class:`MissingWeightsError` (a :class:`~gfpgan.errors.UserError`) whose one-line message names the
file and where to get it. The evaluation entry point catches it and skips only that metric.
"""

import os
from typing import Iterable, Optional

import numpy as np

from gfpgan.errors import UserError
from gfpgan.model_cards import DEFAULT_SEARCH_DIRS


class MissingWeightsError(UserError):
    """A metric's weight file is missing; the message names the file and where to get it."""


def torch_hub_checkpoints() -> str:
    """torchvision's download cache folder: ``$TORCH_HOME/hub/checkpoints`` (default ~/.cache/torch)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return os.path.join(torch_home, "hub", "checkpoints")


def find_weights(path: Optional[str], filename: str, metric: str, url: str,
                 search_dirs: Iterable[str] = ()) -> str:
    """Return the weight file to load, or raise :class:`MissingWeightsError`.

    Args:
        path: Explicit file (or folder holding ``filename``) from the options; None to search.
        filename: The file's canonical name (looked up in ``search_dirs`` and the torch cache).
        metric: Metric name for the message ("LPIPS", "FID" ...).
        url: Where the user can download the file.
        search_dirs: Extra folders to look in, in order.
    """
    candidates = []
    if path:
        path = os.path.expanduser(str(path))
        candidates.append(os.path.join(path, filename) if os.path.isdir(path) else path)
    else:
        candidates += [os.path.join(d, filename) for d in search_dirs]
        candidates.append(os.path.join(torch_hub_checkpoints(), filename))
        candidates += [os.path.join(os.path.expanduser(d), filename) for d in DEFAULT_SEARCH_DIRS]
    for cand in candidates:
        if os.path.isfile(cand):
            return cand
    raise MissingWeightsError(
        f"{metric} skipped: weight file {candidates[0]} is missing; download {filename} from {url} "
        f"and put it there (or set its path in the options)")


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an RGB image on the 0-255 scale (range [16, 235]), as MATLAB's rgb2ycbcr.

    Args:
        img: (..., 3) RGB, uint8 or float on the 0-255 scale.
    Returns:
        (...) float64 Y channel, not rounded.
    """
    img = np.asarray(img, dtype=np.float64)
    return 16.0 + (65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255.0


def crop(img: np.ndarray, border: int) -> np.ndarray:
    """Remove ``border`` pixels on each side of the first two axes (no-op for 0)."""
    return img[border:-border, border:-border] if border > 0 else img
