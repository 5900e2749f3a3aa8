"""torchrun / DDP plumbing: gloo on CPU, nccl on CUDA; one process = one device.

`torchrun --nproc_per_node=N -m efficientformer train ...` sets RANK, WORLD_SIZE and LOCAL_RANK;
without them everything here is a no-op single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only this process writes files and prints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes (if any); returns the info and this process's device."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistInfo(), device
    info = DistInfo(rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                    local_rank=int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
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
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


class SyncBatchNormFunction(torch.autograd.Function):
    """Batch norm whose batch statistics, and the sums its backward needs, are all-reduced over processes."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps, momentum):
        dims = (0, 2, 3)
        count = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float64, device=x.device)
        sums = torch.cat([x.sum(dims, dtype=torch.float64), (x.double() ** 2).sum(dims), count])  # (2C + 1,)
        dist.all_reduce(sums)
        channels = x.shape[1]
        total = sums[-1]
        mean = sums[:channels] / total  # (C,)
        var = (sums[channels:2 * channels] / total - mean ** 2).clamp(min=0)  # biased, (C,)
        with torch.no_grad():
            running_mean.lerp_(mean.to(running_mean.dtype), momentum)
            running_var.lerp_((var * total / (total - 1).clamp(min=1)).to(running_var.dtype), momentum)
        invstd = (var + eps).rsqrt().to(x.dtype)
        xhat = (x - mean.to(x.dtype).view(1, -1, 1, 1)) * invstd.view(1, -1, 1, 1)  # (B, C, H, W)
        ctx.save_for_backward(xhat, weight, invstd, total)
        return xhat * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, grad):
        xhat, weight, invstd, total = ctx.saved_tensors
        dims = (0, 2, 3)
        local = torch.cat([grad.sum(dims), (grad * xhat).sum(dims)])  # (2C,): this process's sums
        sums = local.clone()
        dist.all_reduce(sums)
        channels = xhat.shape[1]
        mean_grad = (sums[:channels] / total).view(1, -1, 1, 1)
        mean_grad_xhat = (sums[channels:] / total).view(1, -1, 1, 1)
        grad_x = (grad - mean_grad - xhat * mean_grad_xhat) * (weight * invstd).view(1, -1, 1, 1)
        # Parameter gradients stay local: DistributedDataParallel averages them like every other one.
        return grad_x, local[channels:], local[:channels], None, None, None, None


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with statistics over the global batch while training under DDP, on CPU (gloo) and CUDA.

    Same parameters and buffers as nn.BatchNorm2d (checkpoints and `fuse()` are unaffected); outside
    a multi-process group, or in eval mode, it is plain batch norm.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self.num_batches_tracked.add_(1)
        return SyncBatchNormFunction.apply(x, self.weight, self.bias, self.running_mean, self.running_var,
                                            self.eps, self.momentum)


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """Swap every nn.BatchNorm2d for a SyncBatchNorm2d sharing its parameters and buffers (in place)."""
    for module in model.modules():
        if type(module) is nn.BatchNorm2d and module.affine and module.track_running_stats and module.momentum:
            module.__class__ = SyncBatchNorm2d
    return model


__all__ = ["DistInfo", "SyncBatchNorm2d", "SyncBatchNormFunction", "all_reduce_min", "all_reduce_sum", "barrier", "cleanup",
           "convert_sync_batchnorm", "gather_strings", "init_distributed"]
