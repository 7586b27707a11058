"""torchrun environment: rank, world size, device and process-group setup.

One place for the distributed conventions of the project: the device comes from LOCAL_RANK,
the backend is nccl on CUDA and gloo on CPU, and single-process runs need no environment.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a (possibly single-process) job."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_dist(device: str = "auto") -> DistInfo:
    """Read torchrun's environment and initialise the process group when there are >1 ranks.

    Args:
        device: "auto" (CUDA:LOCAL_RANK when CUDA is available, else CPU), "cpu" or "cuda".
    Returns:
        A :class:`DistInfo` for this process.
    """
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, local_rank, world_size, dev)


def get_dist_info() -> DistInfo:
    """The current process's rank information without initialising anything."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        rank, world = torch_dist.get_rank(), torch_dist.get_world_size()
    else:
        rank, world = 0, 1
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    return DistInfo(rank, local_rank, world, dev)


def barrier() -> None:
    """Synchronise all ranks (no-op when not distributed)."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()


def cleanup(synchronize: bool = False) -> None:
    """Destroy the process group if one was created.

    Args:
        synchronize: wait for every rank first. Pass True on success paths: a rank that tears
            its gloo group down while a peer is still working can abort at exit ("terminate
            called without an active exception"). Leave False when unwinding an error, where
            the peers may never reach the barrier.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        if synchronize:
            torch_dist.barrier()
        torch_dist.destroy_process_group()
