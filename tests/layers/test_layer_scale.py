"""LayerScale2d: one scale per channel of an NCHW tensor, reset to its initial value."""

from __future__ import annotations

import torch

from efficientformer.layers import LayerScale2d


def test_scales_each_channel():
    layer = LayerScale2d(3)
    assert torch.equal(layer.gamma, torch.full((3,), 1e-5))
    with torch.no_grad():
        layer.gamma.copy_(torch.tensor([1.0, 2.0, 3.0]))
    out = layer(torch.ones(2, 3, 4, 5))
    assert out.shape == (2, 3, 4, 5)
    assert [out[:, c].unique().tolist() for c in range(3)] == [[1.0], [2.0], [3.0]]


def test_reset_parameters_restores_the_initial_value():
    layer = LayerScale2d(4, init_value=0.5)
    with torch.no_grad():
        layer.gamma.mul_(7.0)
    layer.reset_parameters()
    assert layer.gamma.tolist() == [0.5] * 4
