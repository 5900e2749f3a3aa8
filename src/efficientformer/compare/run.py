"""`run_compare`: train several models with one recipe on one dataset, then time them on one runtime.

    result = run_compare(CompareConfig())                                        # digits: S0 vs MobileNetV2
    result = run_compare(CompareConfig(models=("s0", "mobilenetv2_100", "found.json"), data="~/flowers",
                                       recipe=get_recipe("finetune"), runtime="onnxruntime", seeds=3))

1. Training. Every (model, seed) is one run of the training job (train/job.py) with the same data,
   held-out split (fixed by file names, the same for every seed), augmentation, recipe and epochs;
   only the seed differs between the runs of one model (recipe.seed, +1, ...). Runs go one after the
   other; a run that fails is recorded with its error and the others go on (compare/runs.py).
2. Latency. After all training, the trained weights of each model (its first finished seed) are
   loaded and prepared on the runtime through the one runtime layer, and all models are timed
   together in one interleaved harness call (`bench.measure.measure_runtime` -> `time_interleaved`)
   at batch 1 and the trained resolution, so machine noise hits them alike.
3. The table. Per model: params as built and deployed (fused), MACs (bench's counts), held-out
   top-1/top-5 of the last epoch (mean, min and max over the seeds), latency median and p90, MES,
   training time (mean per run); compare/report.py writes it as CSV, JSON, markdown and a plot.

`resume='auto'` makes a comparison resumable per model: finished runs are not retrained, a killed
one continues from its newest state; latency is measured again (it needs every model in one call).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from efficientformer.bench.measure import measure_runtime
from efficientformer.bench.mes import PAPER_MES, MESConstants, mobile_efficiency_score
from efficientformer.bench.run import (
    REFERENCE_MODEL,
    BenchConfig,
    BenchModel,
    canonical_name,
    model_counts,
    model_label,
    model_spec,
)
from efficientformer.bench.runtimes import RUNTIMES, unavailable, versions
from efficientformer.bench.timing import Timing
from efficientformer.compare.runs import FAILED, KEPT, RunRecord, check_run_model, run_dir_name, train_run
from efficientformer.data.datasets import DEFAULT_VAL_SPLIT
from efficientformer.errors import ConfigError, UnavailableError
from efficientformer.factory import load_model
from efficientformer.models.spec import ModelSpec, family_of
from efficientformer.train.job import TrainJob
from efficientformer.train.recipes import DEFAULT, TrainRecipe
from efficientformer.utils.io import write_json
from efficientformer.utils.machine import machine_line
from efficientformer.utils.threads import threads as torch_threads

DEFAULT_MODELS = ("efficientformerv2_s0", "mobilenetv2_100")
AUTO_RUNTIME, FALLBACK_RUNTIME = "onnxruntime", "torch-fused"
RUNS_DIR = "runs"
SETTINGS_FILE = "compare_settings.json"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompareConfig:
    """What to compare, on which data, with which recipe, timed where.

    Args:
        models: registry names or aliases (s0), ModelConfig JSON files (a search's found.json),
            mobilenetv2_100/_140 or a MobileNetV2 config JSON; each is reported under its config's name.
        output: the comparison directory: compare.csv/json/png and runs/<model>_seed<N>/ (training runs).
        data, val_data, val_split, on_bad_image: the dataset, as for `efficientformer train`
            (None = the embedded digits).
        recipe: the one recipe every model trains with; its seed is the first run's.
        seeds: runs per model (seeds recipe.seed, recipe.seed + 1, ...); with more than one the table
            shows the mean and the min-max of accuracy.
        runtime: where latency is measured (bench.runtimes.RUNTIMES); 'auto' = onnxruntime when it is
            installed, else torch-fused.
        threads: intra-op threads of torch and the runtime while timing (1: a phone's big core).
        warmup, repeats: untimed calls, and timed interleaved rounds, per model.
        mes: MES units and importances (paper defaults).
        reference: the model `mes_vs_reference` is computed against, when it is compared.
        resume: None (a fresh comparison: `output` must hold no runs) or 'auto' (finished runs are kept,
            killed ones continue from their newest state).
        device, num_workers, teacher, checkpoint_every, keep_last: passed to every training job.
    """

    models: tuple[str, ...] = DEFAULT_MODELS
    output: str = "compare"
    data: str | None = None
    val_data: str | None = None
    val_split: float = DEFAULT_VAL_SPLIT
    on_bad_image: str = "error"
    recipe: TrainRecipe = DEFAULT
    seeds: int = 1
    runtime: str = "auto"
    threads: int = 1
    warmup: int = 3
    repeats: int = 20
    mes: MESConstants = PAPER_MES
    reference: str = REFERENCE_MODEL
    resume: str | None = None
    device: str = "auto"
    num_workers: int = 0
    teacher: str | None = None
    checkpoint_every: int = 0
    keep_last: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        if not self.models:
            raise ConfigError("CompareConfig.models is empty")
        for name in ("seeds", "threads", "repeats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"CompareConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.warmup < 0:
            raise ConfigError(f"CompareConfig.warmup must be >= 0, got {self.warmup!r}")
        if self.runtime != "auto" and self.runtime not in RUNTIMES:
            raise ConfigError(f"CompareConfig.runtime: unknown runtime {self.runtime!r}; choose auto or one of "
                              f"{', '.join(RUNTIMES)}")
        if self.resume not in (None, "auto"):
            raise ConfigError(f"CompareConfig.resume must be None or 'auto', got {self.resume!r} (each model's run "
                              f"continues from its own newest state)")

    @property
    def seed_list(self) -> tuple[int, ...]:
        return tuple(self.recipe.seed + offset for offset in range(self.seeds))

    def data_settings(self) -> dict[str, Any]:
        """What every run of one comparison must share (checked on resume): data, split and recipe but the seed."""
        recipe = {key: value for key, value in self.recipe.to_dict().items() if key != "seed"}
        return {"data": self.data, "val_data": self.val_data, "val_split": self.val_split,
                "on_bad_image": self.on_bad_image, "recipe": recipe}

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**data, "models": list(self.models), "recipe": self.recipe.to_dict(),
                "mes": dataclasses.asdict(self.mes)}


@dataclass(frozen=True)
class CompareRow:
    """One model: sizes, held-out accuracy over its finished seeds, latency on the runtime, MES, training time.

    Accuracies are percentages of the last epoch on the held-out split; `top1` is the mean over the
    seeds in `seeds`, `top1_min`/`top1_max` their range. `training_s` is the mean wall time per run.
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


@dataclass(frozen=True)
class CompareResult:
    """The rows, every run behind them, and what is needed to read them later (machine, versions, raw times)."""

    config: CompareConfig
    runtime: str
    rows: tuple[CompareRow, ...]
    runs: tuple[RunRecord, ...]
    machine: str
    versions: dict[str, str]
    date: str
    reference: str | None = None
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> list[RunRecord]:
        return [run for run in self.runs if not run.finished]

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine, "date": self.date, "versions": self.versions, "runtime": self.runtime,
                "reference": self.reference, "settings": self.config.to_dict(),
                "models": [dataclasses.asdict(row) for row in self.rows],
                "runs": [run.to_dict() for run in self.runs], "timings": self.timings}


def pick_runtime(name: str) -> str:
    """`name`, checked to run here; 'auto' is onnxruntime when installed, else torch-fused.

    Raises:
        UnavailableError: the runtime asked for cannot run here (before anything is trained).
    """
    if name == "auto":
        return AUTO_RUNTIME if unavailable(AUTO_RUNTIME) is None else FALLBACK_RUNTIME
    reason = unavailable(name)
    if reason is not None:
        raise UnavailableError(f"runtime {name} cannot run here: {reason}")
    return name


def _specs(names: tuple[str, ...]) -> list[tuple[str, ModelSpec]]:
    """(what the user gave, its spec) per model, checked before anything trains; two models may not share a name."""
    specs, seen = [], {}
    for source in names:
        spec = model_spec(source)
        if spec.name in seen:
            raise ConfigError(f"models {seen[spec.name]!r} and {source!r} are both named {spec.name}: rename one "
                              f"(its config's \"name\")")
        seen[spec.name] = source
        specs.append((source, spec))
    return specs


def _prepare_output(config: CompareConfig) -> Path:
    """The output directory, with the comparison's settings; a resume must match them, a fresh start needs no runs."""
    output = Path(config.output).expanduser()
    settings_path, runs = output / SETTINGS_FILE, output / RUNS_DIR
    settings = json.loads(json.dumps(config.data_settings()))
    if config.resume is None and runs.is_dir() and any(runs.iterdir()):
        raise ConfigError(f"{output} already holds a comparison: --resume auto continues it (finished models are not "
                          f"retrained), or choose another --output")
    if config.resume is not None and settings_path.is_file():
        changed = _differences(json.loads(settings_path.read_text(encoding="utf-8")), settings)
        if changed:
            raise ConfigError(f"{output} was started with other settings ({', '.join(changed)} differ, see "
                              f"{settings_path}); resume with the same ones or choose another --output")
    runs.mkdir(parents=True, exist_ok=True)
    write_json(settings_path, settings)
    return output


def _differences(stored: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """The keys whose values differ, nested dicts key by key ('recipe.epochs')."""
    changed = []
    for key in sorted(set(stored) | set(now)):
        old, new = stored.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changed += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            changed.append(f"{prefix}{key}")
    return changed


def run_compare(config: CompareConfig = CompareConfig(), *, progress: bool | None = None) -> CompareResult:
    """Train every model of `config` for every seed, then time them all on the runtime (module docstring).

    Args:
        progress: progress bars of the timing; None = only on a terminal (training shows its own).
    """
    specs = _specs(config.models)
    runtime = pick_runtime(config.runtime)
    output = _prepare_output(config)
    plan = [(source, spec, seed, output / RUNS_DIR / run_dir_name(spec.name, seed))
            for (source, spec), seed in itertools.product(specs, config.seed_list)]
    for _, spec, _, run_dir in plan:
        check_run_model(run_dir, spec)
    logger.info("comparing %d model(s) x %d seed(s) on %s, %s recipe (%d epochs), latency on %s; output %s",
                len(specs), config.seeds, config.data or "the embedded digits", config.recipe.name,
                config.recipe.epochs, runtime, output)
    records = []
    for index, (source, spec, seed, run_dir) in enumerate(plan, 1):
        records.append(_train(config, index, len(plan), source, spec, seed, run_dir, records))
    rows, timings = _measure(config, runtime, specs, records, progress)
    reference = canonical_name(config.reference)
    reference = reference if any(row.model == reference for row in rows) else None
    return CompareResult(config=config, runtime=runtime, rows=tuple(_with_reference(rows, reference, config.mes)),
                         runs=tuple(records), machine=machine_line(), versions=versions([runtime]),
                         date=time.strftime("%Y-%m-%dT%H:%M:%S%z"), reference=reference, timings=timings)


def _train(config: CompareConfig, index: int, total: int, source: str, spec: ModelSpec, seed: int, run_dir: Path,
           done: list[RunRecord]) -> RunRecord:
    """One run, with a log line before and after it (the overall progress: run i of n)."""
    where = f"[{index}/{total}] {spec.name} seed {seed}"
    failed = sum(not record.finished for record in done)
    logger.info("%s: run %s (%d finished, %d failed so far)", where, run_dir, len(done) - failed, failed)
    job = TrainJob(output=str(run_dir), data=config.data, val_data=config.val_data, val_split=config.val_split,
                   on_bad_image=config.on_bad_image, model=source, recipe=config.recipe.replace(seed=seed),
                   teacher=config.teacher, resume=config.resume, device=config.device,
                   num_workers=config.num_workers, checkpoint_every=config.checkpoint_every,
                   keep_last=config.keep_last)
    record = train_run(job, spec.name, seed, spec)
    if record.status == FAILED:
        logger.warning("%s failed to train: %s (traceback in %s/error.txt); the other models go on", where,
                       record.error, run_dir)
    else:
        verb = "finished earlier, not retrained" if record.status == KEPT else "trained"
        logger.info("%s: %s, top-1 %.2f%% top-5 %.2f%% in %.0f s", where, verb, record.top1, record.top5,
                    record.training_s or 0.0)
    return record


def _measure(config: CompareConfig, runtime: str, specs: list[tuple[str, ModelSpec]], records: list[RunRecord],
             progress: bool | None) -> tuple[list[CompareRow], dict[str, dict[str, Any]]]:
    """Time the trained models together on the runtime; one row per model."""
    size = (config.recipe.img_size, config.recipe.img_size)
    models: list[BenchModel] = []
    errors: dict[str, str] = {}
    for _, spec in specs:
        finished = [record for record in records if record.model == spec.name and record.finished]
        if not finished:
            continue
        try:
            module = load_model(finished[0].weights, device="cpu")
            models.append(BenchModel(spec.name, model_label(spec), family_of(spec), module,
                                     *model_counts(module, size)))
        except Exception as error:  # a run's weights that cannot be loaded: report it, time the others
            errors[spec.name] = f"latency: {type(error).__name__}: {error}"
    timings: dict[str, Timing] = {}
    if models:
        logger.info("timing %d trained model(s) on %s, %d thread(s), interleaved", len(models), runtime,
                    config.threads)
        bench = BenchConfig(models=tuple(model.name for model in models), runtimes=(runtime,), batch=1,
                            throughput_batch=None, img_size=size, threads=config.threads, warmup=config.warmup,
                            repeats=config.repeats, num_classes=max(model.module.num_classes for model in models),
                            mes=config.mes)
        with torch_threads(), tempfile.TemporaryDirectory(prefix="efficientformer-compare-") as workdir:
            measured, failed = measure_runtime(runtime, models, bench, config.threads, Path(workdir), progress)
        timings = {name: timing for (name, _), timing in measured.items()}
        errors.update({name: f"latency: {message}" for name, message in failed.items()})
    counted = {model.name: model for model in models}
    rows = [_row(config, runtime, source, spec, [r for r in records if r.model == spec.name],
                 counted.get(spec.name), timings.get(spec.name), errors.get(spec.name)) for source, spec in specs]
    return rows, {name: timing.to_dict() for name, timing in timings.items()}


def _spread(values: list[float]) -> tuple[float | None, float | None, float | None]:
    """(mean, min, max), or Nones when nothing finished."""
    if not values:
        return None, None, None
    return statistics.fmean(values), min(values), max(values)


def _row(config: CompareConfig, runtime: str, source: str, spec: ModelSpec, runs: list[RunRecord],
         model: BenchModel | None, timing: Timing | None, latency_error: str | None) -> CompareRow:
    finished = [run for run in runs if run.finished]
    problems = [f"seed {run.seed}: {run.error}" for run in runs if not run.finished]
    if latency_error:
        problems.append(latency_error)
    top1, top1_min, top1_max = _spread([run.top1 for run in finished])
    top5, top5_min, top5_max = _spread([run.top5 for run in finished])
    times = [run.training_s for run in finished if run.training_s is not None]
    counts = {} if model is None else {"params": model.params, "params_deployed": model.params_deployed,
                                       "macs": model.macs}
    latency = {} if timing is None else {
        "median_ms": timing.median_ms, "p90_ms": timing.p90_ms,
        "mes": mobile_efficiency_score(model.params_deployed, timing.median_ms, config.mes)}
    return CompareRow(model=spec.name, label=model_label(spec), family=family_of(spec), source=source,
                      seeds=" ".join(str(run.seed) for run in finished), runs=len(finished),
                      img_size=f"{config.recipe.img_size}x{config.recipe.img_size}", runtime=runtime,
                      threads=config.threads, **counts, top1=top1, top1_min=top1_min, top1_max=top1_max, top5=top5,
                      top5_min=top5_min, top5_max=top5_max, **latency,
                      training_s=statistics.fmean(times) if times else None,
                      error="; ".join(problems) if problems else None)


def _with_reference(rows: list[CompareRow], reference: str | None, mes: MESConstants) -> list[CompareRow]:
    """MES with the reference model's deployed params and latency as units (it scores `mes.score`)."""
    base = next((row for row in rows if row.model == reference and row.median_ms is not None), None)
    if base is None:
        return rows
    relative = mes.relative_to(base.params_deployed, base.median_ms)
    return [dataclasses.replace(row, mes_vs_reference=mobile_efficiency_score(row.params_deployed, row.median_ms,
                                                                              relative))
            if row.median_ms is not None else row for row in rows]


__all__ = ["DEFAULT_MODELS", "CompareConfig", "CompareResult", "CompareRow", "pick_runtime", "run_compare"]
