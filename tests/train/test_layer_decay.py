"""Layer-wise learning-rate decay: groups from the model's group_matcher, scaled rates, the finetune recipe."""

from __future__ import annotations

import pytest
import torch

from efficientformer.train.optim import CosineSchedule, create_optimizer, layer_ids, param_groups
from efficientformer.train.recipes import TrainRecipe, get_recipe


def test_groups_cover_every_trainable_parameter_once_with_scaled_rates(tiny_model):
    groups = param_groups(tiny_model, 0.05, layer_decay=0.5)
    ids = layer_ids(tiny_model)
    last = max(ids.values())
    names = {id(p): n for n, p in tiny_model.named_parameters()}
    seen = [names[id(p)] for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(names.values())
    for group in groups:
        layers = {ids[names[id(p)]] for p in group["params"]}
        assert len(layers) == 1
        assert group["lr_scale"] == 0.5 ** (last - layers.pop())
        exempt = group["group"].endswith("no_decay")
        assert group["weight_decay"] == (0.0 if exempt else 0.05)
    by_name = {names[id(p)]: g for g in groups for p in g["params"]}
    assert by_name["head.weight"]["lr_scale"] == 1.0
    assert by_name["stem.conv1.conv.weight"]["lr_scale"] == 0.5 ** last
    assert by_name["stem.conv1.bn.weight"]["weight_decay"] == 0.0


def test_without_layer_decay_the_two_groups_are_unchanged(tiny_model):
    decay, no_decay = param_groups(tiny_model, 0.05)
    assert (decay["group"], no_decay["group"]) == ("decay", "no_decay")
    assert "lr_scale" not in decay and "lr_scale" not in no_decay


def test_schedule_applies_each_groups_scale(tiny_model):
    optimizer = create_optimizer(tiny_model, lr=1e-3, weight_decay=0.05, layer_decay=0.8)
    schedule = CosineSchedule(lr=1e-3, epochs=10, warmup_epochs=0)
    lr = schedule.apply(optimizer, 3)
    assert lr == pytest.approx(schedule.lr_at(3))
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(lr * group["lr_scale"])
    assert {g["lr_scale"] for g in optimizer.param_groups} >= {1.0, 0.8}
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    tiny_model.train()
    tiny_model(torch.randn(2, 3, 64, 64)).sum().backward()
    optimizer.step()  # AdamW's first step moves each weight by about its group's lr
    head_step = (tiny_model.head.weight - before["head.weight"]).abs().max()
    stem_step = (tiny_model.stem.conv1.conv.weight - before["stem.conv1.conv.weight"]).abs().max()
    assert stem_step < head_step * 0.8 ** (max(layer_ids(tiny_model).values()) - 1)


def test_finetune_recipe_uses_layer_decay_and_values_are_checked():
    assert get_recipe("finetune").layer_decay == 0.9
    assert get_recipe("paper-300ep").layer_decay is None
    with pytest.raises(ValueError, match=r"layer_decay must be in \(0, 1\] or None, got 1.5"):
        TrainRecipe(layer_decay=1.5)
    assert TrainRecipe.from_json(get_recipe("finetune").to_json()).layer_decay == 0.9


def test_poly_schedule_matches_the_formula():
    from efficientformer.train.optim import PolySchedule

    schedule = PolySchedule(lr=2e-4, epochs=4, power=0.9, warmup_epochs=1, warmup_lr=1e-6)
    assert schedule.lr_at(0, 0, 10) == pytest.approx(1e-6)
    assert schedule.lr_at(0, 5, 10) == pytest.approx(1e-6 + (2e-4 - 1e-6) * 0.5)
    assert schedule.lr_at(2, 0, 10) == pytest.approx(2e-4 * 0.5 ** 0.9)
    assert schedule.lr_at(4, 0, 10) == 0.0
