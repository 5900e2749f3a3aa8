"""Measuring runtimes at one thread count: in this process, or in a fresh subprocess of their own.

Isolation (`BenchConfig.isolate`): a fresh process has loaded nothing but torch and the one runtime
being timed, so no other runtime's thread pool (onnxruntime's spinning workers, ExecuTorch's and
OpenVINO's pools, torch's OpenMP team) or allocator shares the cores with it. The torch runtimes
(eager, fused, compiled) share one pool anyway and are timed together, in the same interleaved
rounds (`measurement_groups`), so that their speed-ups over eager compare the same moments.

Parity: each model's latency-batch callable is also run on the parity images (export/parity.py: the
sample photo and synthetic pictures, preprocessed) and its logits compared with the unfused eager
model's, so every row says how far that runtime's graph (with any opt-in approximation) is from eager.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from efficientformer.bench.runtimes import RUNTIMES, Preparation, TimedCall, set_threads
from efficientformer.bench.timing import Timing, time_interleaved
from efficientformer.export.parity import ParityReport, compare_outputs, eager_outputs, eval_crop_pct, parity_images
from efficientformer.utils.progress import progress_bar

if TYPE_CHECKING:
    from efficientformer.bench.run import BenchConfig, BenchModel


# Parity images per model: the sample photo and this many synthetic pictures.
PARITY_SYNTHETIC = 7
# The tolerance the exact graphs are held to in the tests (a report's `passed`; bench flags nothing).
PARITY_ATOL = 1e-4


@dataclass(frozen=True)
class GroupMeasurement:
    """What measuring some runtimes at one thread count gives, keyed by runtime and model name.

    Attributes:
        timings: (runtime, model, batch) -> Timing.
        errors: (runtime, model) -> why it failed to prepare, to run once, or to run the parity images.
        parity: (runtime, model) -> the latency-batch callable's logits against unfused eager's.
    """

    timings: dict[tuple[str, str, int], Timing] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    parity: dict[tuple[str, str], ParityReport] = field(default_factory=dict)


def _reference(model: BenchModel, config: BenchConfig) -> tuple[torch.Tensor, np.ndarray]:
    """The parity images at the bench's size and unfused eager's logits on them."""
    images = parity_images(config.img_size, PARITY_SYNTHETIC, crop_pct=eval_crop_pct(model.module))
    return images, eager_outputs(model.module, images)


def _parity(call: TimedCall, reference: tuple[torch.Tensor, np.ndarray], batch: int) -> ParityReport | None:
    """`call`'s logits against eager's on the parity images, run `batch` at a time (the file's static shape);
    None when the callable cannot run other inputs (it is not one of the runtime layer's)."""
    run = getattr(call, "run", None)
    if run is None:
        return None
    images, expected = reference
    count = len(images)
    padded = images[torch.arange(-(-count // batch) * batch) % count]  # whole batches: the first images again
    outputs = np.concatenate([run(padded[start:start + batch]) for start in range(0, len(padded), batch)])
    return compare_outputs(expected, outputs[:count], atol=PARITY_ATOL, format="logits", runtime="")


def _prepare(runtimes: Sequence[str], models: list[BenchModel], config: BenchConfig, threads: int, workdir: Path,
             progress: bool | None, parity: bool) -> tuple[dict[int, dict[str, TimedCall]], GroupMeasurement]:
    """Timed callables per batch, keyed "runtime/model", and a GroupMeasurement with the errors of those that
    failed and (with `parity`) the parity of each latency-batch callable.

    A failure at one batch (e.g. the throughput batch) leaves the model's other batches measured.
    """
    calls: dict[int, dict[str, TimedCall]] = {batch: {} for batch in config.batches}
    found = GroupMeasurement()
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
                    found.errors[runtime, model.name] = f"{type(error).__name__}: {error}"
                    bar.advance(task)
                    continue
                for batch in config.batches:
                    where = f"batch {batch}: " if len(config.batches) > 1 else ""
                    try:
                        call = loader(batch)
                        call()  # fail here, not in the middle of the interleaved rounds
                    except Exception as error:
                        found.errors[runtime, model.name] = f"{where}{type(error).__name__}: {error}"
                        continue
                    calls[batch][f"{runtime}/{model.name}"] = call
                bar.advance(task)
    if parity:
        references = {model.name: _reference(model, config) for model in models}
        for key, call in calls[config.batch].items():
            runtime, name = key.split("/", 1)
            try:
                report = _parity(call, references[name], config.batch)
            except Exception as error:  # timed all the same; the row says why parity is missing
                found.errors[runtime, name] = f"parity: {type(error).__name__}: {error}"
                continue
            if report is not None:
                found.parity[runtime, name] = report
    return calls, found


Measured = tuple[dict[tuple[str, int], Timing], dict[str, str]]


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
                     workdir: Path, progress: bool | None = None, *, parity: bool = True) -> GroupMeasurement:
    """Prepare every model on each of `runtimes` at one thread count, in this process, check its logits
    against unfused eager's (with `parity`), and time all of them in the same interleaved rounds."""
    set_threads(threads)
    runtimes = tuple(runtimes)
    calls, found = _prepare(runtimes, models, config, threads, workdir, progress, parity)
    for batch in config.batches:
        if calls[batch]:
            measured = time_interleaved(calls[batch], warmup=config.warmup, repeats=config.repeats_for(batch),
                                        progress=progress,
                                        description=f"{', '.join(runtimes)} {threads}t batch {batch}")
            for key, timing in measured.items():
                runtime, name = key.split("/", 1)
                found.timings[runtime, name, batch] = Timing(name, timing.times_ms)
    return found


def measure_runtime(runtime: str, models: list[BenchModel], config: BenchConfig, threads: int, workdir: Path,
                    progress: bool | None = None) -> Measured:
    """Prepare and time every model on one runtime at one thread count, in this process.

    Returns ({(model name, batch): Timing}, {model name: error}); no parity check.
    """
    found = measure_together((runtime,), models, config, threads, workdir, progress, parity=False)
    return ({(name, batch): timing for (_, name, batch), timing in found.timings.items()},
            {name: message for (_, name), message in found.errors.items()})


def measure_isolated(runtimes: Sequence[str], config: BenchConfig, threads: int, workdir: Path,
                     progress: bool | None) -> GroupMeasurement:
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


__all__ = ["PARITY_ATOL", "PARITY_SYNTHETIC", "GroupMeasurement", "Measured", "measure_isolated", "measure_runtime",
           "measure_together", "measurement_groups"]
