"""The model surface timm users expect: classifier access, grad checkpointing, layer grouping, torch.hub."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

import efficientformer
from efficientformer.models import efficientformer_v2
from efficientformer.train.optim import layer_ids
from support import sample_input

REPO = Path(__file__).resolve().parents[2]


def test_get_and_reset_classifier(tiny_model):
    head, head_dist = tiny_model.get_classifier()
    assert head is tiny_model.head and head_dist is tiny_model.head_dist and head.out_features == 10
    tiny_model.reset_classifier(3)
    assert tiny_model.get_classifier()[0].out_features == 3
    with torch.no_grad():
        assert tiny_model(sample_input(2, 64, 64)).shape == (2, 3)
    tiny_model.reset_classifier(0, "avg")
    with torch.no_grad():
        assert tiny_model(sample_input(2, 64, 64)).shape == (2, tiny_model.num_features)
    with pytest.raises(ValueError, match="global_pool must be None or 'avg'.*'max'"):
        tiny_model.reset_classifier(5, "max")
    single = efficientformer.create_model("efficientformerv2_test", distillation=False)
    assert isinstance(single.get_classifier(), nn.Linear)


def test_no_weight_decay_names_every_bias_table(tiny_model):
    tables = {n for n, _ in tiny_model.named_parameters() if "attention_biases" in n}
    assert tiny_model.no_weight_decay() == tables and len(tables) == 3


def test_grad_checkpointing_same_gradients_fewer_stored_blocks(tiny_model, monkeypatch):
    tiny_model.train()
    reference = copy.deepcopy(tiny_model)
    calls = []
    real = efficientformer_v2.checkpoint
    monkeypatch.setattr(efficientformer_v2, "checkpoint", lambda fn, *a, **k: calls.append(fn) or real(fn, *a, **k))
    tiny_model.set_grad_checkpointing()
    x = sample_input(4, 64, 64)
    torch.manual_seed(3)
    tiny_model(x).sum().backward()
    torch.manual_seed(3)
    reference(x).sum().backward()
    assert len(calls) == sum(len(stage.blocks) for stage in tiny_model.stages)
    for (name, param), ref in zip(tiny_model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(param.grad, ref.grad, rtol=1e-5, atol=1e-6, msg=name)
    with torch.no_grad():  # no recomputation needed without gradients
        tiny_model(x)
    assert len(calls) == sum(len(stage.blocks) for stage in tiny_model.stages)
    tiny_model.set_grad_checkpointing(False)
    tiny_model(x).sum().backward()
    assert len(calls) == sum(len(stage.blocks) for stage in tiny_model.stages)


def test_group_matcher_coarse_is_timms():
    model = efficientformer.create_model("efficientformerv2_test")
    assert model.group_matcher(coarse=True) == {"stem": r"^stem",
                                                "blocks": [(r"^stages\.(\d+)", None), (r"^norm", (99999,))]}


def test_fine_layer_order_runs_from_stem_to_heads():
    with torch.device("meta"):
        model = efficientformer.create_model("efficientformerv2_s0")
    ids = layer_ids(model)
    # S0 depths (2, 2, 6, 4): stem, 2 blocks, (downsample + blocks) x 3 stages, norm, heads.
    assert len(set(ids.values())) == 1 + 2 + (1 + 2) + (1 + 6) + (1 + 4) + 1 + 1
    assert ids["stem.conv1.conv.weight"] == 0 and ids["stages.0.blocks.0.mlp.fc1.conv.weight"] == 1
    order = ["stages.1.downsample.conv.conv.weight", "stages.1.blocks.0.mlp.fc1.conv.weight",
             "stages.1.blocks.1.mlp.fc1.conv.weight", "stages.2.downsample.conv.conv.weight",
             "stages.2.blocks.5.token_mixer.attention_biases", "stages.3.downsample.attn.attention_biases",
             "stages.3.blocks.3.mlp.fc2.conv.weight", "norm.weight", "head.weight"]
    assert [ids[name] for name in order] == sorted(ids[name] for name in order)
    assert len({ids[name] for name in order}) == len(order)
    assert ids["head.weight"] == ids["head_dist.bias"] == max(ids.values())
    assert ids["stages.2.blocks.5.token_mixer.q.conv.weight"] == ids["stages.2.blocks.5.mlp.fc2.bn.bias"]


def test_torch_hub_loads_from_a_checkout_without_network():
    model = torch.hub.load(str(REPO), "s0", source="local", num_classes=7)
    assert isinstance(model, efficientformer.EfficientFormerV2)
    assert model.config.name == "efficientformerv2_s0" and model.num_classes == 7
    backbone = torch.hub.load(str(REPO), "efficientformerv2_s1", source="local", features_only=True)
    assert backbone.config.name == "efficientformerv2_s1" and backbone.features_only
    with pytest.raises(RuntimeError, match="Cannot find callable s9"):
        torch.hub.load(str(REPO), "s9", source="local")


def test_feature_info_has_timms_accessors_and_pretrained_cfg_its_keys(tiny_config, tmp_path):
    backbone = efficientformer.create_model(tiny_config, features_only=True, out_indices=(1, 3))
    assert backbone.feature_info.channels() == [tiny_config.widths[1], tiny_config.widths[3]]
    assert backbone.feature_info.reduction() == [8, 32]
    assert backbone.feature_info.module_name() == ["stages.1", "stages.3"]
    assert backbone.feature_info[0] == {"num_chs": tiny_config.widths[1], "reduction": 8, "module": "stages.1"}
    model = efficientformer.create_model(tiny_config)
    cfg = model.pretrained_cfg
    assert {k: cfg[k] for k in ("input_size", "crop_pct", "interpolation", "num_classes", "classifier")} == {
        "input_size": (3, 64, 64), "crop_pct": 0.875, "interpolation": "bicubic", "num_classes": 10,
        "classifier": ("head", "head_dist")}
    reloaded = efficientformer.load_model(efficientformer.save_checkpoint(model, tmp_path / "m.safetensors"))
    assert reloaded.pretrained_cfg == cfg
    assert backbone.pretrained_cfg["classifier"] is None and backbone.pretrained_cfg["num_classes"] == 0
