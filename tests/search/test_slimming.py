"""Gradual slimming on the tiny space with synthetic callables: actions, the ΔAcc/ΔMES rule, targets, resume."""

from __future__ import annotations

import csv
import re

import pytest

from efficientformer.bench.mes import MESConstants, mobile_efficiency_score
from efficientformer.factory import create_model
from efficientformer.models.summary import param_count as exact_param_count
from efficientformer.search.lut import ParamCounter
from efficientformer.search.slimming import (
    Action,
    apply_action,
    found_name,
    frontier,
    slim,
    write_found,
    write_trajectory_csv,
)
from efficientformer.search.space import TINY_SPACE, signature

MAX = TINY_SPACE.max_config()
param_count = ParamCounter()  # equal to the exact count (test_lut), and fast


def synthetic_accuracy(config):
    """Deterministic, favours width in stage 3 and attention: a search has something to trade."""
    score = 50.0 + 0.5 * config.stages[2].width + 3.0 * sum(s.num_attn for s in config.stages)
    return score + sum(sum(s.mlp_ratios) for s in config.stages) + 0.1 * config.stages[3].width


def synthetic_latency(config):
    """A made-up additive cost model in ms (depth and width dominated)."""
    cost = 0.0
    for index, stage in enumerate(config.stages):
        cost += (4 - index) * 0.02 * stage.width * sum(stage.mlp_ratios) / 8 + 0.3 * stage.num_attn
    return 0.1 + cost


def test_actions_stay_in_the_space_and_do_what_they_say():
    stage3 = MAX.stages[2]  # depth 3, 2 attention blocks, width 32, ratios (3, 3, 3)
    narrower = apply_action(TINY_SPACE, MAX, Action("width", 2))
    assert narrower.stages[2].width == 24
    lower = apply_action(TINY_SPACE, MAX, Action("ratio", 2, 1))
    assert lower.stages[2].mlp_ratios == (3, 2, 3)
    shallower = apply_action(TINY_SPACE, lower, Action("depth", 2))
    # The last FFN-only block (index depth - num_attn - 1 = 0) goes; the attention blocks keep their ratios.
    assert (shallower.stages[2].depth, shallower.stages[2].num_attn, shallower.stages[2].mlp_ratios) == (2, 2, (2, 3))
    fewer_attn = apply_action(TINY_SPACE, MAX, Action("attn", 2))
    assert (fewer_attn.stages[2].depth, fewer_attn.stages[2].num_attn) == (stage3.depth, 1)
    dropped = apply_action(TINY_SPACE, lower, Action("drop_attn", 2))
    assert (dropped.stages[2].depth, dropped.stages[2].num_attn, dropped.stages[2].mlp_ratios) == (2, 1, (3, 3))
    smallest = TINY_SPACE.min_config()
    assert frontier(TINY_SPACE, smallest) == []
    for action, candidate in frontier(TINY_SPACE, MAX):
        assert TINY_SPACE.contains(candidate), (action, TINY_SPACE.violations(candidate))
        assert param_count(candidate) < param_count(MAX), action


def test_step_mes_and_choice_are_the_hand_computed_ones():
    constants = MESConstants(params_unit=1e5, latency_unit_ms=1.0)
    result = slim(TINY_SPACE, synthetic_accuracy, synthetic_latency, param_count, mes=constants, max_steps=1,
                  target_latency_ms=0.0, progress=False)
    start, first = result.steps
    assert start.mes == pytest.approx(100 * (param_count(MAX) / 1e5) ** -0.5 / synthetic_latency(MAX))
    best = None
    for action, candidate in frontier(TINY_SPACE, MAX):
        gain = mobile_efficiency_score(param_count(candidate), synthetic_latency(candidate), constants) - start.mes
        drop = synthetic_accuracy(MAX) - synthetic_accuracy(candidate)
        if gain > 0 and (best is None or (drop / gain, -gain) < best[0]):
            best = ((drop / gain, -gain), str(action))
    assert first.action == best[1]
    assert first.score == pytest.approx(best[0][0]) and first.delta_mes == pytest.approx(-best[0][1])
    assert result.stop_reason.startswith("max_steps")


def test_search_meets_targets_with_rising_mes(tmp_path):
    target_latency = synthetic_latency(MAX) / 2
    target_params = param_count(MAX) / 2
    result = slim(TINY_SPACE, synthetic_accuracy, synthetic_latency, param_count, target_latency_ms=target_latency,
                  target_params=target_params, progress=False)
    assert result.targets_met and result.stop_reason == "targets met"
    found = result.found
    assert found.latency_ms <= target_latency and found.params <= target_params
    assert len(result.steps) > 2
    assert all(b.mes > a.mes for a, b in zip(result.steps, result.steps[1:]))
    assert all(TINY_SPACE.contains(s.config) for s in result.steps)
    # The step before the last still missed a target: the search stops at the first point meeting both.
    before = result.steps[-2]
    assert before.latency_ms > target_latency or before.params > target_params

    path = write_found(TINY_SPACE.name, found, tmp_path)
    assert re.fullmatch(r"[A-Za-z0-9._@-]+\.json", path.name) and "@" in path.name and "mes@" in path.name
    assert path.stem == found_name(TINY_SPACE.name, found)
    model = create_model(str(path))
    assert model.config.stages == found.config.stages and exact_param_count(model) == found.params
    rows = list(csv.DictReader(write_trajectory_csv(result.steps, tmp_path / "trajectory.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(len(result.steps)))
    assert rows[-1]["signature"] == signature(found.config) and rows[0]["action"] == "start"


def test_no_mes_gain_means_stop():
    result = slim(TINY_SPACE, synthetic_accuracy, lambda c: 1.0, lambda c: 1e6, target_latency_ms=0.5,
                  progress=False)
    assert not result.targets_met and result.stop_reason == "no action raises the MES before the targets"
    assert len(result.steps) == 1


def test_search_resumes_after_a_kill_without_redoing_steps(tmp_path):
    state = tmp_path / "state.json"
    targets = {"target_latency_ms": synthetic_latency(MAX) / 3, "target_params": param_count(MAX) / 3}
    reference = slim(TINY_SPACE, synthetic_accuracy, synthetic_latency, param_count, progress=False, **targets)

    class Killed(Exception):
        pass

    def kill_after_two(step):
        if step.step == 2:
            raise Killed

    seen = []

    def counting(config):
        seen.append(signature(config))
        return synthetic_accuracy(config)

    with pytest.raises(Killed):
        slim(TINY_SPACE, counting, synthetic_latency, param_count, state_path=state, on_step=kill_after_two,
             progress=False, **targets)
    first_run = list(seen)
    seen.clear()
    resumed = slim(TINY_SPACE, counting, synthetic_latency, param_count, state_path=state, progress=False, **targets)
    assert [s.to_dict() for s in resumed.steps] == [s.to_dict() for s in reference.steps]
    assert not set(seen) & set(first_run), "a subnet evaluated before the kill was evaluated again"
    assert resumed.evaluations == len(seen) > 0
    # Finished: a third call evaluates nothing.
    seen.clear()
    again = slim(TINY_SPACE, counting, synthetic_latency, param_count, state_path=state, progress=False, **targets)
    assert seen == [] and len(again.steps) == len(reference.steps)
    with pytest.raises(ValueError, match="targets"):
        slim(TINY_SPACE, counting, synthetic_latency, param_count, state_path=state, progress=False,
             target_latency_ms=1.0)
