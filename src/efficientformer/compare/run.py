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

`pretrained='all'` starts every model from its published weights through the training job's own
`pretrained` option (compare/pretrained.py; a model without weights stops the comparison before any
training), `'available'` those that have them (the others from scratch, named in the `start` column).

Under torchrun every process runs `run_compare`: each run trains distributed through the training
job as `efficientformer train` does, rank 0 alone writes the comparison's files, and only rank 0
times latency and returns rows (the others return a result with `is_main` False and no rows).

`resume='auto'` makes a comparison resumable per model: finished runs are not retrained, a killed
one continues from its newest state; latency is measured again (it needs every model in one call).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from efficientformer.bench.measure import measure_runtime
from efficientformer.bench.mes import PAPER_MES, MESConstants
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
from efficientformer.compare.pretrained import check_mode, fetch, start_weights
from efficientformer.compare.rows import CompareRow, model_row, with_reference
from efficientformer.compare.runs import FAILED, KEPT, RunRecord, check_run_model, run_dir_name, train_run
from efficientformer.compare.settings import RUNS_DIR, check_output, write_output
from efficientformer.data.datasets import DEFAULT_VAL_SPLIT
from efficientformer.errors import ConfigError, UnavailableError, UserError
from efficientformer.factory import load_model
from efficientformer.models.spec import ModelSpec, family_of
from efficientformer.train.distributed import (
    DistInfo,
    barrier,
    cleanup,
    gather_strings,
    init_distributed,
    resolve_device,
)
from efficientformer.train.job import TrainJob
from efficientformer.train.recipes import DEFAULT, TrainRecipe
from efficientformer.utils.machine import machine_line
from efficientformer.utils.threads import threads as torch_threads

DEFAULT_MODELS = ("efficientformerv2_s0", "mobilenetv2_100")
AUTO_RUNTIME, FALLBACK_RUNTIME = "onnxruntime", "torch-fused"
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
        pretrained: None (every model from scratch), 'all' (every model from its published weights; one
            without is a ConfigError before anything trains) or 'available' (those with weights from
            them, the others from scratch); compare/pretrained.py.
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
    pretrained: str | None = None
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
        check_mode(self.pretrained)
        if self.resume not in (None, "auto"):
            raise ConfigError(f"CompareConfig.resume must be None or 'auto', got {self.resume!r} (each model's run "
                              f"continues from its own newest state)")

    @property
    def seed_list(self) -> tuple[int, ...]:
        return tuple(self.recipe.seed + offset for offset in range(self.seeds))

    def data_settings(self) -> dict[str, Any]:
        """What every run of one comparison must share (checked on resume): data, split, start weights and recipe
        but the seed."""
        recipe = {key: value for key, value in self.recipe.to_dict().items() if key != "seed"}
        return {"data": self.data, "val_data": self.val_data, "val_split": self.val_split,
                "on_bad_image": self.on_bad_image, "pretrained": self.pretrained, "recipe": recipe}

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**data, "models": list(self.models), "recipe": self.recipe.to_dict(),
                "mes": dataclasses.asdict(self.mes)}


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
    is_main: bool = True  # False on torchrun's other ranks: they trained, rank 0 has the rows

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


def run_compare(config: CompareConfig = CompareConfig(), *, progress: bool | None = None) -> CompareResult:
    """Train every model of `config` for every seed, then time them all on the runtime (module docstring).

    Args:
        progress: progress bars of the timing; None = only on a terminal (training shows its own).
    """
    specs = _specs(config.models)
    runtime = pick_runtime(config.runtime)
    tags = start_weights([spec for _, spec in specs], config.pretrained)
    output = Path(config.output).expanduser()
    plan = [(source, spec, seed, output / RUNS_DIR / run_dir_name(spec.name, seed))
            for (source, spec), seed in itertools.product(specs, config.seed_list)]
    info, _ = init_distributed(resolve_device(config.device))
    try:
        check_output(output, config.data_settings(), config.resume)  # every rank reads, none writes yet
        for _, spec, _, run_dir in plan:
            check_run_model(run_dir, spec)
        barrier(info)
        _on_main(info, lambda: (write_output(output, config.data_settings()), fetch(tags)))
        if info.is_main:
            _log_start(config, specs, tags, runtime, output)
        records: list[RunRecord] = []
        for index, (source, spec, seed, run_dir) in enumerate(plan, 1):
            records.append(_train(config, info, (index, len(plan)), source, spec, seed, run_dir, tags[spec.name],
                                  records))
    finally:
        cleanup(info)  # the comparison's group: every run's training job joins it and leaves it standing
    if not info.is_main:
        return CompareResult(config=config, runtime=runtime, rows=(), runs=tuple(records), machine="", versions={},
                             date="", is_main=False)
    rows, timings = _measure(config, runtime, specs, records, tags, progress)
    reference = canonical_name(config.reference)
    reference = reference if any(row.model == reference for row in rows) else None
    return CompareResult(config=config, runtime=runtime, rows=tuple(with_reference(rows, reference, config.mes)),
                         runs=tuple(records), machine=machine_line(), versions=versions([runtime]),
                         date=time.strftime("%Y-%m-%dT%H:%M:%S%z"), reference=reference, timings=timings)


def _on_main(info: DistInfo, action: Callable[[], object]) -> None:
    """`action` on rank 0 only; when it fails there every rank raises, so that none waits for a rank 0 that stopped
    (a collective call: every rank must make it)."""
    error = None
    if info.is_main:
        try:
            action()
        except Exception as caught:  # shared with the other ranks, then raised as it was
            error = caught
    messages = gather_strings([] if error is None else [f"{type(error).__name__}: {error}"], info)
    if error is not None:
        raise error
    if messages:
        raise UserError(f"rank 0 stopped the comparison: {messages[0]}")


def _log_start(config: CompareConfig, specs: list[tuple[str, ModelSpec]], tags: dict[str, str | None],
               runtime: str, output: Path) -> None:
    logger.info("comparing %d model(s) x %d seed(s) on %s, %s recipe (%d epochs), latency on %s; output %s",
                len(specs), config.seeds, config.data or "the embedded digits", config.recipe.name,
                config.recipe.epochs, runtime, output)
    scratch = [name for name, tag in tags.items() if tag is None]
    if config.pretrained is not None and scratch:
        logger.warning("no published weights for %s: trained from scratch, the others from their weights",
                       ", ".join(scratch))


def _train(config: CompareConfig, info: DistInfo, position: tuple[int, int], source: str, spec: ModelSpec, seed: int,
           run_dir: Path, pretrained: str | None, done: list[RunRecord]) -> RunRecord:
    """One run (distributed under torchrun, through the training job), with a log line before and after it on
    rank 0 (the overall progress: run i of n)."""
    where = f"[{position[0]}/{position[1]}] {spec.name} seed {seed}"
    failed = sum(not record.finished for record in done)
    if info.is_main:
        start = "" if pretrained is None else f" from {pretrained}"
        logger.info("%s: run %s%s (%d finished, %d failed so far)", where, run_dir, start, len(done) - failed, failed)
    job = TrainJob(output=str(run_dir), data=config.data, val_data=config.val_data, val_split=config.val_split,
                   on_bad_image=config.on_bad_image, model=source, recipe=config.recipe.replace(seed=seed),
                   pretrained=pretrained, teacher=config.teacher, resume=config.resume, device=config.device,
                   num_workers=config.num_workers, checkpoint_every=config.checkpoint_every,
                   keep_last=config.keep_last)
    record = train_run(job, spec.name, seed, spec, writes=info.is_main)
    if not info.is_main:
        return record
    if record.status == FAILED:
        logger.warning("%s failed to train: %s (traceback in %s/error.txt); the other models go on", where,
                       record.error, run_dir)
    else:
        verb = "finished earlier, not retrained" if record.status == KEPT else "trained"
        logger.info("%s: %s, top-1 %.2f%% top-5 %.2f%% in %.0f s", where, verb, record.top1, record.top5,
                    record.training_s or 0.0)
    return record


def _measure(config: CompareConfig, runtime: str, specs: list[tuple[str, ModelSpec]], records: list[RunRecord],
             tags: dict[str, str | None], progress: bool | None) -> tuple[list[CompareRow], dict[str, dict[str, Any]]]:
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
    rows = [model_row(config, runtime, source, spec, [r for r in records if r.model == spec.name],
                      counted.get(spec.name), timings.get(spec.name), errors.get(spec.name), tags[spec.name])
            for source, spec in specs]
    return rows, {name: timing.to_dict() for name, timing in timings.items()}


__all__ = ["DEFAULT_MODELS", "CompareConfig", "CompareResult", "pick_runtime", "run_compare"]
