"""MobileNetV2 reference model: the standard parameter counts, shapes, and the fuse() path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import efficientformer
from efficientformer.models.mobilenetv2 import MobileNetV2, create_mobilenetv2, make_divisible
from support import randomize_, sample_input


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,expected", [("mobilenetv2_100", 3_504_872), ("mobilenetv2_140", 6_108_776)])
def test_param_counts_are_the_standard_ones(name, expected):
    assert num_params(create_mobilenetv2(name)) == expected


def test_widths():
    assert make_divisible(32 * 1.4) == 48 and make_divisible(1280 * 1.4) == 1792 and make_divisible(16 * 0.5) == 8
    narrow, wide = create_mobilenetv2("mobilenetv2_100"), create_mobilenetv2("mobilenetv2_140")
    assert (narrow.stem.conv.out_channels, narrow.num_features) == (32, 1280)
    assert (wide.stem.conv.out_channels, wide.num_features) == (48, 1792)
    assert len(narrow.blocks) == 17 and sum(block.use_residual for block in narrow.blocks) == 10
    assert isinstance(narrow.blocks[0].expand, nn.Identity)
    assert isinstance(narrow.stem.act, nn.ReLU6)


@pytest.mark.parametrize("num_classes,size", [(1000, 224), (10, 96), (0, 64)])
def test_forward_shape(num_classes, size):
    model = create_mobilenetv2("mobilenetv2_100", num_classes=num_classes).eval()
    with torch.no_grad():
        out = model(sample_input(2, size, size))
    assert out.shape == (2, num_classes or 1280)
    assert model.forward_features(sample_input(1, size, size)).shape == (1, 1280, size // 32, size // 32)


def test_not_in_the_efficientformer_registry():
    assert not any("mobilenet" in name for name in efficientformer.list_models())
    with pytest.raises(KeyError, match="mobilenetv2_100"):
        create_mobilenetv2("mobilenetv2_050")
    with pytest.raises(ValueError, match="width_mult"):
        MobileNetV2(width_mult=0)


@pytest.mark.parametrize("name", ["mobilenetv2_100", "mobilenetv2_140"])
def test_fuse_parity(name):
    model = randomize_(create_mobilenetv2(name, num_classes=10)).eval()
    x = sample_input(2, 96, 96)
    fused = efficientformer.fuse(model)
    kinds = {type(module) for module in fused.modules()}
    assert not kinds & {nn.BatchNorm2d, nn.Dropout}
    with torch.no_grad():
        reference = model(x)
        assert (fused(x) - reference).abs().max().item() <= 1e-4 * reference.abs().max().item()
