"""Optimisation pieces of the paper's recipe (docs/training.md): parameter groups, AdamW, warm-up + cosine, AGC.

Weight decay: every 1-D parameter (BatchNorm affine, biases, layer scales of shape (C,)) and every
name in `model.no_weight_decay()` (the relative-position bias tables) is exempt; everything else
(conv and linear weights, talking-head weights) is decayed. This is timm's choice for this model;
the official run also decayed the (C,1,1) layer scales and the 2-D bias tables (docs/training.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from efficientformer.errors import ConfigError


def layer_ids(model: nn.Module) -> dict[str, int]:
    """Depth of every parameter: 0 for the stem, increasing to the output, the heads last.

    Read from `model.group_matcher(coarse=False)` (timm's convention: a dict of regexes, or of
    (regex, suffix) lists; a name's sort key is the group's position, the regex's numbers, the suffix).
    """
    if not hasattr(model, "group_matcher"):
        raise TypeError(f"layer-wise lr decay needs a model with group_matcher(), got {type(model).__name__}")
    matchers = []
    for ordinal, spec in enumerate(model.group_matcher(coarse=False).values()):
        for pattern, suffix in ([(spec, None)] if isinstance(spec, str) else spec):
            matchers.append((re.compile(pattern), (ordinal,), suffix or ()))

    def sort_key(name: str) -> tuple[float, ...]:
        for pattern, prefix, suffix in matchers:
            match = pattern.match(name)
            if match:
                return tuple(float(v) for v in (*prefix, *match.groups(), *suffix))
        return (math.inf,)

    keys = {name: sort_key(name) for name, _ in model.named_parameters()}
    order = {key: index for index, key in enumerate(sorted(set(keys.values())))}
    return {name: order[key] for name, key in keys.items()}


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float | None = None) -> list[dict]:
    """AdamW groups: decayed weights, and the exempt parameters with weight_decay 0.

    With `layer_decay` (timm/BEiT layer-wise lr decay) each layer gets its own pair of groups with
    `lr_scale = layer_decay ** (last_layer - layer)`: the heads train at the full rate, the stem
    at the smallest. Frozen parameters (requires_grad False) are left out.
    """
    no_decay_names = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    if layer_decay is not None and not 0.0 < layer_decay <= 1.0:
        raise ConfigError(f"layer_decay must be in (0, 1], got {layer_decay!r}")
    depth = layer_ids(model) if layer_decay is not None else {}
    last = max(depth.values(), default=0)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exempt = param.ndim <= 1 or name.endswith(".bias") or name in no_decay_names
        layer = depth.get(name, last)
        group = groups.get((layer, exempt))
        if group is None:
            group = groups[(layer, exempt)] = {"params": [], "weight_decay": 0.0 if exempt else weight_decay,
                                               "group": "no_decay" if exempt else "decay"}
            if layer_decay is not None:
                group.update(group=f"layer_{layer}_{group['group']}", lr_scale=layer_decay ** (last - layer))
        group["params"].append(param)
    if layer_decay is None:  # always the same two groups, in this order (resumable optimizer state)
        return [groups.get((last, False), {"params": [], "weight_decay": weight_decay, "group": "decay"}),
                groups.get((last, True), {"params": [], "weight_decay": 0.0, "group": "no_decay"})]
    return [groups[key] for key in sorted(groups)]


def create_optimizer(model: nn.Module, lr: float, weight_decay: float, eps: float = 1e-8,
                     betas: tuple[float, float] = (0.9, 0.999), layer_decay: float | None = None) -> torch.optim.AdamW:
    """AdamW over `param_groups(model, weight_decay, layer_decay)`; each group's lr is `lr * lr_scale`."""
    groups = param_groups(model, weight_decay, layer_decay)
    for group in groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return torch.optim.AdamW(groups, lr=lr, eps=eps, betas=betas)


@dataclass(frozen=True)
class CosineSchedule:
    """Linear warm-up from `warmup_lr` to `lr`, then cosine decay to `min_lr` at `epochs` (docs/training.md).

    The schedule is a pure function of the (possibly fractional) epoch, so it needs no state to
    resume. As in DeiT/timm, the cosine runs over all `epochs` counted from 0 (the warm-up is not
    a prefix), and the official recipe steps it once per epoch (`per_step=False`).
    """

    lr: float
    epochs: int
    warmup_epochs: float = 5
    warmup_lr: float = 1e-5
    min_lr: float = 1e-5
    per_step: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"schedule epochs must be >= 1, got {self.epochs}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")

    def lr_at(self, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
        """Learning rate for `step` (0-based) of `epoch` (0-based)."""
        t = epoch + (step / steps_per_epoch if self.per_step else 0.0)
        if t < self.warmup_epochs:
            return self.warmup_lr + (self.lr - self.warmup_lr) * t / self.warmup_epochs
        t = min(t, self.epochs)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * t / self.epochs))

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
        """Set every group's lr for this step (times its `lr_scale`, if any); returns the unscaled rate."""
        lr = self.lr_at(epoch, step, steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr


@dataclass(frozen=True)
class PolySchedule:
    """Linear warm-up, then `lr * (1 - t / epochs) ** power` down to `min_lr`, stepped per batch.

    The Semantic FPN schedule (power 0.9 in mmseg's ADE20K configs). Same interface as
    CosineSchedule, so the training loop takes either; a pure function of the position.
    """

    lr: float
    epochs: int
    power: float = 0.9
    min_lr: float = 0.0
    warmup_epochs: float = 0.0
    warmup_lr: float = 1e-6

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"schedule epochs must be >= 1, got {self.epochs}")

    def lr_at(self, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
        t = epoch + step / steps_per_epoch
        if t < self.warmup_epochs:
            return self.warmup_lr + (self.lr - self.warmup_lr) * t / self.warmup_epochs
        remaining = max(0.0, 1.0 - min(t, self.epochs) / self.epochs)
        return self.min_lr + (self.lr - self.min_lr) * remaining ** self.power

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
        lr = self.lr_at(epoch, step, steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr


def _unitwise_norm(x: torch.Tensor) -> torch.Tensor:
    """Norm per output unit: whole-tensor for scalars/vectors, over all but dim 0 otherwise (keepdim)."""
    if x.ndim <= 1:
        return x.norm(2)
    return x.norm(2, dim=tuple(range(1, x.ndim)), keepdim=True)  # (out, 1, ...)


@torch.no_grad()
def adaptive_clip_grad_(parameters: Iterable[torch.Tensor], clip_factor: float = 0.01, eps: float = 1e-3) -> None:
    """Adaptive gradient clipping (Brock et al. 2021), the authors' `--clip-mode agc --clip-grad 0.01`.

    Each unit's gradient is scaled down to at most `clip_factor * max(||w||, eps)` of its weight's
    norm; units under the bound are untouched.
    """
    for param in parameters:
        if param.grad is None:
            continue
        max_norm = _unitwise_norm(param).clamp_(min=eps).mul_(clip_factor)
        grad_norm = _unitwise_norm(param.grad)
        clipped = param.grad * (max_norm / grad_norm.clamp(min=1e-6))
        param.grad.copy_(torch.where(grad_norm < max_norm, param.grad, clipped))


def clip_gradients_(parameters: Iterable[torch.Tensor], mode: str, value: float) -> None:
    """Clip in place: mode 'agc' (factor), 'norm' (global L2 norm) or 'none'."""
    if mode == "agc":
        adaptive_clip_grad_(parameters, value)
    elif mode == "norm":
        torch.nn.utils.clip_grad_norm_(list(parameters), value)
    elif mode != "none":
        raise ConfigError(f"clip mode must be 'agc', 'norm' or 'none', got {mode!r}")


__all__ = ["CosineSchedule", "PolySchedule", "adaptive_clip_grad_", "clip_gradients_", "create_optimizer",
           "param_groups"]
