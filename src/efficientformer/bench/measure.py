"""Measuring one runtime at one thread count: in this process, or in a fresh subprocess of its own.

Isolation (`BenchConfig.isolate`): a fresh process has loaded nothing but torch and the one runtime
being timed, so no other runtime's thread pool (onnxruntime's spinning workers, ExecuTorch's and
OpenVINO's pools, torch's OpenMP team) or allocator shares the cores with it.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
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
    """`measure_runtime` in a fresh Python process: nothing of the other runtimes is loaded there.

    The arguments and the result travel as pickles of our own objects through files in `workdir`
    (written and read only by this function and its child).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    request, reply = workdir / "measure_request.pkl", workdir / "measure_result.pkl"
    request.write_bytes(pickle.dumps((runtime, config, threads, str(workdir), progress)))
    code = f"from efficientformer.bench.measure import _child; _child({str(request)!r}, {str(reply)!r})"
    # The child's output (progress bars, warnings) goes where ours goes.
    result = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
    if result.returncode != 0 or not reply.is_file():
        raise RuntimeError(f"measuring {runtime} at {threads} thread(s) in a subprocess failed with exit code "
                           f"{result.returncode} (its output is above)")
    return pickle.loads(reply.read_bytes())


def _child(request: str, reply: str) -> None:
    from efficientformer.bench.run import build_models  # bench.run imports this module

    runtime, config, threads, workdir, progress = pickle.loads(Path(request).read_bytes())
    measured = measure_runtime(runtime, build_models(config), config, threads, Path(workdir), progress)
    Path(reply).write_bytes(pickle.dumps(measured))


__all__ = ["Measured", "measure_isolated", "measure_runtime"]
