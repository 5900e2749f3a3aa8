"""Measuring one runtime at one thread count: in this process, or in a fresh subprocess of its own.

Isolation (`BenchConfig.isolate`): a spawned process has loaded nothing but torch and the one runtime
being timed, so no other runtime's thread pool (onnxruntime's spinning workers, ExecuTorch's and
OpenVINO's pools, torch's OpenMP team) or allocator shares the cores with it.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import TYPE_CHECKING

from efficientformer.bench.runtimes import RUNTIMES, Preparation, TimedCall, set_threads
from efficientformer.bench.timing import Timing, time_interleaved
from efficientformer.utils.progress import progress_bar

if TYPE_CHECKING:
    from efficientformer.bench.run import BenchConfig, BenchModel


def _prepare(runtime: str, models: list[BenchModel], config: BenchConfig, threads: int, workdir: Path,
             progress: bool | None) -> tuple[dict[int, dict[str, TimedCall]], dict[str, str]]:
    """Timed callables per batch and model, and the errors of those that failed to prepare or to run once.

    A failure at one batch (e.g. the throughput batch) leaves the model's other batches measured.
    """
    calls: dict[int, dict[str, TimedCall]] = {batch: {} for batch in config.batches}
    errors: dict[str, str] = {}
    with progress_bar(disable=None if progress is None else not progress) as bar:
        task = bar.add_task(f"prepare {runtime} ({threads} thread{'s' if threads > 1 else ''})", total=len(models))
        for model in models:
            try:
                loader = RUNTIMES[runtime].prepare(
                    model.module, Preparation(model.name, config.img_size, threads, workdir, config.approximate))
            except Exception as error:  # any runtime's export/load error: report it and bench the others
                errors[model.name] = f"{type(error).__name__}: {error}"
                bar.advance(task)
                continue
            for batch in config.batches:
                try:
                    call = loader(batch)
                    call()  # fail here, not in the middle of the interleaved rounds
                    calls[batch][model.name] = call
                except Exception as error:
                    where = f"batch {batch}: " if len(config.batches) > 1 else ""
                    errors[model.name] = f"{where}{type(error).__name__}: {error}"
            bar.advance(task)
    return calls, errors


Measured = tuple[dict[tuple[str, int], Timing], dict[str, str]]


def measure_runtime(runtime: str, models: list[BenchModel], config: BenchConfig, threads: int, workdir: Path,
                    progress: bool | None = None) -> Measured:
    """Prepare and time every model on one runtime at one thread count, in this process.

    Returns ({(model name, batch): Timing}, {model name: error}).
    """
    set_threads(threads)
    calls, errors = _prepare(runtime, models, config, threads, workdir, progress)
    timings: dict[tuple[str, int], Timing] = {}
    for batch in config.batches:
        if calls[batch]:
            measured = time_interleaved(calls[batch], warmup=config.warmup, repeats=config.repeats_for(batch),
                                        progress=progress, description=f"{runtime} {threads}t batch {batch}")
            timings.update({(name, batch): timing for name, timing in measured.items()})
    return timings, errors


def measure_isolated(runtime: str, config: BenchConfig, threads: int, workdir: Path,
                      progress: bool | None) -> Measured:
    """`measure_runtime` in a fresh (spawned) process: nothing of the other runtimes is loaded there."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_isolated_worker, (runtime, config, threads, str(workdir), progress))


def _isolated_worker(runtime: str, config: BenchConfig, threads: int, workdir: str, progress: bool | None) -> Measured:
    from efficientformer.bench.run import build_models  # bench.run imports this module

    return measure_runtime(runtime, build_models(config), config, threads, Path(workdir), progress)


__all__ = ["Measured", "measure_isolated", "measure_runtime"]
