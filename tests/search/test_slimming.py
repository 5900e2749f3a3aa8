"""Gradual slimming on the tiny space with synthetic callables: actions, the ΔAcc/ΔMES rule, targets, resume."""

from __future__ import annotations

import csv
import re

import pytest

from efficientformer.factory import create_model
from efficientformer.models.summary import param_count as exact_param_count
from efficientformer.search.actions import Action, apply_action, frontier
from efficientformer.search.lut import ParamCounter
from efficientformer.search.outputs import found_name, write_found, write_trajectory_csv
from efficientformer.search.slimming import Measured, Step, choose_move, slim
from efficientformer.search.space import TINY_SPACE, SearchSpace, StageSpace, signature

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


# Four moves from the largest subnet of a small space, each with a made-up latency factor and accuracy
# cost: A = ratio[3,0] (x0.8, -1 point), B = width[3] (x0.4, -9), C = width[2] (x0.5, -3) and
# D = width[1] (x1.1, -1: slower and less accurate, so its ΔAcc/ΔMES is negative and only the rule
# "ΔMES > 0" keeps it from winning). Parameters are constant at the MES unit, so
# MES = 100 / latency; the largest subnet has 10 ms (MES 10) and 80%.
CHOICE_SPACE = SearchSpace(name="choice", base=TINY_SPACE.base, stages=(
    StageSpace(widths=(8,), ratios=(2,), min_depth=1, max_depth=1),
    StageSpace(widths=(8, 16), ratios=(2,), min_depth=1, max_depth=1),
    StageSpace(widths=(16, 24), ratios=(2,), min_depth=1, max_depth=1),
    StageSpace(widths=(24, 32), ratios=(2, 3), min_depth=1, max_depth=1)))


def _moves(config):
    """Which of the moves A, B, C, D `config` has taken (1 or 0 each)."""
    stages = config.stages
    return (int(stages[3].mlp_ratios[0] == 2), int(stages[3].width == 24), int(stages[2].width == 16),
            int(stages[1].width == 8))


def choice_latency(config):
    a, b, c, d = _moves(config)
    return 10.0 * 0.8 ** a * 0.4 ** b * 0.5 ** c * 1.1 ** d


def choice_accuracy(config):
    a, b, c, d = _moves(config)
    return 80.0 - a - 9.0 * b - 3.0 * c - d


def test_each_step_takes_the_smallest_accuracy_drop_per_mes_gain():
    result = slim(CHOICE_SPACE, choice_accuracy, choice_latency, lambda config: 3e6, target_latency_ms=0.1,
                  progress=False)
    start, *steps = result.steps
    assert (start.mes, start.accuracy, start.latency_ms) == (pytest.approx(10.0), 80.0, pytest.approx(10.0))
    # Step 1 from 10 ms: A 8 ms (gain 2.5, drop 1: 0.4), B 4 ms (gain 15, drop 9: 0.6), C 5 ms (gain 10,
    # drop 3: 0.3), D 11 ms (MES falls: never taken, although its ratio -1.1 is the lowest). C wins: neither the
    # smallest drop (A) nor the largest gain (B).
    # Step 2 from 5 ms (MES 20): A 4 ms (gain 5, drop 1: 0.2), B 2 ms (gain 30, drop 9: 0.3): A.
    # Step 3 from 4 ms (MES 25): B 1.6 ms (gain 37.5, drop 9: 0.24). Then only D is left, which lowers the MES.
    assert [s.action for s in steps] == ["width[2]", "ratio[3,0]", "width[3]"]
    assert [s.candidates for s in steps] == [4, 3, 2]
    assert [s.delta_mes for s in steps] == [pytest.approx(10.0), pytest.approx(5.0), pytest.approx(37.5)]
    assert [s.delta_acc for s in steps] == [3.0, 1.0, 9.0]
    assert [s.score for s in steps] == [pytest.approx(0.3), pytest.approx(0.2), pytest.approx(0.24)]
    assert [s.mes for s in steps] == [pytest.approx(20.0), pytest.approx(25.0), pytest.approx(62.5)]
    assert not result.targets_met and result.stop_reason == "no action raises the MES before the targets"
    one = slim(CHOICE_SPACE, choice_accuracy, choice_latency, lambda config: 3e6, target_latency_ms=0.1,
               max_steps=1, progress=False)
    assert [s.action for s in one.steps] == ["start", "width[2]"] and one.stop_reason.startswith("max_steps")


def test_a_move_that_keeps_accuracy_wins_and_ties_go_to_the_larger_gain():
    # A and C both keep the accuracy (score 0); C gains more MES (10 against 2.5), so C comes first.
    def accuracy(config):
        a, b, c, d = _moves(config)
        return 80.0 - 9.0 * b - d

    result = slim(CHOICE_SPACE, accuracy, choice_latency, lambda config: 3e6, target_latency_ms=0.1,
                  max_steps=2, progress=False)
    assert [s.action for s in result.steps[1:]] == ["width[2]", "ratio[3,0]"]
    assert [s.score for s in result.steps[1:]] == [0.0, 0.0]


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


def _candidate(kind, stage, mes, accuracy):
    return Action(kind, stage), MAX.replace(name=f"{kind}{stage}"), Measured(1000, 1.0, mes, accuracy)


def test_choose_move_is_the_rule_on_measured_candidates():
    current = Step(4, "width[0]", MAX, 1000, 1.0, mes=10.0, accuracy=80.0)
    lowers_mes = _candidate("depth", 0, mes=9.0, accuracy=81.0)  # the best ratio, but the MES falls
    same_mes = _candidate("attn", 0, mes=10.0, accuracy=80.0)  # no gain: never taken either
    assert choose_move(current, [lowers_mes, same_mes]) is None and choose_move(current, []) is None
    small = _candidate("width", 1, mes=12.0, accuracy=79.0)  # ratio 1 / 2 = 0.5
    large = _candidate("width", 2, mes=14.0, accuracy=78.0)  # ratio 2 / 4 = 0.5 as well, larger gain: wins
    twin = _candidate("width", 3, mes=14.0, accuracy=78.0)  # the same as `large`, later: loses the tie
    lossy = _candidate("width", 0, mes=30.0, accuracy=60.0)  # ratio 1
    best = choose_move(current, [lowers_mes, small, twin, large, lossy, same_mes])
    assert best.action == "width[3]"  # `twin` comes before `large` in this order
    best = choose_move(current, [lowers_mes, small, large, twin, lossy, same_mes])
    assert (best.step, best.action, best.config.name, best.candidates) == (5, "width[2]", "width2", 6)
    assert (best.delta_mes, best.delta_acc, best.score, best.mes, best.accuracy) == (4.0, 2.0, 0.5, 14.0, 78.0)
    gains = _candidate("attn", 1, mes=11.0, accuracy=80.5)  # raises accuracy: a score < 0 beats every loss
    assert choose_move(current, [lossy, small, gains]).action == "attn[1]"


def test_the_evaluator_measures_each_subnet_once(tmp_path):
    calls = []

    def accuracy(config):
        calls.append(signature(config))
        return 70.0

    state_path = tmp_path / "state.json"
    result = slim(TINY_SPACE, accuracy, synthetic_latency, param_count, target_latency_ms=0.0, max_steps=3,
                  state_path=state_path, progress=False)
    assert len(calls) == len(set(calls)) == result.evaluations  # a subnet seen again is not re-evaluated
    again = slim(TINY_SPACE, accuracy, synthetic_latency, param_count, target_latency_ms=0.0, max_steps=3,
                 state_path=state_path, progress=False)
    assert again.evaluations == 0 and len(calls) == result.evaluations  # everything came from the state


def test_lazy_steps_follow_the_full_search_with_fewer_evaluations(tmp_path):
    """synthetic_accuracy is additive, so an action's last measured drop is its drop now: evaluating only the
    never-seen actions and the best two by estimate must walk the full search's trajectory, with fewer
    evaluations; killed and resumed, the lazy search rebuilds its estimates and takes the same steps."""
    targets = {"target_latency_ms": synthetic_latency(MAX) / 3, "target_params": param_count(MAX) / 3}
    full = slim(TINY_SPACE, synthetic_accuracy, synthetic_latency, param_count, progress=False, **targets)
    lazy = slim(TINY_SPACE, synthetic_accuracy, synthetic_latency, param_count, progress=False, lazy=2, **targets)
    assert [s.config for s in lazy.steps] == [s.config for s in full.steps] and lazy.targets_met
    assert lazy.evaluations < full.evaluations
    assert all(s.candidates < f.candidates for s, f in zip(lazy.steps[2:], full.steps[2:]))

    class Killed(Exception):
        pass

    def kill(step):
        if step.step == 3:
            raise Killed

    seen = []

    def counting(config):
        seen.append(signature(config))
        return synthetic_accuracy(config)

    state = tmp_path / "state.json"
    with pytest.raises(Killed):
        slim(TINY_SPACE, counting, synthetic_latency, param_count, state_path=state, on_step=kill, progress=False,
             lazy=2, **targets)
    before = set(seen)
    seen.clear()
    resumed = slim(TINY_SPACE, counting, synthetic_latency, param_count, state_path=state, progress=False, lazy=2,
                   **targets)
    assert [s.to_dict() for s in resumed.steps] == [s.to_dict() for s in lazy.steps]
    assert not set(seen) & before
    with pytest.raises(ValueError, match="lazy"):  # a state written by a lazy search is not resumed by a full one
        slim(TINY_SPACE, counting, synthetic_latency, param_count, state_path=state, progress=False, **targets)


def test_strided_steps_combine_the_best_actions_far_from_the_targets():
    """Far from the targets a step applies several best-ranked actions and cuts the latency by the stride; within
    1.5x of the targets every step is one action again; the targets are met with fewer steps, MES rising."""
    targets = {"target_latency_ms": synthetic_latency(MAX) / 4, "target_params": param_count(MAX) / 4}
    single = slim(TINY_SPACE, synthetic_accuracy, synthetic_latency, param_count, progress=False, **targets)
    strided = slim(TINY_SPACE, synthetic_accuracy, synthetic_latency, param_count, progress=False, stride=0.2,
                   **targets)
    assert strided.targets_met and len(strided.steps) < len(single.steps)
    assert all(b.mes > a.mes for a, b in zip(strided.steps, strided.steps[1:]))
    far = [(a, b) for a, b in zip(strided.steps, strided.steps[1:]) if a.latency_ms > 1.5 * targets["target_latency_ms"]
           or a.params > 1.5 * targets["target_params"]]
    near = [(a, b) for a, b in zip(strided.steps, strided.steps[1:]) if (a, b) not in far]
    assert far and near and all("+" not in b.action for _, b in near)
    combined = [(a, b) for a, b in far if "+" in b.action]
    assert combined and all(b.latency_ms <= 0.8 * a.latency_ms + 1e-9 or "+" not in b.action for a, b in far)
    # The first action of a combined step is the one the single-action rule would take there.
    assert strided.steps[1].action.split("+")[0] == single.steps[1].action
