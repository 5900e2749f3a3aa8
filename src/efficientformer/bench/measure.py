"""Measuring runtimes at one thread count: in this process, or in a fresh subprocess of their own.

Isolation (`BenchConfig.isolate`): a fresh process has loaded nothing but torch and the one runtime
being timed, so no other runtime's thread pool (onnxruntime's spinning workers, ExecuTorch's and
OpenVINO's pools, torch's OpenMP team) or allocator shares the cores with it. The torch runtimes
(eager, fused, compiled) share one pool anyway and are timed together, in the same interleaved
rounds (`measurement_groups`), so that their speed-ups over eager compare the same moments.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from efficientformer.bench.runtimes import RUNTIMES, Preparation, TimedCall, set_threads
from efficientformer.bench.timing import Timing, time_interleaved
from efficientformer.utils.progress import progress_bar

if TYPE_CHECKING:
    from efficientformer.bench.run import BenchConfig, BenchModel


def _prepare(runtimes: Sequence[str], models: list[BenchModel], config: BenchConfig, threads: int, workdir: Path,
             progress: bool | None) -> tuple[dict[int, dict[str, TimedCall]], dict[tuple[str, str], str]]:
    """Timed callables per batch, keyed "runtime/model", and the errors of those that failed to prepare or to
    run once, keyed (runtime, model).

    A failure at one batch (e.g. the throughput batch) leaves the model's other batches measured.
    """
    calls: dict[int, dict[str, TimedCall]] = {batch: {} for batch in config.batches}
    errors: dict[tuple[str, str], str] = {}
    plural = "s" if threads > 1 else ""
    with progress_bar(disable=None if progress is None else not progress) as bar:
        task = bar.add_task(f"prepare {', '.join(runtimes)} ({threads} thread{plural})",
                            total=len(runtimes) * len(models))
        for runtime in runtimes:
            for model in models:
                try:
                    loader = RUNTIMES[runtime].prepare(
                        model.module, Preparation(model.name, config.img_size, threads, workdir, config.approximate))
                except Exception as error:  # any runtime's export/load error: report it and bench the others
                    errors[runtime, model.name] = f"{type(error).__name__}: {error}"
                    bar.advance(task)
                    continue
                for batch in config.batches:
                    try:
                        call = loader(batch)
                        call()  # fail here, not in the middle of the interleaved rounds
                        calls[batch][f"{runtime}/{model.name}"] = call
                    except Exception as error:
                        where = f"batch {batch}: " if len(config.batches) > 1 else ""
                        errors[runtime, model.name] = f"{where}{type(error).__name__}: {error}"
                bar.advance(task)
    return calls, errors


Measured = tuple[dict[tuple[str, int], Timing], dict[str, str]]
MeasuredGroup = tuple[dict[tuple[str, str, int], Timing], dict[tuple[str, str], str]]


def measurement_groups(runtimes: Sequence[str]) -> list[tuple[str, ...]]:
    """`runtimes` split into the groups that are timed together, in order of first appearance.

    Runtimes of one `Runtime.group` share one thread pool (the torch ones: eager, fused, compiled), so
    timing them in the same interleaved rounds disturbs nothing and makes their ratios (the speed-up
    over torch-eager) compare the same moments. Every other runtime is timed alone.
    """
    groups: dict[str, list[str]] = {}
    for name in runtimes:
        groups.setdefault(RUNTIMES[name].group or name, []).append(name)
    return [tuple(members) for members in groups.values()]


def measure_together(runtimes: Sequence[str], models: list[BenchModel], config: BenchConfig, threads: int,
                     workdir: Path, progress: bool | None = None) -> MeasuredGroup:
    """Prepare every model on each of `runtimes` at one thread count, in this process, and time all of
    them in the same interleaved rounds.

    Returns ({(runtime, model name, batch): Timing}, {(runtime, model name): error}).
    """
    set_threads(threads)
    runtimes = tuple(runtimes)
    calls, errors = _prepare(runtimes, models, config, threads, workdir, progress)
    timings: dict[tuple[str, str, int], Timing] = {}
    for batch in config.batches:
        if calls[batch]:
            measured = time_interleaved(calls[batch], warmup=config.warmup, repeats=config.repeats_for(batch),
                                        progress=progress,
                                        description=f"{', '.join(runtimes)} {threads}t batch {batch}")
            for key, timing in measured.items():
                runtime, name = key.split("/", 1)
                timings[runtime, name, batch] = Timing(name, timing.times_ms)
    return timings, errors


def measure_runtime(runtime: str, models: list[BenchModel], config: BenchConfig, threads: int, workdir: Path,
                    progress: bool | None = None) -> Measured:
    """Prepare and time every model on one runtime at one thread count, in this process.

    Returns ({(model name, batch): Timing}, {model name: error}).
    """
    timings, errors = measure_together((runtime,), models, config, threads, workdir, progress)
    return ({(name, batch): timing for (_, name, batch), timing in timings.items()},
            {name: message for (_, name), message in errors.items()})


def measure_isolated(runtimes: Sequence[str], config: BenchConfig, threads: int, workdir: Path,
                     progress: bool | None) -> MeasuredGroup:
    """`measure_together` in a fresh Python process: nothing of the other runtimes is loaded there.

    The arguments and the result travel as pickles of our own objects through files in `workdir`
    (written and read only by this function and its child).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    request, reply = workdir / "measure_request.pkl", workdir / "measure_result.pkl"
    runtimes = tuple(runtimes)
    request.write_bytes(pickle.dumps((runtimes, config, threads, str(workdir), progress)))
    code = f"from efficientformer.bench.measure import _child; _child({str(request)!r}, {str(reply)!r})"
    # The child's output (progress bars, warnings) goes where ours goes.
    result = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
    if result.returncode != 0 or not reply.is_file():
        raise RuntimeError(f"measuring {', '.join(runtimes)} at {threads} thread(s) in a subprocess failed with "
                           f"exit code {result.returncode} (its output is above)")
    return pickle.loads(reply.read_bytes())


def _child(request: str, reply: str) -> None:
    from efficientformer.bench.run import build_models  # bench.run imports this module

    runtimes, config, threads, workdir, progress = pickle.loads(Path(request).read_bytes())
    measured = measure_together(runtimes, build_models(config), config, threads, Path(workdir), progress)
    Path(reply).write_bytes(pickle.dumps(measured))


__all__ = ["Measured", "MeasuredGroup", "measure_isolated", "measure_runtime", "measure_together", "measurement_groups"]
