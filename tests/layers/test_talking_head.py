"""TalkingHead: a linear map over the head axis, equal to the 1x1 conv it replaces."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from efficientformer.layers import TalkingHead


def test_mixes_heads_by_hand():
    layer = TalkingHead(2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, 1.0], [2.0, 0.0]]).view(2, 2, 1, 1))  # swap, and double head 0
        layer.bias.copy_(torch.tensor([10.0, 20.0]))
    x = torch.arange(2 * 2 * 3 * 4, dtype=torch.float32).view(2, 2, 3, 4)  # (B, H, Nq, Nk)
    out = layer(x)
    assert torch.equal(out[:, 0], x[:, 1] + 10.0) and torch.equal(out[:, 1], 2.0 * x[:, 0] + 20.0)


def test_equals_the_1x1_conv_over_heads():
    generator = torch.Generator().manual_seed(0)
    layer = TalkingHead(4)
    assert layer.weight.shape == (4, 4, 1, 1) and layer.bias.shape == (4,)  # the official conv's layout
    x = torch.randn(3, 4, 5, 6, generator=generator)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight, layer.bias))


def test_reset_parameters_uses_the_conv_default_bounds():
    layer = TalkingHead(9)
    with torch.no_grad():
        layer.bias.fill_(5.0)
        layer.weight.fill_(5.0)
    layer.reset_parameters()
    bound = 1.0 / math.sqrt(9)  # fan-in 9: kaiming_uniform(a=sqrt(5)) and the bias both give 1 / sqrt(fan_in)
    assert layer.bias.abs().max() <= bound and layer.weight.abs().max() <= bound
    assert layer.weight.std() > 0.2 * bound
