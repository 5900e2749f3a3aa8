"""Per-channel learnable scale for NCHW tensors."""

from __future__ import annotations

import torch
from torch import nn


class LayerScale2d(nn.Module):
    """`x * gamma` with `gamma` of shape (C,), broadcast over (B, C, H, W)."""

    def __init__(self, dim: int, init_value: float = 1e-5) -> None:
        super().__init__()
        self.init_value = init_value
        self.gamma = nn.Parameter(torch.empty(dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.gamma, self.init_value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1)
