"""torchrun environment: rank, world size, device, process-group setup, and every collective.

One place for the distributed conventions of the project: the device comes from LOCAL_RANK,
the backend is nccl on CUDA and gloo on CPU, and single-process runs need no environment. Every
collective the project runs (broadcast, all_reduce, all_gather, barrier) is one function here;
each is the identity on a single process, so callers never branch on the world size.
"""

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Union

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


# ----------------------------------------------------------------------------------- collectives
def broadcast_object(obj: Any, dist_info: DistInfo) -> Any:
    """Rank 0's ``obj`` (any picklable object) on every rank."""
    if not dist_info.distributed:
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any, dist_info: DistInfo) -> List[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not dist_info.distributed:
        return [obj]
    out = [None] * dist_info.world_size
    torch_dist.all_gather_object(out, obj)
    return out


def all_ranks(flag: Union[bool, torch.Tensor], dist_info: DistInfo) -> bool:
    """True on every rank when ``flag`` (a bool or a 0-d tensor) holds on every rank."""
    t = torch.as_tensor(flag, device=dist_info.device).to(torch.int32)
    if dist_info.distributed:
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MIN)
    return bool(t.item())


def any_rank(flag: Union[bool, torch.Tensor], dist_info: DistInfo) -> bool:
    """True on every rank when ``flag`` holds on at least one rank."""
    return not all_ranks(torch.as_tensor(flag, device=dist_info.device).logical_not(), dist_info)


def sum_over_ranks(t: torch.Tensor, dist_info: DistInfo) -> torch.Tensor:
    """Elementwise sum of ``t`` over the ranks (a new tensor on ``t``'s device; ``t`` itself alone)."""
    if not dist_info.distributed:
        return t
    out = t.to(dist_info.device, copy=True)  # gloo and nccl reduce on the rank's own device
    torch_dist.all_reduce(out)
    return out.to(t.device)


def mean_over_ranks(logs: Dict[str, torch.Tensor], dist_info: DistInfo) -> Dict[str, float]:
    """{key: scalar tensor} -> {key: float averaged over ranks}, with one all_reduce."""
    if not logs:
        return {}
    keys = list(logs)
    values = torch.stack([logs[k].detach().float().reshape(()) for k in keys])
    values = sum_over_ranks(values, dist_info) / dist_info.world_size
    return dict(zip(keys, values.tolist()))
