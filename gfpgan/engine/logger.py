"""Training logs: one text line per interval (iteration, losses, learning rates, speed, ETA) and
TensorBoard scalars/images. Only rank 0 writes; other ranks get a silent logger.

TensorBoard tags: ``losses/<key>`` (every loss the model returns), ``scores/real_score`` and
``scores/fake_score`` (D outputs), ``lr/<optimizer>``, ``time/iter`` and ``time/data`` (seconds),
``val/<metric>``, and ``images/lq_output_gt`` (a grid, one row per sample: LQ | output | GT).
"""

import datetime
import logging
import sys
import time
from collections import deque
from pathlib import Path
from typing import Dict, Optional

import torch

_SCORE_KEYS = ("real_score", "fake_score")


def format_eta(seconds: float) -> str:
    """``1d 2h 3m`` style duration."""
    seconds = max(0, int(seconds))
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    if d:
        return f"{d}d {h}h {m}m"
    if h:
        return f"{h}h {m}m"
    return f"{m}m {s}s"


class TrainLogger:
    """Text + TensorBoard logger for the training loop.

    Args:
        run_dir: The run folder; ``train.log`` and ``tb_logger/`` go there.
        total_iter: Last iteration (for the ETA).
        start_iter: Iterations already done (resume), so the ETA counts only what is left.
        is_main: Only the main rank writes anything.
        use_tb: Write TensorBoard events.
    """

    def __init__(self, run_dir, total_iter: int, start_iter: int = 0, is_main: bool = True,
                 use_tb: bool = True):
        self.total_iter = total_iter
        self.is_main = is_main
        self.iter_times = deque(maxlen=100)
        self.data_times = deque(maxlen=100)
        self.tb = None
        self.log = logging.getLogger(f"gfpgan.train.{id(self)}")
        self.log.propagate = False
        self.log.setLevel(logging.INFO if is_main else logging.ERROR)
        if not is_main:
            return
        run_dir = Path(run_dir)
        fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
        for handler in (logging.StreamHandler(sys.stdout),
                        logging.FileHandler(run_dir / "train.log", encoding="utf-8")):
            handler.setFormatter(fmt)
            self.log.addHandler(handler)
        if use_tb:
            from torch.utils.tensorboard import SummaryWriter  # training-only dependency

            self.tb = SummaryWriter(log_dir=str(run_dir / "tb_logger"), purge_step=start_iter + 1)

    def info(self, msg: str) -> None:
        self.log.info(msg)

    def warning(self, msg: str) -> None:
        self.log.warning(msg)

    def record_times(self, iter_time: float, data_time: float) -> None:
        """Feed one iteration's wall time and data-loading time (seconds) to the ETA."""
        self.iter_times.append(iter_time)
        self.data_times.append(data_time)

    def eta(self, it: int) -> float:
        if not self.iter_times:
            return float("nan")
        return (self.total_iter - it) * sum(self.iter_times) / len(self.iter_times)

    def log_iter(self, it: int, epoch: int, logs: Dict[str, float], lrs: Dict[str, float],
                 print_line: bool = True) -> None:
        """Scalars to TensorBoard every call; a text line when ``print_line``."""
        if not self.is_main:
            return
        it_t = self.iter_times[-1] if self.iter_times else float("nan")
        data_t = self.data_times[-1] if self.data_times else float("nan")
        if self.tb is not None:
            for key, value in logs.items():
                group = "scores" if key in _SCORE_KEYS else "losses"
                self.tb.add_scalar(f"{group}/{key}", value, it)
            for name, lr in lrs.items():
                self.tb.add_scalar(f"lr/{name}", lr, it)
            self.tb.add_scalar("time/iter", it_t, it)
            self.tb.add_scalar("time/data", data_t, it)
        if print_line:
            avg = sum(self.iter_times) / max(1, len(self.iter_times))
            avg_data = sum(self.data_times) / max(1, len(self.data_times))
            lr_txt = " ".join(f"lr_{k}:{v:.3e}" for k, v in lrs.items())
            loss_txt = " ".join(f"{k}:{v:.4e}" for k, v in logs.items())
            self.info(f"[epoch {epoch} iter {it}/{self.total_iter}] {lr_txt} | {loss_txt} | "
                      f"{avg:.3f}s/it (data {avg_data:.3f}s) | eta {format_eta(self.eta(it))}")

    def log_images(self, it: int, lq: torch.Tensor, out: torch.Tensor, gt: torch.Tensor,
                   max_rows: int = 4) -> None:
        """A grid of LQ | output | GT rows; tensors (B, 3, H, W) in [-1, 1]."""
        if not (self.is_main and self.tb is not None):
            return
        n = min(max_rows, lq.shape[0])
        size = gt.shape[-2:]
        lq = torch.nn.functional.interpolate(lq[:n].float().cpu(), size=size, mode="bilinear",
                                             align_corners=False)
        rows = [torch.cat([lq[i], out[i].float().cpu(), gt[i].float().cpu()], dim=2)
                for i in range(n)]
        grid = torch.cat(rows, dim=1).nan_to_num(0.0).clamp(-1, 1).add(1).div(2)  # (3, n*H, 3*W) in [0, 1]
        self.tb.add_image("images/lq_output_gt", grid, it)

    def log_val(self, it: int, metrics: Dict[str, float], best: Optional[str] = None) -> None:
        if not self.is_main:
            return
        if self.tb is not None:
            for key, value in metrics.items():
                self.tb.add_scalar(f"val/{key}", value, it)
        txt = " ".join(f"{k}:{v:.4f}" for k, v in metrics.items())
        self.info(f"[val iter {it}] {txt}" + (f" | {best}" if best else ""))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
        for handler in list(self.log.handlers):
            handler.close()
            self.log.removeHandler(handler)


class Timer:
    """``with Timer() as t: ...; t.seconds``."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False


def now() -> str:
    return datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
