"""Paired LQ/GT images for validation and testing (folder or LMDB, no augmentation).

Pairs are matched by name: the LQ of GT ``<stem>.<ext>`` is the LQ entry whose stem is
``filename_tmpl.format(stem)``. LQ images may be smaller than the GT (``scale`` > 1, e.g. the x4
face super-resolution test set); ``scale`` is checked, not applied.
"""

from pathlib import Path
from typing import Dict, Optional, Sequence

from torch.utils.data import Dataset

from gfpgan.data.ffhq_degradation_dataset import ImageSource, to_tensor
from gfpgan.errors import UserError
from gfpgan.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class PairedImageDataset(Dataset):
    """{'lq', 'gt', 'lq_path', 'gt_path'} from two folders (or two LMDBs) of matching names.

    Args:
        dataroot_gt, dataroot_lq: folders (or ``.lmdb`` folders) of GT and LQ images.
        io_backend: ``{'type': 'disk'|'lmdb'}`` for both.
        mean, std: per-channel normalisation.
        scale: GT side / LQ side (1 for blind restoration, 4 for x4 super-resolution).
        filename_tmpl: LQ stem from the GT stem (``'{}'``: same name; ``'{}_x4'`` ...).
    Each item: 'lq' float32 (3, H/scale, W/scale), 'gt' float32 (3, H, W), both normalised.
    Unreadable files are skipped with one warning each (the next readable pair is used).
    """

    def __init__(self, dataroot_gt: str, dataroot_lq: str, io_backend: Optional[Dict] = None,
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                 scale: int = 1, filename_tmpl: str = "{}"):
        super().__init__()
        io_backend = io_backend or {"type": "disk"}
        self.gt = ImageSource(dataroot_gt, io_backend)
        self.lq = ImageSource(dataroot_lq, io_backend)
        self.mean, self.std, self.scale = tuple(mean), tuple(std), int(scale)
        lq_index = {Path(k).stem: i for i, k in enumerate(self.lq.keys)}
        self.pairs = []
        for i, k in enumerate(self.gt.keys):
            want = filename_tmpl.format(Path(k).stem)
            if want not in lq_index:
                raise UserError(f"{dataroot_lq} has no LQ image named {want!r} for GT {k}; "
                                f"check dataroot_lq and filename_tmpl.")
            self.pairs.append((i, lq_index[want]))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Dict:
        n = len(self.pairs)
        for k in range(n):
            gi, li = self.pairs[(index + k) % n]
            gt, lq = self.gt.read(gi), self.lq.read(li)
            if gt is not None and lq is not None:
                break
        else:
            raise UserError(f"no readable image pair in {self.gt.root} / {self.lq.root}; check the dataset.")
        if (gt.shape[0] != lq.shape[0] * self.scale) or (gt.shape[1] != lq.shape[1] * self.scale):
            raise UserError(f"{self.lq.backend.path(self.lq.keys[li])} is {lq.shape[1]}x{lq.shape[0]} "
                            f"but its GT is {gt.shape[1]}x{gt.shape[0]}, not scale {self.scale}; "
                            f"check 'scale'.")
        return {"lq": to_tensor(lq / 255.0, self.mean, self.std),
                "gt": to_tensor(gt / 255.0, self.mean, self.std),
                "lq_path": self.lq.backend.path(self.lq.keys[li]),
                "gt_path": self.gt.backend.path(self.gt.keys[gi])}
