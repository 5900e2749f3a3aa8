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


class CompiledInference(nn.Module):
    """`torch.compile` (inductor) of an inference module with inductor's weight freezing really on.

    Freezing turns the weights into constants, which lets inductor fold them, pre-pack them for
    oneDNN and fuse each conv with the GELU after it. Dynamo decides whether the weights are
    constants while it traces, from inductor's `freezing` setting at that moment; in torch 2.13,
    `torch.compile(options={"freezing": True})` applies the option only later, inside the backend,
    so the weights stay graph inputs and nothing is frozen. Here every call runs with the setting on
    (and without autograd, which freezing needs), so the first call traces a frozen graph and a
    recompile for a new shape does too. Weights changed in place after the first call are not seen.
    On CPU the graph is also called through inductor's C++ wrapper (`cpp_wrapper`), not generated
    Python: S0 at batch 1 on one CPU thread ran 12% faster with it, for a few more seconds of
    compiling. Other devices keep inductor's default wrapper.

    `module` is the wrapped module (its parameters and state dict are this module's).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        # Not registered as a child: it wraps `module` itself, whose parameters are already ours.
        object.__setattr__(self, "_compiled", torch.compile(module))

    def forward(self, *args, **kwargs):
        from torch._inductor import config as inductor_config

        on_cpu = all(a.device.type == "cpu" for a in args if isinstance(a, torch.Tensor))
        with torch.no_grad(), inductor_config.patch(freezing=True, cpp_wrapper=on_cpu):
            return self._compiled(*args, **kwargs)


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
        compile: wrap the result in `torch.compile` (inductor, with weight freezing: CompiledInference);
            the first call compiles (tens of seconds on CPU), later calls are fast. Input shapes are static.
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
        return CompiledInference(fused)
    return fused
