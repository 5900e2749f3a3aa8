"""Exponential moving average of a model's weights (docs/training.md: decay 0.99996, kept and checkpointed)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from efficientformer.errors import ConfigError


class ModelEma(nn.Module):
    """`ema = decay * ema + (1 - decay) * weights` after every optimiser step; buffers are copied.

    The average lives in a frozen deep copy of the model (same device), usable for evaluation.
    """

    def __init__(self, model: nn.Module, decay: float = 0.99996) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(_unwrap(model)).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        source = _unwrap(model).state_dict()
        for name, average in self.module.state_dict().items():
            value = source[name].detach()
            if average.dtype.is_floating_point:
                average.lerp_(value.to(average.dtype), 1.0 - self.decay)
            else:
                average.copy_(value)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel (or the model itself)."""
    return getattr(model, "module", model)


__all__ = ["ModelEma"]
