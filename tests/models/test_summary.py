"""models.summary: params and MACs against SPEC 1.10-1.11."""

from __future__ import annotations

import json

import pytest
import torch

from efficientformer import create_model, fuse
from efficientformer.models import get_config
from efficientformer.models.summary import model_summary, param_count

# SPEC 1.11, closed form: convs, linears and attention matmuls incl. talking heads, no BN/GELU/softmax/adds.
# That is exactly what FlopCounterMode counts, so the measured values agree to SPEC's rounding (0.0005 G),
# much tighter than the 2% allowed against the paper's 0.40/0.65/1.25/2.56.
SPEC_GMACS = {"s0": 0.396, "s1": 0.652, "s2": 1.247, "l": 2.553}
PAPER_GMACS = {"s0": 0.40, "s1": 0.65, "s2": 1.25, "l": 2.56}
# SPEC 1.10: stem, stage 1, stage 2 + down12, stage 3 + down23, stage 4 + down34, head.
SPEC_PARTS = {
    "s0": (5_184, 20_480, 43_008 + 13_968, 949_072 + 41_760, 1_844_496 + 327_936, 354_352),
    "s1": (5_184, 30_720, 64_512 + 13_968, 1_636_624 + 52_200, 3_470_576 + 461_328, 450_448),
    "s2": (5_184, 40_960, 147_456 + 18_624, 3_392_960 + 83_376, 7_798_496 + 644_480, 578_576),
    "l": (7_920, 76_800, 281_600 + 29_040, 7_143_888 + 138_816, 16_851_600 + 1_021_856, 770_768),
}
PARTS = ("stem", "stages.0", "stages.1", "stages.2", "stages.3", "head")


@pytest.mark.parametrize("variant", list(SPEC_GMACS))
def test_published_variants_match_spec(variant):
    summary = model_summary(get_config(variant))
    assert summary.gmacs == pytest.approx(SPEC_GMACS[variant], abs=5e-4)
    assert summary.gmacs == pytest.approx(PAPER_GMACS[variant], rel=0.02)
    assert tuple(summary.params_by_part[p] for p in PARTS) == SPEC_PARTS[variant]
    assert summary.params == sum(SPEC_PARTS[variant])
    assert sum(summary.params_by_part.values()) == summary.params
    assert sum(summary.macs_by_part.values()) == summary.macs
    assert sum(summary.macs_by_op.values()) == summary.macs
    assert [s.params for s in summary.stages] == list(SPEC_PARTS[variant][1:5])
    assert [s.output_shape[-1] for s in summary.stages] == [56, 28, 14, 7]
    assert [s.num_attn for s in summary.stages] == [s.num_attn for s in get_config(variant).stages]


# The tiny variant by hand (64 px, conv biases + BN weight and bias per ConvNorm, 10 classes, two heads):
# stem 3x3/2 3->4 (108 + 4 + 8) and 4->8 (288 + 8 + 16) on 32x32 and 16x16 outputs; stage 1 one FFN
# block width 8, hidden 16 at 16x16: fc1 128 + 16 + 32, depthwise 3x3 144 + 16 + 32, fc2 128 + 8 + 16 and
# its layer scale 8; head BN(32) 64 and two Linear(32, 10).
TINY_PARAMS = {"stem": 120 + 312, "stages.0": 176 + 192 + 152 + 8, "head": 64 + 2 * 330}
TINY_MACS = {"stem": 32 * 32 * 4 * 27 + 16 * 16 * 8 * 36, "stages.0": 16 * 16 * (8 * 16 + 16 * 9 + 16 * 8),
             "head": 2 * 32 * 10}


def test_tiny_variant_counts_by_hand(tiny_config, tiny_model):
    summary = model_summary(tiny_config)
    for part, params in TINY_PARAMS.items():
        assert summary.params_by_part[part] == params, part
        assert summary.macs_by_part[part] == TINY_MACS[part], part
    assert summary.stages[0].output_shape == (1, 8, 16, 16) and summary.stages[3].output_shape == (1, 32, 2, 2)
    assert [(s.width, s.depth, s.num_attn, s.down_attn) for s in summary.stages] == [
        (8, 1, 0, False), (16, 1, 0, False), (24, 2, 1, False), (32, 2, 1, True)]
    assert param_count(tiny_config) == param_count(tiny_model) == summary.params
    # A built model is counted like its config, and is left in eval mode.
    assert model_summary(tiny_model).to_dict() == summary.to_dict()
    assert tiny_model.training is False
    data = summary.to_dict()
    assert json.loads(json.dumps(data)) == data and data["img_size"] == [64, 64]
    assert data["mparams"] == summary.params / 1e6


def test_training_mode_restored_and_fused_head_cheaper(tiny_config):
    model = create_model(tiny_config).train()
    before = model_summary(model)
    assert model.training
    fused = model_summary(fuse(model.eval()))
    # The fused head averages the two linears into one: half the head MACs, same backbone MACs.
    assert fused.macs_by_part["head"] * 2 == before.macs_by_part["head"]
    assert fused.macs_by_part["stages.2"] == before.macs_by_part["stages.2"]


def test_features_only_and_img_size(tiny_config):
    summary = model_summary(create_model(tiny_config, features_only=True))
    assert "head" not in summary.params_by_part and "head" not in summary.macs_by_part
    bigger = model_summary(tiny_config, img_size=128)
    assert bigger.img_size == (128, 128) and bigger.stages[0].output_shape == (1, 8, 32, 32)
    with pytest.raises(ValueError, match="img_size"):
        model_summary(create_model(tiny_config), img_size=128)


def test_no_grad_leak(tiny_model):
    model_summary(tiny_model)
    assert torch.is_grad_enabled()
