"""The TrainTask seam: a custom task plugs into the loop and into run_training with a caller-supplied model."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file

from efficientformer import create_model
from efficientformer.models.efficientformer_v2 import EfficientFormerV2
from efficientformer.train.job import TrainJob, run_training
from efficientformer.train.loop import StepContext, train_steps
from efficientformer.train.losses import DistillationLoss, SoftTargetCrossEntropy
from efficientformer.train.optim import CosineSchedule
from efficientformer.train.recipes import get_recipe
from efficientformer.train.task import ClassificationTask, StepInfo, TaskOutput, TrainTask


class HalvesTask:
    """Two forward/backward passes of loss / 2 each: the same gradients as one pass, the sandwich pattern."""

    def __init__(self, criterion) -> None:
        self.criterion = criterion
        self.calls: list[StepInfo] = []
        self.evaluated: list[int] = []

    def step(self, model, inputs, targets, *, autocast, backward, info):
        self.calls.append(info)
        total = 0.0
        for _ in range(2):
            with autocast():
                logits = model(inputs)
                loss = self.criterion(inputs, logits, targets) / 2
            backward(loss)
            total += loss.item()
        return TaskOutput(total, logits.detach())

    def prepare_eval(self, model) -> None:
        self.evaluated.append(id(model))


def _criterion():
    return DistillationLoss(SoftTargetCrossEntropy(0.1), None, mode="none")


def _gradients_after_one_step(model, task, batch):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the step leaves the weights alone
    ctx = StepContext(model=model, task=task, optimizer=optimizer, schedule=CosineSchedule(0.0, 1, warmup_epochs=0),
                      device=torch.device("cpu"))
    train_steps(ctx, [batch], epoch=0, start_step=0, steps_per_epoch=1)
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_two_half_passes_give_the_default_gradients(tiny_config):
    model = create_model(tiny_config, num_classes=3, img_size=64, drop_path_rate=0.0)  # both passes see one net
    twin = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    batch = (torch.randn(6, 3, 64, 64, generator=generator), torch.tensor([0, 1, 2, 0, 1, 2]))
    halves = HalvesTask(_criterion())
    assert isinstance(halves, TrainTask) and isinstance(ClassificationTask(_criterion()), TrainTask)
    expected = _gradients_after_one_step(model, ClassificationTask(_criterion()), batch)
    actual = _gradients_after_one_step(twin, halves, batch)
    assert halves.calls == [StepInfo(epoch=0, step=0, steps_per_epoch=1)]
    assert expected.keys() == actual.keys() and len(expected) > 10
    assert any(g.abs().sum() > 0 for g in expected.values())
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-8, msg=name)


def test_all_skipped_batch_is_not_stepped(tiny_config):
    model = create_model(tiny_config, num_classes=3, img_size=64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    task = HalvesTask(_criterion())
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    ctx = StepContext(model=model, task=task, optimizer=optimizer, schedule=CosineSchedule(1.0, 1, warmup_epochs=0),
                      device=torch.device("cpu"))
    steps = []
    empty = (torch.empty(0), torch.empty(0, dtype=torch.long), ["a.png", "b.png"])
    result = train_steps(ctx, [empty], 0, 0, 1, on_step=lambda step, loss, lr, images: steps.append((step, images)))
    assert steps == [(0, 0)] and task.calls == [] and result.images == 0 and result.skipped == ["a.png", "b.png"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class Subclassed(EfficientFormerV2):
    """Stands in for a supernet: an EfficientFormerV2 subclass the caller builds."""


def test_run_training_with_a_supplied_model_and_task(tmp_path, tiny_config):
    pytest.importorskip("sklearn", reason="the embedded dataset needs scikit-learn")
    model = Subclassed(tiny_config.replace(num_classes=10, img_size=(64, 64)))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    task = HalvesTask(_criterion())
    job = TrainJob(output=str(tmp_path / "run"), recipe=get_recipe("default").replace(epochs=1, warmup_epochs=0),
                   max_steps=2)
    summary = run_training(job, model=model, task=task)
    assert summary["global_step"] == 2 and [c.step for c in task.calls] == [0, 1]
    saved = load_file(tmp_path / "run" / "last.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())  # the supplied object was trained
    assert not torch.equal(saved["head.weight"], start["head.weight"])


def test_supplied_model_must_fit_the_data(tmp_path, tiny_config):
    pytest.importorskip("sklearn", reason="the embedded dataset needs scikit-learn")
    job = TrainJob(output=str(tmp_path / "run"), recipe=get_recipe("default"), max_steps=1)
    with pytest.raises(ValueError, match="predicts 3 classes but the training data has 10"):
        run_training(job, model=create_model(tiny_config, num_classes=3, img_size=64))
    with pytest.raises(ValueError, match="img_size"):
        run_training(job, model=create_model(tiny_config, num_classes=10, img_size=96))
    distilling = TrainJob(output=str(tmp_path / "run"), recipe=get_recipe("paper-300ep"), max_steps=1)
    with pytest.raises(ValueError, match="owns its loss"):
        run_training(distilling, model=create_model(tiny_config, num_classes=10, img_size=224),
                     task=HalvesTask(_criterion()))
