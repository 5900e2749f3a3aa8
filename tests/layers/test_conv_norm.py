"""ConvNorm / ConvNormAct: shapes, BN folding by hand and on random statistics, exact GELU."""

from __future__ import annotations

import torch
from torch import nn

from efficientformer.layers import ConvNorm, ConvNormAct, fold_bn_into_conv


def _set_bn(bn: nn.BatchNorm2d, generator: torch.Generator) -> None:
    channels = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(0.5 + torch.rand(channels, generator=generator))
        bn.bias.copy_(torch.randn(channels, generator=generator))
        bn.running_mean.copy_(torch.randn(channels, generator=generator))
        bn.running_var.copy_(0.5 + torch.rand(channels, generator=generator))


def test_shapes_and_default_padding():
    x = torch.randn(2, 4, 9, 9)
    assert ConvNorm(4, 6, kernel_size=3)(x).shape == (2, 6, 9, 9)  # padding k // 2 keeps the size
    assert ConvNorm(4, 6, kernel_size=3, stride=2)(x).shape == (2, 6, 5, 5)
    assert ConvNorm(4, 4, kernel_size=3, groups=4).conv.weight.shape == (4, 1, 3, 3)
    assert ConvNorm(4, 6, bias=False).conv.bias is None


def test_fold_by_hand():
    # y = bn(2x + 1) with mean 1, var 4, gamma 3, beta 0.5 and eps 0: 3 * (2x + 1 - 1) / 2 + 0.5 = 3x + 0.5.
    layer = ConvNorm(1, 1, kernel_size=1).eval()
    with torch.no_grad():
        layer.conv.weight.fill_(2.0)
        layer.conv.bias.fill_(1.0)
        layer.bn.running_mean.fill_(1.0)
        layer.bn.running_var.fill_(4.0)
        layer.bn.weight.fill_(3.0)
        layer.bn.bias.fill_(0.5)
    layer.bn.eps = 0.0
    fused = layer.fuse()
    assert fused.weight.flatten().tolist() == [3.0] and fused.bias.tolist() == [0.5]


def test_fold_matches_eval_mode_on_random_statistics():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 7, 7, generator=generator)
    for layer in (ConvNorm(4, 6, kernel_size=3, stride=2), ConvNorm(4, 4, kernel_size=3, groups=4, bias=False)):
        _set_bn(layer.bn, generator)
        layer.eval()
        fused = layer.fuse()
        assert isinstance(fused, nn.Conv2d) and fused.bias is not None
        assert (fused.stride, fused.padding, fused.groups) == (layer.conv.stride, layer.conv.padding,
                                                               layer.conv.groups)
        torch.testing.assert_close(fused(x), layer(x), rtol=1e-5, atol=1e-5)
    # The folding reads the running statistics, not the batch ones: it matches eval mode only.
    layer = ConvNorm(4, 6).train()
    assert not torch.allclose(fold_bn_into_conv(layer.conv, layer.bn)(x), layer(x), atol=1e-3)


def test_conv_norm_act_is_exact_gelu_and_fuses_to_conv_then_act():
    layer = ConvNormAct(1, 1, kernel_size=1).eval()
    with torch.no_grad():
        layer.conv.weight.fill_(1.0)
        layer.conv.bias.fill_(0.0)
    layer.bn.eps = 0.0
    one = layer(torch.ones(1, 1, 1, 1)).item()
    assert abs(one - 0.8413447460685429) < 1e-6  # x * Phi(x) at 1 (the tanh approximation gives 0.84119)
    generator = torch.Generator().manual_seed(1)
    layer = ConvNormAct(3, 5, kernel_size=3)
    _set_bn(layer.bn, generator)
    layer.eval()
    fused = layer.fuse()
    assert isinstance(fused, nn.Sequential) and isinstance(fused[0], nn.Conv2d) and isinstance(fused[1], nn.GELU)
    x = torch.randn(1, 3, 6, 6, generator=generator)
    torch.testing.assert_close(fused(x), layer(x), rtol=1e-5, atol=1e-5)
