"""FFHQ degradation dataset: HQ aligned faces in, (degraded LQ, GT) pairs out, on the fly.

Implements the GFP-GAN training data recipe (reference §2.1: options, ranges and the order of
degradations) with three differences that matter for research use:

* **Seeding.** Every sample draws from its own generator,
  ``np.random.default_rng([seed, 0, 0, epoch, index])``: a sample is a pure function of (seed,
  epoch, index), disk or LMDB alike, in the main process or any DataLoader worker, on any rank, in a
  fresh or a resumed run; different epochs and indices give different samples. Neither the worker
  nor the rank is part of the seed: a run resumed mid-epoch hands its batches to other workers
  than the run it replays (a fresh iterator starts at worker 0), and a 2-rank run must see the
  samples of a 1-rank run with twice the batch (the sampler already gives each rank its own
  indices; the zeros keep the samples earlier versions made on rank 0 in the main process).
  ``index`` may exceed ``len(dataset)`` (an enlarged sampler): the image is
  ``index % len`` and the full index goes into the seed. Call :meth:`set_epoch` each epoch (with
  ``persistent_workers=False``, the default, workers see the new value).
* **Component boxes** are computed on copies, so flipping never corrupts the cached boxes.
  Boxes are looked up by the image's name (``00012.png`` -> ``'00000012'``), not by its position
  in the folder, and every image's key is checked when the dataset is built.
* **Bad files** (corrupt, truncated, empty, not an image) are skipped: a warning names each one
  once, :attr:`skipped` counts them, and the next readable image is used instead.
"""

import logging
from typing import Dict, Optional, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from gfpgan.data import degradations as deg
from gfpgan.data.components import component_key, component_locations, load_components
from gfpgan.data.file_backends import make_backend
from gfpgan.errors import UserError
from gfpgan.images import decode_image
from gfpgan.registry import DATASET_REGISTRY

logger = logging.getLogger("gfpgan.data")


def to_tensor(img: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """RGB float (H, W, 3) in [0, 1] -> normalised float32 tensor (3, H, W)."""
    t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (t - m) / s


class ImageSource:
    """A backend plus bad-file bookkeeping: read images by index, skipping unreadable ones."""

    def __init__(self, root, io_backend: Optional[Dict]):
        self.root = str(root)
        self.backend = make_backend(root, io_backend)
        self.keys = self.backend.keys
        if not self.keys:
            raise UserError(f"{root} contains no images; check dataroot (png/jpg/... files, or an LMDB).")
        self.bad = set()  # per process: names already reported

    def read(self, i: int) -> Optional[np.ndarray]:
        """RGB uint8 image of key ``i``, or None (reported once) when it cannot be decoded."""
        key = self.keys[i]
        if key in self.bad:
            return None
        try:
            return decode_image(self.backend.get(key), self.backend.path(key))
        except UserError as exc:
            self.bad.add(key)
            logger.warning("skipping %s", exc)
            return None

    def read_first_good(self, index: int):
        """(position, image) of the first readable image at or after ``index`` (wrapping)."""
        n = len(self.keys)
        for k in range(n):
            img = self.read((index + k) % n)
            if img is not None:
                return (index + k) % n, img
        raise UserError(f"no image in {self.root} is readable (all {n} are corrupt, empty or not images); "
                        f"check the dataset.")


@DATASET_REGISTRY.register()
class FFHQDegradationDataset(Dataset):
    """HQ faces -> {'lq', 'gt', 'gt_path', ['loc_left_eye', 'loc_right_eye', 'loc_mouth']}.

    Args:
        dataroot_gt: folder of aligned faces, or a ``.lmdb`` folder (with ``io_backend={'type': 'lmdb'}``).
        io_backend: ``{'type': 'disk'|'lmdb'}``.
        out_size: side of the output; images of another size are resized to it (boxes follow).
        use_hflip: random horizontal flip (probability 0.5).
        mean, std: per-channel normalisation (0.5 / 0.5 gives tensors in [-1, 1]).
        blur_kernel_size, kernel_list, kernel_prob, blur_sigma: Gaussian blur (sigma range used
            for both axes, rotation in [-pi, pi]); ``blur_sigma=None`` disables blur.
        downsample_range: uniform factor of the down-and-back resize (``None``: none).
        noise_range: Gaussian noise std range on the 0-255 scale (``None``: none).
        jpeg_range: JPEG quality range, integers inclusive (``None``: none).
        color_jitter_prob, color_jitter_shift: probability / max (0-255 scale) of the RGB shift.
        color_jitter_pt_prob: probability of the brightness/contrast/saturation/hue jitter with
            ranges ``brightness``, ``contrast``, ``saturation``, ``hue``.
        gray_prob: probability of a gray LQ; ``gt_gray``: make the GT gray too when it happens.
        crop_components, component_path, eye_enlarge_ratio: return eye/mouth boxes from the box
            file (boxes in the stored image's pixels, scaled with the resize to ``out_size``).
        seed: the base seed of every sample's generator.
        rank: accepted for older callers and ignored (samples do not depend on the rank).
    Each item: 'lq', 'gt' float32 (3, out_size, out_size) normalised; 'gt_path' str; and with
    crop_components the three boxes as float32 (4,) x1, y1, x2, y2.
    """

    def __init__(self, dataroot_gt: str, io_backend: Optional[Dict] = None, out_size: int = 512,
                 use_hflip: bool = True, mean: Sequence[float] = (0.5, 0.5, 0.5),
                 std: Sequence[float] = (0.5, 0.5, 0.5), blur_kernel_size: int = 41,
                 kernel_list: Sequence[str] = ("iso", "aniso"), kernel_prob: Sequence[float] = (0.5, 0.5),
                 blur_sigma: Optional[Sequence[float]] = (0.1, 10),
                 downsample_range: Optional[Sequence[float]] = (0.8, 8),
                 noise_range: Optional[Sequence[float]] = (0, 20),
                 jpeg_range: Optional[Sequence[float]] = (60, 100),
                 color_jitter_prob: Optional[float] = None, color_jitter_shift: float = 20,
                 color_jitter_pt_prob: Optional[float] = None, brightness=(0.5, 1.5),
                 contrast=(0.5, 1.5), saturation=(0.0, 1.5), hue=(-0.1, 0.1),
                 gray_prob: Optional[float] = None, gt_gray: bool = False,
                 crop_components: bool = False, component_path: Optional[str] = None,
                 eye_enlarge_ratio: float = 1.0, seed: int = 0, rank: Optional[int] = None):
        super().__init__()
        self.source = ImageSource(dataroot_gt, io_backend or {"type": "disk"})
        self.out_size, self.use_hflip = int(out_size), bool(use_hflip)
        self.mean, self.std = tuple(mean), tuple(std)
        self.gt_gray = bool(gt_gray)
        self.degradation = dict(
            blur_kernel_size=blur_kernel_size, kernel_list=list(kernel_list or ()),
            kernel_prob=list(kernel_prob or ()), blur_sigma=blur_sigma, downsample_range=downsample_range,
            noise_range=noise_range, jpeg_range=jpeg_range, color_jitter_prob=color_jitter_prob,
            color_jitter_shift=color_jitter_shift, color_jitter_pt_prob=color_jitter_pt_prob,
            brightness=brightness, contrast=contrast, saturation=saturation, hue=hue, gray_prob=gray_prob)
        # fail at construction, not in a worker, on bad degradation options
        deg.sample_degradation(np.random.default_rng(0), **self.degradation)
        self.crop_components = bool(crop_components)
        self.eye_enlarge_ratio = float(eye_enlarge_ratio)
        self.components = None
        if self.crop_components:
            if not component_path:
                raise UserError("crop_components is on but component_path is not set; give the box file "
                                "(python -m gfpgan.tools.component_boxes makes one).")
            self.components = load_components(component_path)
            for name in self.source.keys:
                if component_key(name) not in self.components:
                    raise UserError(f"{component_path} has no boxes for image {name} (key "
                                    f"{component_key(name)!r}); remake it for this dataset with "
                                    f"python -m gfpgan.tools.component_boxes.")
        self.seed, self.epoch = int(seed), 0

    def __len__(self) -> int:
        return len(self.source.keys)

    @property
    def paths(self):
        return [self.source.backend.path(k) for k in self.source.keys]

    @property
    def skipped(self) -> int:
        """Number of unreadable files met so far in this process."""
        return len(self.source.bad)

    def set_epoch(self, epoch: int) -> None:
        """Make the next samples depend on ``epoch`` (call before iterating each epoch)."""
        self.epoch = int(epoch)

    def generator(self, index: int) -> np.random.Generator:
        """The generator of sample ``index``: a pure function of (seed, epoch, index).

        The two zeros stand where the rank and the worker id were: the samples are those that
        earlier versions made on rank 0 in the main process, so single-process runs and the
        values tests were tuned on stay as they were.
        """
        return np.random.default_rng([self.seed, 0, 0, self.epoch, int(index)])

    def __getitem__(self, index: int) -> Dict:
        rng = self.generator(index)
        pos, img = self.source.read_first_good(int(index) % len(self))
        key = self.source.keys[pos]
        h0, w0 = img.shape[:2]
        if (h0, w0) != (self.out_size, self.out_size):
            interp = cv2.INTER_AREA if h0 > self.out_size else cv2.INTER_LINEAR
            img = cv2.resize(img, (self.out_size, self.out_size), interpolation=interp)
        flip = self.use_hflip and bool(rng.uniform() < 0.5)
        if flip:
            img = img[:, ::-1]
        gt = np.ascontiguousarray(img, dtype=np.float32) / 255.0
        params = deg.sample_degradation(rng, **self.degradation)
        lq = deg.apply_degradation(gt, params)
        if params["gray"] and self.gt_gray:
            gt = deg.to_gray(gt)
        out = {"lq": to_tensor(lq, self.mean, self.std), "gt": to_tensor(gt, self.mean, self.std),
               "gt_path": self.source.backend.path(key)}
        if self.components is not None:
            locs = component_locations(self.components[component_key(key)], flip, self.out_size,
                                       self.eye_enlarge_ratio, scale=self.out_size / w0)
            out.update(loc_left_eye=locs[0], loc_right_eye=locs[1], loc_mouth=locs[2])
        return out
