"""Batch norm over the global batch under DDP, on CPU (gloo) and CUDA (nccl); torch's SyncBatchNorm is CUDA-only.

    convert_sync_batchnorm(model)   # in place: every nn.BatchNorm2d becomes a SyncBatchNorm2d

Outside an initialised multi-process group, or in eval mode, the layer is plain batch norm.
`SyncBatchNormFunction` is the autograd function both this layer and the search's elastic batch
norm (on leading slices of its tensors) run through.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


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


__all__ = ["SyncBatchNorm2d", "SyncBatchNormFunction", "convert_sync_batchnorm"]
