"""Talking-heads mixing: a learned linear map over the head axis of attention logits."""

from __future__ import annotations

import math

import torch
from torch import nn


class TalkingHead(nn.Module):
    """Mix attention maps across heads: out[b, o] = sum_h W[o, h] * x[b, h] + bias[o].

    The parameters have the shape of a 1x1 conv over heads, (H, H, 1, 1) and (H,), so checkpoints
    of the official and timm code load unchanged. It is computed as a matmul over the head axis
    rather than a conv: the same numbers, and runtimes that mis-lower a 1x1 conv feeding a softmax
    (ExecuTorch/XNNPACK) see a plain matmul instead.
    """

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.weight = nn.Parameter(torch.empty(num_heads, num_heads, 1, 1))
        self.bias = nn.Parameter(torch.empty(num_heads))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The default init of nn.Conv2d(num_heads, num_heads, 1), which the reference code uses.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(self.num_heads)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, heads, num_q, num_k = x.shape
        mixed = torch.matmul(self.weight.view(heads, heads), x.reshape(batch, heads, num_q * num_k))  # (B, H, Nq*Nk)
        return mixed.view(batch, heads, num_q, num_k) + self.bias.view(1, heads, 1, 1)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}"
