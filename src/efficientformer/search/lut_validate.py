"""Does a latency table add up? Predicted (sum of entries) against measured end-to-end latency.

    rows = validate_lut(table, validation_configs(space))      # S0/S1/S2/L when in the space + random subnets
    calibrate(table, calibration_configs(space, 20))        # fit predict's terms on other networks, then save
    accuracy_report(rows)                                      # share within +-10%, the worst networks

Whole networks are built with `create_model(config)` and run through the same runtime path and
the same harness (`bench.timing`, batch 1, the table's warm-up/repeats and threads) as the
entries, interleaved so that load hits all networks alike.

Calibration (`calibrate`): what a sum of standalone entries cannot see (cold weights, per-network
dispatch, the machine's speed since the build) as the three terms of `LatencyTable.predict`, fitted
on *calibration* networks (the smallest, the largest and random subnets with a seed of their own,
never the validation networks) and stored in the table's header.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from efficientformer.bench.timing import time_interleaved
from efficientformer.errors import ConfigError
from efficientformer.factory import create_model
from efficientformer.models.config import ModelConfig
from efficientformer.models.registry import get as get_config
from efficientformer.search.lut import LatencyTable, ParamCounter, build_entry, decompose, example_input
from efficientformer.search.runtimes import Preparer, clock_function
from efficientformer.search.space import SearchSpace
from efficientformer.utils.threads import threads as torch_threads

PUBLISHED = ("efficientformerv2_s0", "efficientformerv2_s1", "efficientformerv2_s2", "efficientformerv2_l")
VALIDATION_SEED = 0
CALIBRATION_SEED = 1000
TOLERANCE = 0.10  # issue 15's accuracy target: predicted within +-10% of measured


@dataclass(frozen=True)
class ValidationRow:
    """One network: the table's prediction against its measured latency."""

    name: str
    predicted_ms: float
    sum_ms: float
    measured_ms: float
    measured_p90_ms: float
    session_sum_ms: float | None = None  # its entries re-timed in the same session as the network
    scale: float = 1.0  # the table's calibrated scale on the sum

    @property
    def error(self) -> float:
        """Relative error of the prediction, (predicted - measured) / measured."""
        return (self.predicted_ms - self.measured_ms) / self.measured_ms

    @property
    def additivity_error(self) -> float | None:
        """The error with the same-session sum in the prediction: additivity alone, without drift since the build."""
        if self.session_sum_ms is None:
            return None
        predicted = self.predicted_ms + self.scale * (self.session_sum_ms - self.sum_ms)
        return (predicted - self.measured_ms) / self.measured_ms

    def to_dict(self) -> dict:
        return {"name": self.name, "predicted_ms": self.predicted_ms, "sum_ms": self.sum_ms,
                "measured_ms": self.measured_ms, "measured_p90_ms": self.measured_p90_ms, "error": self.error,
                "session_sum_ms": self.session_sum_ms, "additivity_error": self.additivity_error}


def validation_configs(space: SearchSpace, random_subnets: int = 4, seed: int = VALIDATION_SEED) -> list[ModelConfig]:
    """S0/S1/S2/L (those that are points of `space`, at its base fields) plus `random_subnets` random subnets."""
    configs = []
    for name in PUBLISHED:
        published = get_config(name)
        if space.contains(published):
            configs.append(space.make_config(published.stages, name=name.removeprefix("efficientformerv2_")))
    generator = torch.Generator().manual_seed(seed)
    for index in range(random_subnets):
        configs.append(space.sample(generator).replace(name=f"random-{seed}-{index}"))
    return configs


def calibration_configs(space: SearchSpace, count: int = 3, seed: int = CALIBRATION_SEED) -> list[ModelConfig]:
    """Random subnets for fitting the overhead: the smallest, the largest and `count - 2` in between."""
    generator = torch.Generator().manual_seed(seed)
    configs = [space.min_config().replace(name="calib-min"), space.max_config().replace(name="calib-max")]
    configs += [space.sample(generator).replace(name=f"calib-{seed}-{i}") for i in range(max(count - 2, 0))]
    return configs[:max(count, 0)]


def measure_modules(table: LatencyTable, modules: dict[str, tuple[nn.Module, torch.Tensor]], *,
                    progress: bool | None = None, runners: dict[str, Callable[[], object]] | None = None
                    ) -> dict[str, tuple[float, float]]:
    """name -> (median, p90) ms of each (eval-mode module, batch-1 input) on the table's runtime and settings.

    Args:
        runners: name -> prepared call, shared between calls: a name found there is timed without
            being exported and loaded again, a new one is added (validate_lut times networks twice).
    """
    header = table.header
    threads = int(header["threads"])
    timer = clock_function(header.get("clock", "wall"), threads)
    with torch_threads(threads):
        runners = {} if runners is None else runners
        missing = {name: pair for name, pair in modules.items() if name not in runners}
        with Preparer(header["runtime"], threads) as preparer:  # lowered in parallel workers, loaded here
            runners.update({name: call for name, (call, _) in preparer.prepare(missing).items()})
        fns = {name: runners[name] for name in modules}
        timings = time_interleaved(fns, warmup=int(header["warmup"]), repeats=int(header["repeats"]),
                                   progress=progress, description="whole networks", clock=timer)
    return {name: (timing.median_ms, timing.p90_ms) for name, timing in timings.items()}


def measure_networks(table: LatencyTable, configs: Sequence[ModelConfig], *, progress: bool | None = None,
                     runners: dict[str, Callable[[], object]] | None = None) -> dict[str, tuple[float, float]]:
    """name -> (median, p90) ms of each whole network `create_model(config)` (see `measure_modules`)."""
    modules = {f"net:{c.name}": (create_model(c), torch.randn(1, c.in_chans, *c.img_size)) for c in configs}
    measured = measure_modules(table, modules, progress=progress, runners=runners)
    return {c.name: measured[f"net:{c.name}"] for c in configs}


def measure_with_entries(table: LatencyTable, configs: Sequence[ModelConfig], *, progress: bool | None = None,
                         runners: dict[str, Callable[[], object]] | None = None
                         ) -> tuple[dict[str, float], dict[str, float]]:
    """Whole networks and every entry they use, timed in one interleaved session: (network ms, same-session sum ms).

    Load on the machine drifts over minutes; timing the networks together with their entries makes
    the difference between a network and the sum of its entries independent of that drift.
    """
    modules: dict[str, tuple[nn.Module, torch.Tensor]] = {}
    for config in configs:
        modules[f"net:{config.name}"] = (create_model(config), torch.randn(1, config.in_chans, *config.img_size))
        for entry in decompose(config):
            if f"entry:{entry.key}" not in modules:
                modules[f"entry:{entry.key}"] = (build_entry(entry, config), example_input(entry))
    measured = measure_modules(table, modules, progress=progress, runners=runners)
    networks = {c.name: measured[f"net:{c.name}"][0] for c in configs}
    sums = {c.name: sum(measured[f"entry:{e.key}"][0] for e in decompose(c)) for c in configs}
    return networks, sums


def validate_lut(table: LatencyTable, configs: Sequence[ModelConfig], *, progress: bool | None = None,
                 with_entries: bool = False) -> list[ValidationRow]:
    """Predicted against measured latency for each config (names must be distinct).

    Args:
        with_entries: also re-time the configs' entries in the same session (`session_sum_ms`,
            `additivity_error`), which separates non-additivity from load drift since the build.
    """
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"validate_lut needs distinct config names, got {names}")
    runners: dict[str, Callable[[], object]] = {}  # the second session reuses the networks' exports
    measured = measure_networks(table, configs, progress=progress, runners=runners)
    sums = measure_with_entries(table, configs, progress=progress, runners=runners)[1] if with_entries else {}
    scale = table.calibration["scale"]
    return [ValidationRow(c.name, table.predict(c), table.sum_ms(c), *measured[c.name], sums.get(c.name), scale)
            for c in configs]


def calibrate(table: LatencyTable, configs: Sequence[ModelConfig], *, progress: bool | None = None
              ) -> dict[str, float]:
    """Fit the table's prediction terms on `configs` (measured whole), store them in its header, return them.

    Least squares of measured = scale * sum + ms_per_mparam * params / 1e6 + overhead_ms over the
    calibration networks (module docstring of search/lut.py for what each term stands for). With
    fewer than 3 networks, or when the fit is not physical (scale <= 0: the machine's load changed
    during the calibration), only `overhead_ms` is fitted: the median of (measured - sum).
    """
    if not configs:
        raise ConfigError("calibrate needs at least one calibration network")
    measured = measure_networks(table, configs, progress=progress)
    counter = ParamCounter()
    rows = {c.name: {"measured_ms": measured[c.name][0], "sum_ms": table.sum_ms(c), "params": counter(c)}
            for c in configs}
    terms = {"scale": 1.0, "ms_per_mparam": 0.0,
             "overhead_ms": statistics.median(r["measured_ms"] - r["sum_ms"] for r in rows.values())}
    if len(rows) >= 3:
        features = torch.tensor([[r["sum_ms"], r["params"] / 1e6, 1.0] for r in rows.values()], dtype=torch.float64)
        target = torch.tensor([[r["measured_ms"]] for r in rows.values()], dtype=torch.float64)
        scale, per_mparam, overhead = torch.linalg.lstsq(features, target).solution.flatten().tolist()
        if scale > 0:
            terms = {"scale": scale, "ms_per_mparam": per_mparam, "overhead_ms": overhead}
    table.header["calibration"] = {**terms, "model": "scale * sum + ms_per_mparam * params / 1e6 + overhead_ms",
                                   "networks": rows, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return terms


def calibration_line(terms: dict[str, float]) -> str:
    """'predicted = 0.977 x sum + 0.151 ms per M params + -0.128 ms'."""
    return (f"predicted = {terms['scale']:.3f} x sum + {terms['ms_per_mparam']:.3f} ms per M params "
            f"{terms['overhead_ms']:+.3f} ms")


def summary_line(rows: Sequence[ValidationRow], additivity: bool = False) -> str:
    """'mean |error| X%, max |error| Y% over N networks' (of the additivity error with `additivity`)."""
    errors = [abs(row.additivity_error if additivity else row.error) for row in rows]
    return (f"mean |error| {100 * statistics.fmean(errors):.1f}%, max |error| {100 * max(errors):.1f}% over "
            f"{len(rows)} networks")


def within_tolerance(row: ValidationRow, tolerance: float = TOLERANCE) -> bool:
    """Whether `row`'s prediction is within +-`tolerance` of its measured latency (the boundary counts as within).

    1e-9 of slack absorbs the float rounding of (predicted - measured) / measured, so a prediction
    of exactly 110% of the measurement (1.1 / 1.0 gives 0.10000000000000009) is within 10%.
    """
    return abs(row.error) <= tolerance + 1e-9


def accuracy_report(rows: Sequence[ValidationRow], tolerance: float = TOLERANCE, worst: int = 5) -> dict:
    """The issue-15 accuracy figures: share of networks within +-tolerance, error statistics, the worst networks.

    `worst` rows are sorted by |error|, largest first (name, predicted, measured, error).
    """
    if not rows:
        raise ConfigError("accuracy_report needs at least one validated network")
    errors = [row.error for row in rows]
    within = sum(within_tolerance(row, tolerance) for row in rows)
    ranked = sorted(rows, key=lambda row: abs(row.error), reverse=True)[:max(worst, 0)]
    return {"tolerance": tolerance, "networks": len(rows), "within": within, "share_within": within / len(rows),
            "mean_error": statistics.fmean(errors), "mean_abs_error": statistics.fmean(abs(e) for e in errors),
            "max_abs_error": max(abs(e) for e in errors),
            "worst": [{"name": row.name, "predicted_ms": row.predicted_ms, "measured_ms": row.measured_ms,
                       "error": row.error} for row in ranked]}


def share_line(report: dict) -> str:
    """'17 of 24 networks (70.8%) within +-10% of their measured latency; mean error +6.6%'."""
    return (f"{report['within']} of {report['networks']} networks ({100 * report['share_within']:.1f}%) within "
            f"+-{100 * report['tolerance']:g}% of their measured latency; "
            f"mean error {100 * report['mean_error']:+.1f}%")


__all__ = ["CALIBRATION_SEED", "PUBLISHED", "VALIDATION_SEED", "ValidationRow", "calibrate", "calibration_line",
           "calibration_configs", "measure_modules", "measure_networks", "measure_with_entries", "summary_line",
           "validate_lut", "validation_configs", "TOLERANCE", "accuracy_report", "share_line", "within_tolerance"]
