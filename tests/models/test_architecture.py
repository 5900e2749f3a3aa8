"""Published architecture: exact parameter counts, shapes, resolutions, class counts, features."""

from __future__ import annotations

import pytest
import torch

import efficientformer
from efficientformer.models import EfficientFormerV2, get_config
from support import sample_input

# SPEC 1.10: both heads / single head / num_classes=0 (keeps the final BN).
PARAMS = {
    "efficientformerv2_s0": (3_600_256, 3_423_256, 3_246_256),
    "efficientformerv2_s1": (6_185_560, 5_960_560, 5_735_560),
    "efficientformerv2_s2": (12_710_112, 12_421_112, 12_132_112),
    "efficientformerv2_l": (26_322_288, 25_937_288, 25_552_288),
}
# SPEC 2.2: timm state-dict key counts (incl. BN num_batches_tracked, no index buffers).
TIMM_KEYS = {"efficientformerv2_s0": 568, "efficientformerv2_s1": 722,
             "efficientformerv2_s2": 1054, "efficientformerv2_l": 1386}
# SPEC 1.10 breakdown for S0: stem, stage 1, stage 2 incl. its downsample, ...
S0_PARTS = {"stem": 5_184, "stages.0": 20_480, "stages.1": 13_968 + 43_008, "stages.2": 41_760 + 949_072,
            "stages.3": 327_936 + 1_844_496}


def count(model: torch.nn.Module, prefix: str = "") -> int:
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix))


def meta_model(name: str, **overrides) -> EfficientFormerV2:
    with torch.device("meta"):
        return efficientformer.create_model(name, **overrides)


def test_list_models():
    assert efficientformer.list_models() == list(PARAMS)


@pytest.mark.parametrize("name", PARAMS)
def test_parameter_counts_exact(name):
    both, single, features = PARAMS[name]
    assert count(meta_model(name)) == both
    assert count(meta_model(name, distillation=False)) == single
    assert count(meta_model(name, num_classes=0)) == features
    assert len(meta_model(name).state_dict()) == TIMM_KEYS[name]


def test_s0_parameter_breakdown():
    model = meta_model("efficientformerv2_s0")
    for prefix, expected in S0_PARTS.items():
        assert count(model, prefix + ".") == expected, prefix
    attention = sum(p.numel() for n, p in model.named_parameters()
                    if n.startswith("stages.2.") and (".token_mixer." in n or ".ls1." in n))
    assert attention == 529_456


@pytest.mark.parametrize("size", [224, 256, 384, (224, 256)])
def test_forward_shapes_at_resolutions(size):
    model = efficientformer.create_model("efficientformerv2_s0", img_size=size).eval()
    height, width = (size, size) if isinstance(size, int) else size
    with torch.no_grad():
        assert model(sample_input(1, height, width)).shape == (1, 1000)


@pytest.mark.parametrize("num_classes", [0, 10, 1000])
def test_forward_class_counts(num_classes):
    model = efficientformer.create_model("efficientformerv2_s0", num_classes=num_classes).eval()
    with torch.no_grad():
        out = model(sample_input(2, 224, 224))
    assert out.shape == (2, num_classes if num_classes else 176)


@pytest.mark.parametrize("bad", [240, 16, 200])
def test_bad_img_size_names_the_rule(bad):
    with pytest.raises(ValueError, match=r"mod 32 must be 0 or in \[17, 31\]"):
        efficientformer.create_model("efficientformerv2_s0", img_size=bad)


@pytest.mark.parametrize("good", [216, 210, 17 + 32 * 6])
def test_sizes_allowed_by_the_rule(good):
    model = efficientformer.create_model("efficientformerv2_test", img_size=good).eval()
    with torch.no_grad():
        assert model(sample_input(1, good, good)).shape == (1, 10)


def test_other_input_sizes_run_and_impossible_ones_name_the_rule(tiny_model):
    with torch.no_grad():
        assert tiny_model(sample_input(1, 96, 128)).shape == (1, 10)
    with pytest.raises(ValueError, match=r"input height 80 is not supported.*mod 32 must be 0 or in \[17, 31\]"):
        tiny_model(sample_input(1, 80, 64))


def test_features_only(tiny_config):
    model = efficientformer.create_model("efficientformerv2_s0", features_only=True).eval()
    with torch.no_grad():
        features = model(sample_input(1, 224, 224))
    assert [tuple(f.shape) for f in features] == [(1, 32, 56, 56), (1, 48, 28, 28), (1, 96, 14, 14), (1, 176, 7, 7)]
    assert [(i["num_chs"], i["reduction"]) for i in model.feature_info] == [(32, 4), (48, 8), (96, 16), (176, 32)]
    assert not any(n.startswith(("head", "norm")) for n in model.state_dict())


def test_features_match_classifier_trunk(tiny_model, tiny_config):
    backbone = efficientformer.create_model(tiny_config, features_only=True).eval()
    backbone.load_state_dict({k: v for k, v in tiny_model.state_dict().items()
                              if not k.startswith(("head", "norm"))})
    x = sample_input(2, 64, 64)
    with torch.no_grad():
        assert torch.equal(backbone(x)[-1], tiny_model.forward_features(x))


def test_distillation_heads(tiny_model):
    x = sample_input(2, 64, 64)
    with torch.no_grad():
        cls, dist = tiny_model.forward_head(tiny_model.forward_features(x), return_both=True)
        assert torch.allclose(tiny_model(x), (cls + dist) / 2)
    tiny_model.train().set_distilled_training(True)
    out = tiny_model(x)
    assert isinstance(out, tuple) and len(out) == 2


def test_drop_path_is_linear_over_blocks():
    model = meta_model("efficientformerv2_l")
    rates = [getattr(b.drop_path2, "drop_prob", 0.0) for s in model.stages for b in s.blocks]
    total = len(rates)
    assert rates == pytest.approx([0.1 * i / (total - 1) for i in range(total)])


def test_config_json_round_trip(tmp_path):
    config = get_config("s1").replace(num_classes=7, img_size=(256, 288))
    path = tmp_path / "arch.json"
    path.write_text(config.to_json())
    assert efficientformer.ModelConfig.from_json(path) == config
    assert efficientformer.create_model(str(path)).config == config


@pytest.mark.parametrize("field,value,match", [
    ("mlp_ratios", (4,), "mlp_ratios has 1 entries but depth is 2"),
    ("num_attn", 3, "num_attn must be in"),
    ("width", 0, "width must be a positive integer"),
])
def test_stage_config_validation(field, value, match):
    stage = {"depth": 2, "width": 32, "mlp_ratios": (4, 4), field: value}
    with pytest.raises(ValueError, match=match):
        efficientformer.StageConfig(**stage)


def test_attention_outside_stages_3_4_is_rejected():
    stages = list(get_config("s0").stages)
    stages[1] = efficientformer.StageConfig(depth=2, width=48, mlp_ratios=(4, 4), num_attn=1)
    with pytest.raises(ValueError, match=r"stages\[1\].num_attn must be 0"):
        get_config("s0").replace(stages=tuple(stages))


def test_unknown_model_lists_known_names():
    with pytest.raises(KeyError, match="efficientformerv2_s0"):
        efficientformer.create_model("efficientformerv3")
