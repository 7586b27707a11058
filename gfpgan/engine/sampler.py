"""A resumable, world-size-aware sampler, per-sample seeding and DataLoader worker seeding.

Each epoch draws one permutation of ``len(dataset) * enlarge_ratio`` indices from a generator
seeded with ``seed + epoch`` (the same on every rank), pads it to a multiple of the world size and
gives rank ``r`` the items ``r, r + W, r + 2W, ...``. With a global batch of ``B * W``, step ``k``
of a W-rank run therefore sees exactly the samples of step ``k`` of a 1-rank run with batch
``B * W``, which is what makes 1-process and N-process runs comparable. ``set_start(n)`` skips
the first ``n`` indices of this rank in the current epoch, so a resumed run continues mid-epoch
with the samples the interrupted run would have used.

What a sample looks like must not depend on *where* it is made (which worker, which rank, how far a
worker's stream had got), or a run resumed mid-epoch would make other samples than the run it
replays: its fresh workers start their streams over, and a DataLoader hands batch ``j`` of a fresh
iterator to worker ``j % num_workers``. :class:`SeededSamples` therefore runs every
``dataset[index]`` with the global ``random``/``numpy``/``torch`` generators seeded from
``(seed, epoch, index)`` alone (and puts the caller's states back afterwards), and
:func:`loader_generator` keeps the DataLoader's own per-iterator seed draw off the global torch
stream, which the model's noise injection uses and a training state restores.
"""

import math
import random
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


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


def _seed_sequence(*parts: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(p) for p in parts])


class SeededSamples(Dataset):
    """``dataset[index]`` as a pure function of ``(seed, epoch, index)``, wherever it runs.

    Each item is made with Python's ``random``, numpy's global generator and torch's CPU generator
    seeded from ``(seed, epoch, index)``; the caller's states are put back afterwards. A dataset
    that draws from the global generators (BasicSR-style code does) then gives the same sample
    in the main process or in any DataLoader worker, fresh or resumed, and with
    ``num_workers=0`` it no longer consumes the training stream. (The project's datasets draw
    from their own per-sample generators too; this makes the guarantee hold for any dataset.)

    Args:
        dataset: A map-style dataset; its ``set_epoch`` (if any) is called by :meth:`set_epoch`.
        seed: The run's base seed (the same on every rank: the sampler already gives each rank
            its own indices, and a sample does not depend on the rank that makes it).
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the next items (call before creating the epoch's iterator)."""
        self.epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        # a spawned child: not the stream a dataset's own default_rng of these numbers would give
        ss = _seed_sequence(self.seed, self.epoch, index).spawn(1)[0]
        py_seed, np_seed, torch_seed = (int(v) for v in ss.generate_state(3, np.uint64))
        py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
        random.seed(py_seed)
        np.random.seed(np_seed % 2 ** 32)
        torch.default_generator.manual_seed(torch_seed)  # the CPU's only: torch.manual_seed costs ~100x
        try:
            return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch.set_rng_state(torch_state)


def loader_generator() -> torch.Generator:
    """A private generator for ``DataLoader(generator=...)``; reseed it with :func:`seed_loader`.

    Every new DataLoader iterator (every epoch, and once more when a run resumes mid-epoch) draws
    a base seed for its workers from this generator, or, without one, from the *global* torch
    generator. That extra draw on resume shifted the stream of the generator's noise injection
    after every mid-epoch resume (the uninterrupted run had made its draw at the epoch start,
    before the state it saved), so the resumed run trained on other noise.
    """
    return torch.Generator()


def seed_loader(generator: Optional[torch.Generator], seed: int, rank: int, epoch: int) -> None:
    """Seed a loader's generator for ``epoch``: its workers' base seed is then a pure function of
    ``(seed, rank, epoch)``, whether the epoch starts at its head or mid-way (resume)."""
    if generator is not None:
        generator.manual_seed(int(_seed_sequence(seed, rank, epoch).generate_state(1, np.uint64)[0] >> 1))
