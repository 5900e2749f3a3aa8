"""`run_bench`: params, MACs, latency, throughput and MES of several models on several runtimes.

For each runtime and thread count (by default 1 thread and every core, the faster marked per model),
every model is prepared (fused, exported, loaded through the runtime layer `export.runtimes`) and
then all of them are timed together with `time_interleaved`, once at the latency batch and once at
the throughput batch, so machine noise hits the models of one runtime alike. Runtimes run one after
the other, never interleaved: their thread pools would disturb each other (onnxruntime's workers keep
spinning after a call). The exception is the torch runtimes (eager, fused, compiled), which share one
pool: they are timed in the same interleaved rounds, so `speedup_vs_eager` compares the same moments.
With `isolate` each runtime (the torch ones together) and thread count runs in a fresh Python process
of its own (bench/measure.py), so not even an idle pool or loaded library of another runtime is around.

Parameters are counted twice. `params` is the model as built (BatchNorms and, for
EfficientFormerV2, both the classifier and the distillation head; what `efficientformer info`
shows and what the paper's tables count). `params_deployed` is the fused inference model that the
runtimes actually run (BNs folded, one averaged head); MES uses it, for every model alike. MACs
are those of one image through the fused model (`models.summary` convention).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from efficientformer.bench.measure import measure_isolated, measure_together, measurement_groups
from efficientformer.bench.mes import PAPER_MES, MESConstants, mobile_efficiency_score
from efficientformer.bench.runtimes import DEFAULT_RUNTIMES, RUNTIMES, unavailable, versions
from efficientformer.bench.timing import Timing
from efficientformer.errors import ConfigError, UnknownNameError
from efficientformer.export.parity import ParityReport
from efficientformer.factory import build_model, resolve_spec
from efficientformer.models.fuse import APPROXIMATIONS, fuse
from efficientformer.models.mobilenetv2 import MOBILENETV2_CONFIGS, MobileNetV2Config
from efficientformer.models.spec import ModelSpec, family_of
from efficientformer.models.summary import count_macs, param_count
from efficientformer.utils.machine import machine_line
from efficientformer.utils.threads import threads as torch_threads

DEFAULT_MODELS = ("s0", "s1", "s2", "l", "mobilenetv2_100", "mobilenetv2_140")
REFERENCE_MODEL = "mobilenetv2_100"
EAGER = "torch-eager"


@dataclass(frozen=True)
class BenchConfig:
    """What to measure.

    Args:
        models: registry names or aliases (s0), ModelConfig JSON files, or mobilenetv2_100/_140.
        runtimes: keys of RUNTIMES; None = the defaults that are available here.
        batch: the latency batch (1 for MES, which is defined on single-image latency).
        throughput_batch: the batch for images/s; None = use the latency timing.
        img_size: input (height, width).
        threads: intra-op threads of torch and of each runtime: a count, several counts (each runtime is
            measured at each, and the faster is marked), or None = (1, every core).
        isolate: measure each (runtime, threads) in a fresh subprocess, so no other runtime's thread
            pool, allocator or loaded library is in the process being timed.
        approximate: opt-in approximations of the fused model (models.fuse.APPROXIMATIONS), applied to
            every model on every runtime but torch-eager; default none (exact).
        warmup: untimed calls per model before timing (torch.compile compiles in the first).
        repeats: timed rounds at the latency batch.
        throughput_repeats: timed rounds at the throughput batch; None = max(3, repeats // 4).
        mes: MES units and importances (paper defaults).
        reference: model the relative MES is computed against, on the same runtime.
        workdir: where exported files go; None = a temporary directory, removed afterwards.
    """

    models: tuple[str, ...] = DEFAULT_MODELS
    runtimes: tuple[str, ...] | None = None
    batch: int = 1
    throughput_batch: int | None = 16
    img_size: tuple[int, int] = (224, 224)
    threads: int | tuple[int, ...] | None = None
    isolate: bool = False
    approximate: tuple[str, ...] = ()
    warmup: int = 3
    repeats: int = 20
    throughput_repeats: int | None = None
    num_classes: int = 1000
    mes: MESConstants = PAPER_MES
    reference: str = REFERENCE_MODEL
    workdir: Path | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("BenchConfig.models is empty")
        for name in ("batch", "repeats", "num_classes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"BenchConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.throughput_batch is not None and self.throughput_batch < 1:
            raise ConfigError(f"BenchConfig.throughput_batch must be >= 1, got {self.throughput_batch!r}")
        if self.warmup < 0:
            raise ConfigError(f"BenchConfig.warmup must be >= 0, got {self.warmup!r}")
        self.thread_counts  # validates
        unknown = [name for name in self.approximate if name not in APPROXIMATIONS]
        if unknown:
            raise ConfigError(f"BenchConfig.approximate: unknown {', '.join(unknown)}; "
                              f"known: {', '.join(APPROXIMATIONS)}")
        for name in self.runtimes or ():
            if name not in RUNTIMES:
                raise ConfigError(f"BenchConfig.runtimes: unknown runtime {name!r}; choose from {', '.join(RUNTIMES)}")

    @property
    def thread_counts(self) -> tuple[int, ...]:
        """The thread counts to measure at, in order, without repeats."""
        if self.threads is None:
            counts: tuple[int, ...] = (1, os.cpu_count() or 1)
        elif isinstance(self.threads, int):
            counts = (self.threads,)
        else:
            counts = tuple(self.threads)
        if not counts or min(counts) < 1:
            raise ConfigError(f"BenchConfig.threads must be positive counts, got {self.threads!r}")
        return tuple(dict.fromkeys(counts))

    @property
    def batches(self) -> tuple[int, ...]:
        if self.throughput_batch is None or self.throughput_batch == self.batch:
            return (self.batch,)
        return (self.batch, self.throughput_batch)

    def repeats_for(self, batch: int) -> int:
        if batch == self.batch:
            return self.repeats
        return self.throughput_repeats or max(3, self.repeats // 4)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["img_size"] = list(self.img_size)
        data["workdir"] = None if self.workdir is None else str(self.workdir)
        data["threads"] = list(self.thread_counts)
        return data


@dataclass(frozen=True)
class BenchModel:
    """A model to bench: its name, a short label for plots, its family, and the built module."""

    name: str
    label: str
    family: str
    module: nn.Module
    params: int
    params_deployed: int
    macs: int


@dataclass(frozen=True)
class BenchRow:
    """One model on one runtime at one thread count. Latency at `batch`, throughput at `throughput_batch`;
    `fastest_threads` marks the thread count with the lowest latency of this model and runtime (None
    when only one was measured); `max_abs_diff`, `relative_error` (export.parity.ParityReport) and
    `top1_agreement` compare the runtime's logits with the unfused eager model's on the parity images
    (bench/measure.py); `error` when something failed."""

    model: str
    label: str
    family: str
    runtime: str
    img_size: str
    threads: int
    params: int
    params_deployed: int
    macs: int
    batch: int
    median_ms: float | None = None
    p90_ms: float | None = None
    mean_ms: float | None = None
    min_ms: float | None = None
    throughput_batch: int | None = None
    throughput_median_ms: float | None = None
    images_per_s: float | None = None
    speedup_vs_eager: float | None = None
    mes: float | None = None
    mes_vs_reference: float | None = None
    fastest_threads: bool | None = None
    max_abs_diff: float | None = None
    relative_error: float | None = None
    top1_agreement: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class BenchResult:
    """Rows plus what is needed to read them later: machine, versions, settings, raw times."""

    config: BenchConfig
    rows: tuple[BenchRow, ...]
    skipped: dict[str, str]
    machine: str
    versions: dict[str, str]
    date: str
    threads: tuple[int, ...]
    reference: str | None = None
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine, "date": self.date, "threads": list(self.threads), "versions": self.versions,
                "settings": self.config.to_dict(), "reference": self.reference, "skipped": self.skipped,
                "rows": [dataclasses.asdict(row) for row in self.rows], "timings": self.timings}


def model_spec(name: str) -> ModelSpec:
    """The spec of a model name, alias, config JSON or checkpoint of either family; unknown names list both."""
    try:
        return resolve_spec(name)
    except KeyError as error:
        raise UnknownNameError(f"{error.args[0]}; or {', '.join(MOBILENETV2_CONFIGS)}") from None


def model_label(spec: ModelSpec) -> str:
    """The short name of plots and tables: 'S0', 'MNv2-1.0'."""
    if isinstance(spec, MobileNetV2Config):
        width = spec.width_mult
        return f"MNv2-{width:.1f}" if round(width, 1) == width else f"MNv2-{width:g}"
    return spec.name.removeprefix("efficientformerv2_").upper()


def _constructor(name: str, img_size: tuple[int, int], num_classes: int
                 ) -> tuple[str, str, str, Callable[[], nn.Module]]:
    """(canonical name, label, family, a function building the eval-mode module) for a model name or file."""
    spec = model_spec(name)
    return (spec.name, model_label(spec), family_of(spec),
            lambda: build_model(spec, img_size=img_size, num_classes=num_classes).eval())


def canonical_name(name: str) -> str:
    """The name a model is reported under: 's0' -> 'efficientformerv2_s0'; unknown names stay as they are."""
    try:
        return resolve_spec(name).name
    except (KeyError, ValueError, OSError):
        return name


def model_counts(module: nn.Module, img_size: tuple[int, int]) -> tuple[int, int, int]:
    """(params as built, params of the fused copy, MACs of one image through the fused copy) of `module`.

    Works on the meta device (nothing computed) and on trained weights alike; `module` is not changed.
    """
    deployed = fuse(module)
    device = next(module.parameters()).device
    with torch.no_grad():
        _, macs, _ = count_macs(deployed, torch.zeros(1, 3, *img_size, device=device))
    return param_count(module), param_count(deployed), macs


def build_models(config: BenchConfig) -> list[BenchModel]:
    """Build every model of `config` (random weights: latency does not depend on them) with its counts.

    The counts come from a copy on the meta device (nothing computed): `params` as built,
    `params_deployed` and `macs` of its fused copy.
    """
    built = []
    for name in dict.fromkeys(config.models):
        canonical, label, family, make = _constructor(name, config.img_size, config.num_classes)
        with torch.device("meta"):
            shape_only = make()
        built.append(BenchModel(canonical, label, family, make(), *model_counts(shape_only, config.img_size)))
    return built


def _runtime_names(config: BenchConfig) -> tuple[list[str], dict[str, str]]:
    """The runtimes to run and, for the others asked for (or default), why they are skipped."""
    wanted = list(config.runtimes) if config.runtimes else list(DEFAULT_RUNTIMES)
    skipped = {name: reason for name in wanted if (reason := unavailable(name)) is not None}
    return [name for name in wanted if name not in skipped], skipped


def run_bench(config: BenchConfig = BenchConfig(), *, progress: bool | None = None,
              on_runtime_done: Callable[[BenchResult], None] | None = None) -> BenchResult:
    """Measure every model of `config` on every runtime; see the module docstring for what is counted.

    Args:
        progress: progress bars for preparation and timing; None = only on a terminal.
        on_runtime_done: called after each runtime (the torch runtimes: after all of them) with the
            result so far (the runtimes done), e.g. to write partial reports during a long run.
    """
    thread_counts = config.thread_counts
    models = build_models(config)
    runtimes, skipped = _runtime_names(config)
    reference = canonical_name(config.reference)
    reference = reference if any(model.name == reference for model in models) else None
    timings: dict[tuple[str, int, str, int], Timing] = {}
    errors: dict[tuple[str, int, str], str] = {}
    parity: dict[tuple[str, int, str], ParityReport] = {}
    done: list[str] = []

    def result(finished: list[str]) -> BenchResult:
        rows = _rows(config, models, finished, timings, errors, parity, reference)
        raw = {f"{runtime}/{threads}t/{name}/b{batch}": timing.to_dict()
               for (runtime, threads, name, batch), timing in timings.items()}
        return BenchResult(config=config, rows=tuple(rows), skipped=skipped, machine=machine_line(),
                           versions=versions(runtimes + list(skipped)), date=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           threads=thread_counts, reference=reference, timings=raw)

    # Each measurement sets the thread count it runs at; the caller's count is restored afterwards.
    with torch_threads(), tempfile.TemporaryDirectory(prefix="efficientformer-bench-") as tmp:
        workdir = Path(config.workdir) if config.workdir is not None else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        groups = measurement_groups(runtimes)
        for index, group in enumerate(groups):
            for threads in thread_counts:
                where = workdir / f"{'_'.join(group)}_{threads}t"
                found = (measure_isolated(group, config, threads, where, progress) if config.isolate
                         else measure_together(group, models, config, threads, where, progress))
                timings.update({(runtime, threads, name, batch): timing
                                for (runtime, name, batch), timing in found.timings.items()})
                errors.update({(runtime, threads, name): message for (runtime, name), message in found.errors.items()})
                parity.update({(runtime, threads, name): report for (runtime, name), report in found.parity.items()})
            done.extend(group)
            if on_runtime_done is not None and index < len(groups) - 1:
                on_runtime_done(result(done))
    return result(runtimes)  # after the restore: the machine line names the caller's thread count


def _rows(config: BenchConfig, models: list[BenchModel], runtimes: list[str],
          timings: dict[tuple[str, int, str, int], Timing], errors: dict[tuple[str, int, str], str],
          parity: dict[tuple[str, int, str], ParityReport], reference: str | None) -> list[BenchRow]:
    by_name = {model.name: model for model in models}
    size = "x".join(map(str, config.img_size))
    counts = config.thread_counts
    rows = []
    for runtime in runtimes:
        for threads in counts:
            ref_timing = timings.get((runtime, threads, reference, config.batch)) if reference else None
            relative = (config.mes.relative_to(by_name[reference].params_deployed, ref_timing.median_ms)
                        if ref_timing is not None else None)
            for model in models:
                base = dict(model=model.name, label=model.label, family=model.family, runtime=runtime, img_size=size,
                            threads=threads, params=model.params, params_deployed=model.params_deployed,
                            macs=model.macs, batch=config.batch)
                latency = timings.get((runtime, threads, model.name, config.batch))
                if latency is None:
                    rows.append(BenchRow(**base, error=errors.get((runtime, threads, model.name), "not measured")))
                    continue
                throughput_batch = config.batches[-1]
                throughput = timings.get((runtime, threads, model.name, throughput_batch))
                eager = timings.get((EAGER, threads, model.name, config.batch))
                measured = [t.median_ms for n in counts if (t := timings.get((runtime, n, model.name, config.batch)))]
                report = parity.get((runtime, threads, model.name))
                rows.append(BenchRow(
                    **base, median_ms=latency.median_ms, p90_ms=latency.p90_ms, mean_ms=latency.mean_ms,
                    min_ms=latency.min_ms, throughput_batch=throughput_batch,
                    throughput_median_ms=throughput.median_ms if throughput else None,
                    images_per_s=throughput_batch * 1e3 / throughput.median_ms if throughput else None,
                    error=errors.get((runtime, threads, model.name)),
                    speedup_vs_eager=eager.median_ms / latency.median_ms if eager is not None else None,
                    mes=mobile_efficiency_score(model.params_deployed, latency.median_ms, config.mes),
                    mes_vs_reference=(mobile_efficiency_score(model.params_deployed, latency.median_ms, relative)
                                      if relative is not None else None),
                    fastest_threads=latency.median_ms == min(measured) if len(measured) > 1 else None,
                    max_abs_diff=report.max_abs_diff if report else None,
                    relative_error=report.relative_error if report else None,
                    top1_agreement=report.top1_agreement if report else None))
    return rows


__all__ = ["DEFAULT_MODELS", "REFERENCE_MODEL", "BenchConfig", "BenchModel", "BenchResult", "BenchRow", "model_counts",
           "model_label", "model_spec", "run_bench"]
