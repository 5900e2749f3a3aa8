"""TrainingState: one list of named parts is what a state file holds and what a resume restores."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from efficientformer.train.state import Position, TrainingState, list_states, load_state


def _parts(seed: int) -> tuple[nn.Linear, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()  # the optimiser has moments to save
    return model, optimizer


def test_save_then_load_restores_every_part_the_values_and_the_rng(tmp_path):
    model, optimizer = _parts(0)
    state = TrainingState({"model": model, "optimizer": optimizer, "ema": None}, best={"top1": 12.5, "epoch": 3})
    path = state.save(tmp_path, Position(epoch=1, step=4, global_step=9))
    expected_draws = (torch.rand(3), random.random())

    _, payload = load_state(path)
    assert set(payload) == {"model", "optimizer", "best"}  # a None part is left out of the file
    other_model, other_optimizer = _parts(1)
    restored = TrainingState({"model": other_model, "optimizer": other_optimizer, "ema": None}, best={"top1": -1.0})
    position = restored.load(path)
    assert position == Position(epoch=1, step=4, global_step=9)
    assert restored.values["best"] == {"top1": 12.5, "epoch": 3}
    for key, value in model.state_dict().items():
        assert torch.equal(other_model.state_dict()[key], value), key
    moments = optimizer.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(other_optimizer.state_dict()["state"][0]["exp_avg"], moments)
    draws = (torch.rand(3), random.random())  # the RNG streams continue as after the save
    assert torch.equal(draws[0], expected_draws[0]) and draws[1] == expected_draws[1]
    assert list_states(tmp_path) == [path]


def test_a_part_the_file_lacks_is_named(tmp_path):
    model, optimizer = _parts(0)
    path = TrainingState({"model": model, "optimizer": optimizer}, best={"top1": 1.0}).save(tmp_path, Position())
    ema = nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"no 'ema' entry"):
        TrainingState({"model": model, "optimizer": optimizer, "ema": ema}, best={"top1": -1.0}).load(path)
