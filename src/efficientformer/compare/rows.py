"""One model's row of a comparison: sizes, accuracy over its finished seeds, latency, MES, training time.

`model_row` builds it from the model's runs (compare/runs.py), its trained network's counts and its
timing; `with_reference` adds the MES relative to the reference model once every row exists.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

from efficientformer.bench.mes import MESConstants, mobile_efficiency_score
from efficientformer.bench.run import BenchModel, model_label
from efficientformer.bench.timing import Timing
from efficientformer.compare.pretrained import SCRATCH
from efficientformer.compare.runs import RunRecord
from efficientformer.models.spec import ModelSpec, family_of

if TYPE_CHECKING:
    from efficientformer.compare.run import CompareConfig


@dataclass(frozen=True)
class CompareRow:
    """One model: sizes, held-out accuracy over its finished seeds, latency on the runtime, MES, training time.

    Accuracies are percentages of the last epoch on the held-out split; `top1` is the mean over the
    seeds in `seeds`, `top1_min`/`top1_max` their range. `training_s` is the mean wall time per run.
    `start` is the weight tag the runs started from, or 'scratch'.
    `error` names what failed (a seed's training, or the latency measurement).
    """

    model: str
    label: str
    family: str
    source: str
    seeds: str
    runs: int
    img_size: str
    runtime: str
    threads: int
    start: str = SCRATCH
    params: int | None = None
    params_deployed: int | None = None
    macs: int | None = None
    top1: float | None = None
    top1_min: float | None = None
    top1_max: float | None = None
    top5: float | None = None
    top5_min: float | None = None
    top5_max: float | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    mes: float | None = None
    mes_vs_reference: float | None = None
    training_s: float | None = None
    error: str | None = None


def spread(values: list[float]) -> tuple[float | None, float | None, float | None]:
    """(mean, min, max), or Nones when nothing finished."""
    if not values:
        return None, None, None
    return statistics.fmean(values), min(values), max(values)


def model_row(config: CompareConfig, runtime: str, source: str, spec: ModelSpec, runs: list[RunRecord],
              model: BenchModel | None, timing: Timing | None, latency_error: str | None, start: str | None
              ) -> CompareRow:
    """The row of `spec` from its runs (failed ones named in `error`), its trained network's counts (`model`),
    its timing, and the weights its runs started from (`start`, None = scratch)."""
    finished = [run for run in runs if run.finished]
    problems = [f"seed {run.seed}: {run.error}" for run in runs if not run.finished]
    if latency_error:
        problems.append(latency_error)
    top1, top1_min, top1_max = spread([run.top1 for run in finished])
    top5, top5_min, top5_max = spread([run.top5 for run in finished])
    times = [run.training_s for run in finished if run.training_s is not None]
    counts = {} if model is None else {"params": model.params, "params_deployed": model.params_deployed,
                                       "macs": model.macs}
    latency = {} if timing is None else {
        "median_ms": timing.median_ms, "p90_ms": timing.p90_ms,
        "mes": mobile_efficiency_score(model.params_deployed, timing.median_ms, config.mes)}
    return CompareRow(model=spec.name, label=model_label(spec), family=family_of(spec), source=source,
                      seeds=" ".join(str(run.seed) for run in finished), runs=len(finished),
                      img_size=f"{config.recipe.img_size}x{config.recipe.img_size}", runtime=runtime,
                      threads=config.threads, start=start or SCRATCH, **counts, top1=top1, top1_min=top1_min,
                      top1_max=top1_max, top5=top5, top5_min=top5_min, top5_max=top5_max, **latency,
                      training_s=statistics.fmean(times) if times else None,
                      error="; ".join(problems) if problems else None)


def with_reference(rows: list[CompareRow], reference: str | None, mes: MESConstants) -> list[CompareRow]:
    """MES with the reference model's deployed params and latency as units (it scores `mes.score`)."""
    base = next((row for row in rows if row.model == reference and row.median_ms is not None), None)
    if base is None:
        return rows
    relative = mes.relative_to(base.params_deployed, base.median_ms)
    return [dataclasses.replace(row, mes_vs_reference=mobile_efficiency_score(row.params_deployed, row.median_ms,
                                                                              relative))
            if row.median_ms is not None else row for row in rows]


__all__ = ["CompareRow", "model_row", "with_reference"]
