"""EMA of the weights: the update by hand, once per optimiser step in a run, its evaluation and its exact resume."""

from __future__ import annotations

import pytest
import torch
from colour_folder import build_colour_folder
from torch import nn

import efficientformer
from efficientformer.train.ema import ModelEma
from efficientformer.train.evaluate import run_eval
from efficientformer.train.job import TrainJob, run_training
from efficientformer.train.recipes import get_recipe
from efficientformer.train.state import latest_state, list_states, load_state


def _tiny_net(weight: tuple[float, float], running_mean: float) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([weight]))
        net[1].running_mean.fill_(running_mean)
    return net


class _Wrapped(nn.Module):
    """What DistributedDataParallel looks like to the EMA: the model under `.module`."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def test_update_by_hand():
    model = _tiny_net((1.0, 2.0), running_mean=0.0)
    ema = ModelEma(model, decay=0.75)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[5.0, 6.0]]))
        model[1].running_mean.fill_(4.0)
        model[1].num_batches_tracked.fill_(5)
    assert ema.module[0].weight.tolist() == [[1.0, 2.0]]  # a copy: the model's changes do not leak in
    ema.update(model)
    # 0.75 * (1, 2) + 0.25 * (5, 6) = (2, 3); float buffers average too, integer ones are copied.
    assert ema.module[0].weight.tolist() == [[2.0, 3.0]]
    assert ema.module[1].running_mean.tolist() == [1.0] and int(ema.module[1].num_batches_tracked) == 5
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[10.0, 7.0]]))
    ema.update(_Wrapped(model))  # a DDP-wrapped model is read through `.module`
    assert ema.module[0].weight.tolist() == [[4.0, 4.0]]  # 0.75 * (2, 3) + 0.25 * (10, 7)
    assert model[0].weight.tolist() == [[10.0, 7.0]]
    assert not any(p.requires_grad for p in ema.module.parameters()) and not ema.module.training
    x = torch.tensor([[1.0, 1.0]])
    assert torch.equal(ema(x), ema.module(x))
    with pytest.raises(ValueError, match="decay"):
        ModelEma(model, decay=1.0)


@pytest.fixture
def colours(tmp_path):
    train = build_colour_folder(tmp_path / "train", with_bad=False).root  # 36 images: 5 steps of 7
    val = build_colour_folder(tmp_path / "val", per_class=4, with_bad=False).root
    return train, val


def _job(colours, output, *, decay: float, epochs: int = 1, lr_base: float = 2e-3, **changes) -> TrainJob:
    train, val = colours
    recipe = get_recipe("default").replace(epochs=epochs, warmup_epochs=0, batch_size=7, ema=True, ema_decay=decay,
                                           lr_base=lr_base)
    return TrainJob(output=str(output), data=str(train), val_data=str(val), model="efficientformerv2_test",
                    recipe=recipe, **changes)


def _floats(state: dict) -> dict:
    return {k: v for k, v in state.items() if v.is_floating_point()}


def test_the_run_averages_after_every_optimiser_step(colours, tmp_path):
    torch.manual_seed(0)
    model = efficientformer.create_model("efficientformerv2_test", num_classes=3, img_size=64)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    run_training(_job(colours, tmp_path / "run", decay=0.5, max_steps=2, checkpoint_every=1, keep_last=5),
                 model=model)
    states = list_states(tmp_path / "run")
    assert [load_state(path)[0].global_step for path in states] == [1, 2]
    previous = start
    for path in states:
        _, payload = load_state(path)
        weights, average = payload["model"], payload["ema"]
        for key, value in _floats(average).items():  # ema_t = 0.5 * ema_(t-1) + 0.5 * weights_t
            assert torch.allclose(value, 0.5 * previous[key] + 0.5 * weights[key], atol=1e-7), key
        assert not torch.equal(average["head.weight"], weights["head.weight"])
        assert int(average["stem.conv1.bn.num_batches_tracked"]) == int(weights["stem.conv1.bn.num_batches_tracked"])
        previous = average


def test_ema_top1_is_the_accuracy_of_the_averaged_weights(colours, tmp_path):
    # A high rate trains the model in five steps; the slow average stays near the initial weights.
    summary = run_training(_job(colours, tmp_path / "run", decay=0.99, lr_base=0.05))
    run = tmp_path / "run"
    _, payload = load_state(latest_state(run))
    averaged = efficientformer.load_model(run / "last.safetensors")
    averaged.load_state_dict(payload["ema"])
    # Next to the run's job.json, so that eval takes the run's class order and crop for it too.
    path = efficientformer.save_checkpoint(averaged, run / "ema.safetensors")
    _, val = colours
    assert run_eval(path, data=str(val), output=tmp_path / "eval-ema")["top1"] == summary["ema_top1"]
    assert run_eval(run / "last.safetensors", data=str(val), output=tmp_path / "eval")["top1"] == summary["top1"]
    assert summary["ema_top1"] != summary["top1"]  # else the first check could not tell the two apart


def test_resume_restores_the_average(colours, tmp_path):
    reference = run_training(_job(colours, tmp_path / "ref", decay=0.9))
    stopped = run_training(_job(colours, tmp_path / "run", decay=0.9, max_steps=3))  # step 3 of 5: mid-epoch
    assert stopped["global_step"] == 3 and "ema_top1" not in stopped
    resumed = run_training(_job(colours, tmp_path / "run", decay=0.9, resume="auto"))
    assert resumed["ema_top1"] == reference["ema_top1"] and resumed["global_step"] == reference["global_step"] == 5
    _, expected = load_state(latest_state(tmp_path / "ref"))
    _, actual = load_state(latest_state(tmp_path / "run"))
    for key, value in expected["ema"].items():
        assert torch.equal(actual["ema"][key], value), key
