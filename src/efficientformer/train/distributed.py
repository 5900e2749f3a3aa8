"""torchrun / DDP plumbing: gloo on CPU, nccl on CUDA; one process = one device.

`torchrun --nproc_per_node=N -m efficientformer train ...` sets RANK, WORLD_SIZE and LOCAL_RANK;
without them everything here is a no-op single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this call joined the process group, so `cleanup` leaves it

    @property
    def is_main(self) -> bool:
        """Only this process writes files and prints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str | torch.device) -> torch.device:
    """A device from its name: 'auto' is CUDA when present, else the CPU; anything else as torch reads it."""
    if isinstance(name, str) and name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes (if any); returns the info and this process's device."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistInfo(), device
    info = DistInfo(rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                    local_rank=int(os.environ.get("LOCAL_RANK", 0)), owns_group=not dist.is_initialized())
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if info.owns_group:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum over all processes (in place; returns the tensor)."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_min(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Minimum over all processes (in place; returns the tensor)."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return tensor


def gather_strings(items: list[str], info: DistInfo) -> list[str]:
    """The concatenation of every process's `items` (all ranks get it; a collective call)."""
    if not info.enabled:
        return list(items)
    gathered: list[list[str] | None] = [None] * info.world_size
    dist.all_gather_object(gathered, list(items))
    return [item for part in gathered for item in (part or [])]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    """Leave the process group if `info`'s `init_distributed` joined it; a group the caller set up (a comparison
    that runs several trainings) stays for its next run: leaving and joining again between runs can hang
    (a rank already in the next run's first barrier waits on one that is still joining)."""
    if info.enabled and info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["DistInfo", "all_reduce_min", "all_reduce_sum", "barrier", "cleanup", "gather_strings", "init_distributed",
           "resolve_device"]
