"""Shared test helpers: deterministic non-trivial weights and inputs."""

from __future__ import annotations

import torch


def randomize_state_dict(state_dict: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic non-trivial values for every tensor of an our-layout state dict.

    Keys are visited in sorted order with one seeded generator, so the same keys and shapes always
    give the same values on any machine. BN statistics, layer scales and bias tables get values far
    from their identity-like defaults so that every part of the network affects the logits.
    """
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(state_dict):
        tensor = state_dict[key]
        if not tensor.is_floating_point():
            out[key] = tensor.clone()
            continue
        shape = tensor.shape
        uniform = torch.rand(shape, generator=generator, dtype=torch.float64)
        normal = torch.randn(shape, generator=generator, dtype=torch.float64)
        if key.endswith("running_var"):
            value = 0.5 + uniform
        elif key.endswith("running_mean"):
            value = 0.1 * normal
        elif key.endswith("gamma"):
            value = 0.1 + 0.2 * uniform
        elif key.endswith("attention_biases"):
            value = 0.5 * normal
        elif key.endswith(("bn.weight", "norm.weight")):
            value = 0.5 + uniform
        elif key.endswith("bias") or tensor.ndim == 1:
            value = 0.05 * normal
        else:
            fan_in = tensor[0].numel()
            value = normal / fan_in ** 0.5
        out[key] = value.to(tensor.dtype)
    return out


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Load `randomize_state_dict` values into `model` in place; returns it."""
    model.load_state_dict(randomize_state_dict(model.state_dict(), seed))
    return model


def sample_input(batch: int, height: int, width: int, seed: int = 1) -> torch.Tensor:
    """A deterministic (batch, 3, height, width) float32 input."""
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))
