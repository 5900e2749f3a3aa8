"""Recipes carry SPEC 4's values; optimiser groups, schedule, AGC and the distillation loss behave as specified."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import efficientformer
from efficientformer.data.mixup import smoothed_targets as smooth_one_hot
from efficientformer.train.losses import DistillationLoss, SoftTargetCrossEntropy
from efficientformer.train.optim import CosineSchedule, adaptive_clip_grad_, create_optimizer, param_groups
from efficientformer.train.recipes import RECIPES, TrainRecipe, get_recipe


def test_paper_recipes_hold_spec_values():
    for name, epochs in (("paper-300ep", 300), ("paper-450ep", 450)):
        r = get_recipe(name)
        assert r.epochs == epochs
        assert (r.lr_base, r.lr_base_batch, r.min_lr, r.warmup_epochs, r.warmup_lr) == (1e-3, 1024, 1e-5, 5, 1e-5)
        assert (r.weight_decay, r.opt_eps, r.clip_mode, r.clip_grad) == (0.025, 1e-8, "agc", 0.01)
        assert r.rand_augment == "rand-m9-mstd0.5-inc1" and (r.reprob, r.remode, r.recount) == (0.25, "pixel", 1)
        assert (r.mixup, r.cutmix, r.mixup_prob, r.mixup_switch_prob, r.smoothing) == (0.8, 1.0, 1.0, 0.5, 0.1)
        assert (r.repeated_aug, r.distillation, r.distillation_alpha, r.distillation_tau) == (3, "hard", 0.5, 1.0)
        assert (r.ema, r.ema_decay, r.amp, r.crop_pct, r.lr_per_step) == (True, 0.99996, "none", 0.875, False)
        assert r.lr(4096) == pytest.approx(4e-3)


def test_recipes_round_trip_and_overrides():
    for recipe in RECIPES.values():
        assert TrainRecipe.from_json(recipe.to_json()) == recipe
    changed = get_recipe("finetune").replace(epochs=3, batch_size=8)
    assert (changed.epochs, changed.batch_size, changed.name) == (3, 8, "finetune")
    with pytest.raises(ValueError, match="unknown TrainRecipe field.*epoch_count"):
        get_recipe("default").replace(epoch_count=3)
    with pytest.raises(ValueError, match="TrainRecipe.clip_mode must be one of"):
        get_recipe("default").replace(clip_mode="sometimes")
    with pytest.raises(ValueError, match="TrainRecipe.warmup_epochs"):
        get_recipe("paper-300ep").replace(epochs=3)
    with pytest.raises(KeyError, match="available: paper-300ep"):
        get_recipe("paper-900ep")


def test_param_groups_exempt_norms_biases_scales_and_bias_tables(tiny_model):
    decay, no_decay = param_groups(tiny_model, 0.025)
    names = {id(p): n for n, p in tiny_model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    exempt = {names[id(p)] for p in no_decay["params"]}
    assert decayed.isdisjoint(exempt) and len(decayed) + len(exempt) == len(names)
    assert all(n.endswith(("weight",)) for n in decayed)
    assert all(tiny_model.get_parameter(n).ndim >= 2 for n in decayed)
    assert any(n.endswith("attention_biases") for n in exempt) and any(n.endswith("ls2.gamma") for n in exempt)
    assert any(n.endswith("talking_head1.weight") for n in decayed)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.025, 0.0)
    tiny_model.stem.conv1.conv.weight.requires_grad_(False)
    assert sum(len(g["params"]) for g in param_groups(tiny_model, 0.1)) == len(names) - 1


def test_cosine_schedule_matches_the_formula():
    schedule = CosineSchedule(lr=4e-3, epochs=300, warmup_epochs=5, warmup_lr=1e-5, min_lr=1e-5)
    assert schedule.lr_at(0) == pytest.approx(1e-5)
    assert schedule.lr_at(2) == pytest.approx(1e-5 + (4e-3 - 1e-5) * 2 / 5)
    assert schedule.lr_at(150) == pytest.approx(1e-5 + 0.5 * (4e-3 - 1e-5) * (1 + math.cos(math.pi / 2)))
    assert schedule.lr_at(300) == pytest.approx(1e-5)
    assert schedule.lr_at(7, step=50, steps_per_epoch=100) == schedule.lr_at(7)  # per epoch by default
    per_step = CosineSchedule(lr=1.0, epochs=10, warmup_epochs=0, min_lr=0.0, per_step=True)
    assert per_step.lr_at(5, step=0, steps_per_epoch=4) > per_step.lr_at(5, step=2, steps_per_epoch=4)
    model = torch.nn.Linear(2, 2)
    optimizer = create_optimizer(model, lr=1.0, weight_decay=0.1)
    assert schedule.apply(optimizer, 150) == pytest.approx(schedule.lr_at(150))
    assert all(g["lr"] == schedule.lr_at(150) for g in optimizer.param_groups)


def test_agc_clips_only_units_over_the_bound():
    weight = torch.nn.Parameter(torch.tensor([[3.0, 4.0], [0.6, 0.8]]))  # unit norms 5 and 1
    weight.grad = torch.tensor([[0.03, 0.04], [3.0, 4.0]])  # grad norms 0.05 (bound 0.05) and 5 (bound 0.01)
    adaptive_clip_grad_([weight], clip_factor=0.01)
    assert torch.allclose(weight.grad[0], torch.tensor([0.03, 0.04]))
    assert weight.grad[1].norm().item() == pytest.approx(0.01, rel=1e-5)
    assert torch.allclose(weight.grad[1] / weight.grad[1].norm(), torch.tensor([0.6, 0.8]))


def test_soft_target_cross_entropy_and_smoothing():
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 1, 4])
    assert torch.allclose(SoftTargetCrossEntropy()(logits, labels), F.cross_entropy(logits, labels))
    assert torch.allclose(SoftTargetCrossEntropy(0.1)(logits, labels),
                          F.cross_entropy(logits, labels, label_smoothing=0.1))
    targets = smooth_one_hot(labels, 5, 0.1)
    assert torch.allclose(targets.sum(1), torch.ones(4)) and targets[1, 3].item() == pytest.approx(0.92)


def test_hard_distillation_learns_the_teacher_argmax():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, generator=generator)
    teacher = torch.nn.Linear(3, 4)
    class_logits, dist_logits = torch.randn(6, 4, generator=generator), torch.randn(6, 4, generator=generator)
    labels = torch.randint(0, 4, (6,), generator=generator)
    loss = DistillationLoss(SoftTargetCrossEntropy(), teacher, mode="hard", alpha=0.5)
    expected = 0.5 * F.cross_entropy(class_logits, labels) + 0.5 * F.cross_entropy(dist_logits, teacher(x).argmax(1))
    assert torch.allclose(loss(x, (class_logits, dist_logits), labels), expected)
    soft = DistillationLoss(SoftTargetCrossEntropy(), teacher, mode="soft", alpha=1.0, tau=2.0)
    same = DistillationLoss(SoftTargetCrossEntropy(), lambda inputs: dist_logits, mode="soft", alpha=1.0)
    assert soft(x, (class_logits, dist_logits), labels).item() > 0
    assert same(x, (class_logits, dist_logits), labels).abs().item() < 1e-6  # KL to itself


def test_distillation_contract_errors(tiny_model):
    loss = DistillationLoss(SoftTargetCrossEntropy(), tiny_model, mode="hard")
    x = torch.randn(2, 3, 64, 64)
    with pytest.raises(TypeError, match="set_distilled_training"):
        loss(x, torch.randn(2, 10), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="needs a teacher"):
        DistillationLoss(SoftTargetCrossEntropy(), None, mode="soft")
    wrong_teacher = DistillationLoss(SoftTargetCrossEntropy(), lambda inputs: torch.zeros(2, 7), mode="hard")
    with pytest.raises(ValueError, match="teacher logits"):
        wrong_teacher(x, (torch.randn(2, 10), torch.randn(2, 10)), torch.tensor([0, 1]))


def test_one_distilled_training_step_moves_both_heads(tiny_config):
    student = efficientformer.create_model(tiny_config).train()
    student.set_distilled_training(True)
    teacher = efficientformer.create_model(tiny_config).eval()
    criterion = DistillationLoss(SoftTargetCrossEntropy(0.1), teacher, mode="hard")
    optimizer = create_optimizer(student, lr=1e-2, weight_decay=0.025)
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    heads = student.head.weight.clone(), student.head_dist.weight.clone()
    loss = criterion(x, student(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert not torch.equal(heads[0], student.head.weight) and not torch.equal(heads[1], student.head_dist.weight)
    assert all(p.grad is None for p in teacher.parameters())
