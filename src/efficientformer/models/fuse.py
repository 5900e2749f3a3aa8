"""Inference fast path: fold every BN, layer scale and softmax scale into convs, freeze attention biases."""

from __future__ import annotations

import copy

import torch
from torch import nn

from efficientformer.errors import UnknownNameError


def _fuse_tree(module: nn.Module) -> nn.Module:
    """Bottom-up walk: fuse the children first, then call the module's own `fuse()` if it has one.

    Dropout is an identity at inference and becomes nn.Identity.
    """
    if isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
        return nn.Identity()
    for name, child in list(module.named_children()):
        if child is not None:
            setattr(module, name, _fuse_tree(child))
    fuse = getattr(module, "fuse", None)
    return fuse() if callable(fuse) else module


# Opt-in approximations of `fuse`, off by default (the default is exact): name -> what changes.
APPROXIMATIONS = {
    "gelu-tanh": "every exact (erf) GELU becomes the tanh form; max |difference| 4.7e-4 per activation, at x ~ 2.7",
}


def _approximate(model: nn.Module, approximations: tuple[str, ...]) -> None:
    unknown = [name for name in approximations if name not in APPROXIMATIONS]
    if unknown:
        raise UnknownNameError(f"unknown approximation(s) {', '.join(unknown)}; known: {', '.join(APPROXIMATIONS)}")
    if "gelu-tanh" in approximations:
        for module in model.modules():
            if isinstance(module, nn.GELU):
                module.approximate = "tanh"


def fuse(model: nn.Module, channels_last: bool = False, compile: bool = False,
         approximate: tuple[str, ...] = ()) -> nn.Module:
    """An inference-only copy of `model` with the same eval-mode outputs and fewer, cheaper ops.

    Dropouts are removed, BatchNorms are folded into the convs before them (and the final one into the linear heads,
    which are averaged into one), layer scales into the last conv of their branch, the attention
    scale into the query projection; relative-position biases become constant buffers. The input
    model is not modified.

    Args:
        model: an EfficientFormerV2 (or any module whose parts expose `.fuse()`).
        channels_last: convert weights to channels-last memory format (feed channels-last inputs).
        compile: wrap the result in `torch.compile` (inductor, with weight freezing); the first
            call compiles (tens of seconds on CPU), later calls are fast. Input shapes are static.
        approximate: names from APPROXIMATIONS to apply (default none: the copy is exact).
    """
    fused = copy.deepcopy(model).eval()
    fused = _fuse_tree(fused)
    _approximate(fused, tuple(approximate))
    for parameter in fused.parameters():
        parameter.requires_grad_(False)
    if channels_last:
        fused = fused.to(memory_format=torch.channels_last)
    if compile:
        return torch.compile(fused, options={"freezing": True})
    return fused
