"""Validation during training: PSNR/SSIM (and LPIPS when its weights exist) on the val set.

Every rank restores its own shard of the validation images (items ``rank, rank + W, ...``) with
the EMA generator; per-image scores are summed and counted, then ``all_reduce``d, so the mean is
over the whole set whatever the world size. The RNG is forked around validation so that it never
changes the training random stream (an interrupted and resumed run stays identical to an
uninterrupted one).
"""

from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch.utils.data import DataLoader

from gfpgan.dist import DistInfo, sum_over_ranks
from gfpgan.errors import UserError

# option name -> (registry name, higher is better)
_ALIASES = {"psnr": ("calculate_psnr", True), "calculate_psnr": ("calculate_psnr", True),
            "ssim": ("calculate_ssim", True), "calculate_ssim": ("calculate_ssim", True),
            "lpips": ("LPIPSMetric", False), "calculate_lpips": ("LPIPSMetric", False)}
DEFAULT_METRICS = {"psnr": {"type": "calculate_psnr"}, "ssim": {"type": "calculate_ssim"},
                   "lpips": {"type": "calculate_lpips"}}


class Validator:
    """Builds the metrics once and evaluates a model on a validation loader.

    Args:
        metrics_cfg: ``val.metrics`` (name -> {type, crop_border, test_y_channel, better}); empty
            means PSNR + SSIM + LPIPS (LPIPS only when its weights are found).
        dist_info: Rank, world size and device.
        lpips_weights: File/folder of the LPIPS trunk weights (None: torch cache).
        warn: Where the one-line "LPIPS skipped" message goes.
    """

    def __init__(self, metrics_cfg: Optional[dict], dist_info: DistInfo,
                 lpips_weights: Optional[str] = None, warn: Callable[[str], None] = print):
        import gfpgan.metrics  # noqa: F401  (fills METRIC_REGISTRY)
        from gfpgan.registry import METRIC_REGISTRY

        self.dist = dist_info
        self.metrics: Dict[str, Tuple[Callable, dict]] = {}
        self.higher_better: Dict[str, bool] = {}
        for name, cfg in (metrics_cfg or DEFAULT_METRICS).items():
            kind, higher = _ALIASES[cfg["type"]]
            if cfg.get("better"):
                higher = cfg["better"] == "higher"
            if kind == "LPIPSMetric":
                try:
                    fn = METRIC_REGISTRY.get(kind)(net="alex", trunk_path=lpips_weights,
                                                   device=str(dist_info.device))
                except UserError as exc:  # missing weights: skip only this metric
                    warn(str(exc))
                    continue
                kwargs = {}
            else:
                fn = METRIC_REGISTRY.get(kind)
                kwargs = {"crop_border": cfg.get("crop_border", 0),
                          "test_y_channel": cfg.get("test_y_channel", False)}
            self.metrics[name] = (fn, kwargs)
            self.higher_better[name] = higher

    @property
    def main_metric(self) -> Optional[str]:
        """The first metric: the one that decides the best checkpoint."""
        return next(iter(self.metrics), None)

    def is_better(self, name: str, new: float, old: Optional[float]) -> bool:
        if old is None:
            return True
        return new > old if self.higher_better[name] else new < old

    @torch.no_grad()
    def run(self, restore: Callable[[torch.Tensor], torch.Tensor], loader: DataLoader,
            save_dir: Optional[Path] = None, suffix: Optional[str] = None,
            max_images: Optional[int] = None) -> Dict[str, float]:
        """Mean of every metric over the validation set (all ranks together).

        Args:
            restore: ``lq (B,3,S,S) in [-1,1] -> output (B,3,S,S) in [-1,1]``.
            loader: This rank's shard of the val set (see :func:`val_loader`), items with
                ``lq``, ``gt`` and optionally ``lq_path``/``gt_path``.
            save_dir: When given, restored images are written there as PNG.
            suffix: File-name suffix of the saved images.
            max_images: Validate at most this many images per rank.
        """
        from gfpgan.images import tensor_to_img, write_image_atomic

        sums = torch.zeros(len(self.metrics) + 1, dtype=torch.float64)
        done = 0
        devices = [self.dist.device] if self.dist.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            for batch in loader:
                if max_images is not None and done >= max_images:
                    break
                lq, gt = batch["lq"].to(self.dist.device), batch["gt"]
                out = restore(lq).float().cpu()
                names = batch.get("lq_path") or batch.get("gt_path") or [None] * lq.shape[0]
                for i in range(out.shape[0]):
                    if max_images is not None and done >= max_images:
                        break
                    img, ref = tensor_to_img(out[i]), tensor_to_img(gt[i])
                    for k, (fn, kwargs) in enumerate(self.metrics.values()):
                        if hasattr(fn, "batch"):  # LPIPS works on tensors
                            sums[k] += float(fn.batch(out[i:i + 1], gt[i:i + 1].float())[0])
                        else:
                            sums[k] += float(fn(img, ref, **kwargs))
                    sums[-1] += 1
                    done += 1
                    if save_dir is not None:
                        stem = Path(names[i]).stem if names[i] else f"{self.dist.rank}_{done:05d}"
                        name = f"{stem}_{suffix}.png" if suffix else f"{stem}.png"
                        write_image_atomic(Path(save_dir) / name, img)
        sums = sum_over_ranks(sums, self.dist)
        count = max(1.0, float(sums[-1]))
        return {name: float(sums[k]) / count for k, name in enumerate(self.metrics)}


def val_loader(dataset, dist_info: DistInfo, batch_size: int = 1, num_workers: int = 0) -> DataLoader:
    """A loader over this rank's shard (``rank::world_size``, no padding, no duplicates)."""
    indices: List[int] = list(range(dist_info.rank, len(dataset), dist_info.world_size))
    return DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size,
                      shuffle=False, num_workers=num_workers, drop_last=False)
