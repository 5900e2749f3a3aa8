"""Fine-grained joint search by gradual slimming (paper section 4, docs/search.md).

    result = slim(space, accuracy_of, latency_of, params_of, target_latency_ms=3.0, target_params=3.5e6,
                  state_path="search/state.json")
    result.found                       # a ModelConfig: create_model(result.found) builds it

The search depends only on three callables on a ModelConfig (accuracy in %, latency in ms,
parameters), OFA-style: the supernet, the latency table and the parameter count are plugged in by
the caller (`search.run`), tests plug in synthetic ones.

Actions (all kept inside the space; `frontier` lists the applicable ones):
- `width[s]`: stage s width to the next smaller choice;
- `ratio[s,b]`: block b of stage s to the next smaller FFN ratio;
- `depth[s]`: drop the stage's last FFN-only block (depth - 1);
- `attn[s]`: turn the stage's first attention block into an FFN-only block (num_attn - 1);
- `drop_attn[s]`: drop the stage's first attention block (depth - 1 and num_attn - 1).

Rule: start from `start` (default the space's largest subnet). Each step evaluates every frontier
action and takes the one with the smallest accuracy drop per MES gain, ΔAcc/ΔMES with
ΔAcc = acc(current) - acc(candidate) and ΔMES = MES(candidate) - MES(current). Candidates that do
not raise the MES (ΔMES <= 0) are never taken, so the MES rises strictly along the trajectory. A
candidate that keeps or raises accuracy has ΔAcc <= 0, a score <= 0, and beats every lossy one;
ties go to the larger MES gain, then to the first action in frontier order. Stop when both targets
are met (a None target counts as met), when no action raises the MES, or after `max_steps`.

Lazy steps (`lazy=K`, our addition for CPU budgets): accuracy drops change little from one step to
the next, so a step evaluates only the actions it has never evaluated and the K best by their last
measured ΔAcc over their current, exact ΔMES; the rule then chooses among those. On the paper space
this evaluates about K + 1 subnets per step instead of ~45.

Strided steps (`stride=f`, ours): while a target is more than 1.5x away, a step applies the
best-ranked actions together, in rank order, until the predicted latency has fallen by the fraction
f, and evaluates the combination once; near the targets every step is one action, as in the paper.

Resume: with `state_path`, the trajectory (every step's config and metrics) and every accuracy
evaluation so far are rewritten atomically after each evaluation; a killed search reloads them,
continues from the last finished step, and never re-evaluates a subnet it has seen.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from efficientformer.bench.mes import PAPER_MES, MESConstants, mobile_efficiency_score
from efficientformer.errors import BadFileError, ConfigError
from efficientformer.models.config import ModelConfig
from efficientformer.search.actions import Action, apply_action, frontier
from efficientformer.search.space import SearchSpace, signature
from efficientformer.utils.io import write_json
from efficientformer.utils.progress import progress_bar

FORMAT = "efficientformer-search/1"
CSV_FIELDS = ("step", "action", "params", "latency_ms", "mes", "accuracy", "delta_acc", "delta_mes", "score",
              "candidates", "signature")


@dataclass(frozen=True)
class Step:
    """One point of the trajectory (step 0 is the start)."""

    step: int
    action: str
    config: ModelConfig
    params: int
    latency_ms: float
    mes: float
    accuracy: float
    delta_acc: float = 0.0
    delta_mes: float = 0.0
    score: float = 0.0
    candidates: int = 0

    def row(self) -> dict[str, Any]:
        return {**{name: getattr(self, name) for name in CSV_FIELDS if name != "signature"},
                "signature": signature(self.config)}

    def to_dict(self) -> dict[str, Any]:
        return {**self.row(), "config": self.config.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        values = {name: data[name] for name in CSV_FIELDS if name != "signature"}
        return cls(config=ModelConfig.from_dict(data["config"]), **values)


@dataclass
class SlimResult:
    """The trajectory, the found architecture (its last step) and why the search stopped."""

    steps: list[Step]
    targets_met: bool
    stop_reason: str
    evaluations: int = 0
    state_path: Path | None = None
    accuracies: dict[str, float] = field(default_factory=dict)

    @property
    def found(self) -> Step:
        return self.steps[-1]


def targets_met(step: Step, target_latency_ms: float | None, target_params: float | None) -> bool:
    """Both targets met (a None target counts as met)."""
    return ((target_latency_ms is None or step.latency_ms <= target_latency_ms)
            and (target_params is None or step.params <= target_params))


class _State:
    """The resumable record: steps, cached accuracies and what they were computed for."""

    def __init__(self, path: Path | None, identity: dict[str, Any]) -> None:
        self.path, self.identity = path, identity
        self.steps: list[Step] = []
        self.accuracy: dict[str, float] = {}
        self.stop_reason = ""
        if path is not None and path.exists():
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise BadFileError(f"cannot resume the search from {path}: {error}") from None
        if data.get("format") != FORMAT:
            raise BadFileError(f"{path} is not a search state (format {FORMAT!r} expected)")
        for name, value in self.identity.items():
            if data.get(name) != value:
                raise ConfigError(f"cannot resume the search from {path}: its {name} differs from this run's "
                                  f"({data.get(name)!r} vs {value!r}); use another output directory")
        self.steps = [Step.from_dict(s) for s in data["steps"]]
        self.accuracy = dict(data["accuracy"])
        self.stop_reason = data.get("stop_reason", "")

    def save(self) -> None:
        if self.path is None:
            return
        data = {"format": FORMAT, **self.identity, "steps": [s.to_dict() for s in self.steps],
                "accuracy": self.accuracy, "stop_reason": self.stop_reason}
        write_json(self.path, data, indent=1)


class Measured(NamedTuple):
    """What the rule needs of a subnet: its parameters, latency (ms), MES and accuracy (%)."""

    params: int
    latency_ms: float
    mes: float
    accuracy: float


class Evaluator:
    """Measures subnets for the search, each distinct one once.

    Parameters and latency are cached for the run; accuracies go into the resumable state, which is
    saved after every new evaluation (so a resumed search never evaluates a subnet twice).
    """

    def __init__(self, accuracy_of: Callable[[ModelConfig], float], latency_of: Callable[[ModelConfig], float],
                 params_of: Callable[[ModelConfig], float], mes: MESConstants, state: _State) -> None:
        self.accuracy_of, self.latency_of, self.params_of, self.mes = accuracy_of, latency_of, params_of, mes
        self.state = state
        self.costs: dict[str, tuple[int, float]] = {}
        self.evaluations = 0  # accuracy evaluations made in this run (not those loaded from the state)

    def accuracy(self, config: ModelConfig) -> float:
        key = signature(config)
        if key not in self.state.accuracy:
            self.state.accuracy[key] = float(self.accuracy_of(config))
            self.evaluations += 1
            self.state.save()
        return self.state.accuracy[key]

    def mes_of(self, config: ModelConfig) -> tuple[int, float, float]:
        """(params, latency ms, MES) of `config`, without evaluating its accuracy."""
        key = signature(config)
        if key not in self.costs:
            self.costs[key] = (int(self.params_of(config)), float(self.latency_of(config)))
        params, latency = self.costs[key]
        return params, latency, mobile_efficiency_score(params, latency, self.mes)

    def __call__(self, config: ModelConfig) -> Measured:
        return Measured(*self.mes_of(config), self.accuracy(config))


def lazy_choice(current: Step, moves: Sequence[tuple[Action, ModelConfig]], measure: Evaluator,
                drops: dict[str, float], top: int) -> list[tuple[Action, ModelConfig]]:
    """The moves whose accuracy a lazy step evaluates: those never evaluated, plus the `top` best by estimate.

    An action's estimated ΔAcc is the one measured the last time it was evaluated (`drops`, by action);
    its ΔMES is always exact (table and parameter count). Actions that do not raise the MES are skipped,
    as the rule never takes them.
    """
    unknown, ranked = [], []
    for index, (action, config) in enumerate(moves):
        delta_mes = measure.mes_of(config)[2] - current.mes
        if delta_mes <= 0:
            continue
        if str(action) not in drops:
            unknown.append(index)
        else:
            ranked.append((drops[str(action)] / delta_mes, -delta_mes, index))
    chosen = set(unknown) | {index for *_, index in sorted(ranked)[:top]}
    return [move for index, move in enumerate(moves) if index in chosen]


def replay_drops(space: SearchSpace, steps: Sequence[Step], accuracy: dict[str, float]) -> dict[str, float]:
    """The last measured ΔAcc of every action along a trajectory (from the accuracy cache): how a resumed
    lazy search gets the estimates an uninterrupted one had."""
    drops: dict[str, float] = {}
    for step in steps:
        for action, candidate in frontier(space, step.config):
            key = signature(candidate)
            if key in accuracy:
                drops[str(action)] = step.accuracy - accuracy[key]
    return drops


def rank_moves(current: Step, candidates: Sequence[tuple[Action, ModelConfig, Measured]]) -> list[Step]:
    """The candidates that raise the MES as steps from `current`, best first by the rule (module docstring)."""
    keyed = []
    for index, (action, config, measured) in enumerate(candidates):
        delta_mes, delta_acc = measured.mes - current.mes, current.accuracy - measured.accuracy
        if delta_mes <= 0:
            continue
        ratio = delta_acc / delta_mes
        keyed.append(((ratio, -delta_mes, index), Step(current.step + 1, str(action), config, measured.params,
                                                        measured.latency_ms, measured.mes, measured.accuracy,
                                                        delta_acc, delta_mes, ratio, len(candidates))))
    return [step for _, step in sorted(keyed, key=lambda pair: pair[0])]


def choose_move(current: Step, candidates: Sequence[tuple[Action, ModelConfig, Measured]]) -> Step | None:
    """The step the rule takes from `current` among measured candidates (module docstring), or None.

    Pure: the smallest ΔAcc/ΔMES among the candidates that raise the MES; ties go to the larger MES
    gain, then to the earlier candidate. None when no candidate raises the MES.
    """
    ranked = rank_moves(current, candidates)
    return ranked[0] if ranked else None


def stride_move(space: SearchSpace, current: Step, ranked: Sequence[Step], actions: dict[str, Action],
                measure: Evaluator, stride: float) -> Step | None:
    """The best-ranked actions applied together until the latency falls by `stride` of the current, as one step.

    None when fewer than two actions apply or the combination does not raise the MES (the caller then
    takes the single best). Its accuracy is evaluated like any candidate's.
    """
    config, names = current.config, []
    for step in ranked:
        moved = apply_action(space, config, actions[step.action])
        if moved is None:
            continue
        config = moved
        names.append(step.action)
        if measure.mes_of(config)[1] <= (1.0 - stride) * current.latency_ms:
            break
    if len(names) < 2:
        return None
    measured = measure(config)
    delta_mes, delta_acc = measured.mes - current.mes, current.accuracy - measured.accuracy
    if delta_mes <= 0:
        return None
    return Step(current.step + 1, "+".join(names), config, measured.params, measured.latency_ms, measured.mes,
                measured.accuracy, delta_acc, delta_mes, delta_acc / delta_mes, ranked[0].candidates)


def _far(step: Step, target_latency_ms: float | None, target_params: float | None, factor: float = 1.5) -> bool:
    """More than `factor` times a target away: where strided steps apply."""
    return ((target_latency_ms is not None and step.latency_ms > factor * target_latency_ms)
            or (target_params is not None and step.params > factor * target_params))


def slim(space: SearchSpace, accuracy_of: Callable[[ModelConfig], float], latency_of: Callable[[ModelConfig], float],
         params_of: Callable[[ModelConfig], float], *, target_latency_ms: float | None = None,
         target_params: float | None = None, start: ModelConfig | None = None, mes: MESConstants = PAPER_MES,
         max_steps: int | None = None, state_path: str | os.PathLike | None = None,
         fingerprint: dict[str, Any] | None = None, progress: bool | None = None,
         on_step: Callable[[Step], None] | None = None, lazy: int | None = None, stride: float = 0.0) -> SlimResult:
    """Slim `start` (default the largest subnet) until both targets are met; see the module docstring.

    Args:
        accuracy_of: subnet -> accuracy (%, higher is better); called once per distinct subnet.
        latency_of: subnet -> latency in ms (e.g. `LatencyTable.predict`).
        params_of: subnet -> parameter count (e.g. `models.summary.param_count`).
        mes: MES units and importances.
        state_path: JSON file for resuming (written after every evaluation).
        fingerprint: what the accuracies depend on (supernet file, data, LUT); a resumed search must match.
        on_step: called with every new step after it is saved.
        lazy: evaluate, per step, only the actions never evaluated before and the `lazy` best by their
            last measured ΔAcc over their exact ΔMES (`lazy_choice`); None or 0: every action (the paper).
        stride: while more than 1.5x a target away, a step applies the best-ranked actions together until
            the latency falls by this fraction (`stride_move`); 0: one action per step (the paper).
    """
    start = start or space.max_config()
    space.validate(start)
    identity = {"space": space.to_dict(), "start": start.to_dict(), "mes": dataclasses.asdict(mes),
                "targets": {"latency_ms": target_latency_ms, "params": target_params},
                "fingerprint": fingerprint or {}, "lazy": lazy or None, "stride": stride}
    identity = json.loads(json.dumps(identity))  # tuples -> lists, as they come back from the file
    state = _State(Path(state_path) if state_path is not None else None, identity)
    measure = Evaluator(accuracy_of, latency_of, params_of, mes, state)
    if not state.steps:
        state.steps.append(Step(0, "start", start, *measure(start)))
        state.save()
    drops = replay_drops(space, state.steps, state.accuracy) if lazy else {}
    with progress_bar(disable=None if progress is None else not progress) as bar:
        task = bar.add_task("slimming", total=None)
        while True:
            current = state.steps[-1]
            if targets_met(current, target_latency_ms, target_params):
                state.stop_reason = "targets met"
                break
            if max_steps is not None and current.step >= max_steps:
                state.stop_reason = f"max_steps {max_steps} reached before the targets"
                break
            moves = frontier(space, current.config)
            if lazy:
                moves = lazy_choice(current, moves, measure, drops, lazy)
            measured = []
            for index, (action, candidate) in enumerate(moves):
                bar.update(task, description=f"step {current.step + 1}: candidate {index + 1}/{len(moves)} "
                                             f"(at {current.latency_ms:.3f} ms, {current.params / 1e6:.3f} M)")
                measured.append((action, candidate, measure(candidate)))
                drops[str(action)] = current.accuracy - measured[-1][2].accuracy
            ranked = rank_moves(current, measured)
            best = ranked[0] if ranked else None
            if best is not None and stride > 0 and _far(current, target_latency_ms, target_params):
                best = stride_move(space, current, ranked, {str(a): a for a, _ in moves}, measure, stride) or best
            if best is None:
                state.stop_reason = ("no action left in the space" if not moves
                                     else "no action raises the MES") + " before the targets"
                break
            state.steps.append(best)
            state.save()
            bar.advance(task)
            if on_step is not None:
                on_step(best)
    state.save()
    reached = targets_met(state.steps[-1], target_latency_ms, target_params)
    return SlimResult(state.steps, reached, state.stop_reason, measure.evaluations, state.path, dict(state.accuracy))


__all__ = ["CSV_FIELDS", "Evaluator", "Measured", "SlimResult", "Step", "choose_move", "lazy_choice", "rank_moves",
           "replay_drops", "slim", "stride_move", "targets_met"]
