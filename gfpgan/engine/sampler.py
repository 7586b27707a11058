"""A resumable, world-size-aware sampler and deterministic DataLoader worker seeding.

Each epoch draws one permutation of ``len(dataset) * enlarge_ratio`` indices from a generator
seeded with ``seed + epoch`` (the same on every rank), pads it to a multiple of the world size and
gives rank ``r`` the items ``r, r + W, r + 2W, ...``. With a global batch of ``B * W``, step ``k``
of a W-rank run therefore sees exactly the samples of step ``k`` of a 1-rank run with batch
``B * W``, which is what makes 1-process and N-process runs comparable. ``set_start(n)`` skips
the first ``n`` indices of this rank in the current epoch, so a resumed run continues mid-epoch
with the samples the interrupted run would have used.
"""

import math
import random
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Sampler


class ResumableDistributedSampler(Sampler):
    """Seeded per-epoch shuffle, split across ranks, with a start position.

    Args:
        dataset_len: Number of items in the dataset.
        num_replicas: World size.
        rank: This process's rank.
        shuffle: Shuffle every epoch (else the order is 0..N-1).
        seed: Base seed, shared by all ranks.
        enlarge_ratio: Repeat the dataset this many times per epoch (BasicSR's
            ``dataset_enlarge_ratio``); indices go up to ``dataset_len * enlarge_ratio`` and the
            dataset maps them onto its items (``index % len``).
    """

    def __init__(self, dataset_len: int, num_replicas: int = 1, rank: int = 0,
                 shuffle: bool = True, seed: int = 0, enlarge_ratio: int = 1):
        if dataset_len <= 0:
            raise ValueError("the dataset is empty")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside a world of {num_replicas}")
        self.dataset_len = dataset_len
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.enlarge_ratio = max(1, int(enlarge_ratio))
        self.total = dataset_len * self.enlarge_ratio
        self.num_samples = math.ceil(self.total / num_replicas)  # per rank, per epoch
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation the next ``iter()`` uses (and start at its head)."""
        self.epoch = int(epoch)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this rank in the next ``iter()`` (resume)."""
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"start {start} outside [0, {self.num_samples}]")
        self.start = int(start)

    def indices(self) -> list:
        """This rank's full index list for the current epoch (before ``start``)."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.total, generator=g).tolist()
        else:
            order = list(range(self.total))
        padded = self.num_samples * self.num_replicas
        order += order[: padded - len(order)]  # the same padding on every rank
        # indices run over the enlarged range [0, dataset_len * enlarge_ratio): the datasets wrap
        # them onto their items, and each repeat keeps its own index, hence its own degradation
        return order[self.rank:padded:self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


def make_worker_init_fn(seed: int, rank: int):
    """A ``worker_init_fn`` seeding numpy, random and torch per (seed, rank, worker id)."""

    def _init(worker_id: int) -> None:
        ss = np.random.SeedSequence([int(seed), int(rank), int(worker_id)])
        a, b = ss.generate_state(2)
        np.random.seed(int(a))
        random.seed(int(b))
        torch.manual_seed((int(a) << 32) | int(b))

    return _init


def seed_everything(seed: int, device: Optional[torch.device] = None) -> None:
    """Seed python, numpy and torch (CPU and, on CUDA, the device) with one value."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
