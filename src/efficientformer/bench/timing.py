"""The one latency harness: warm-up, then interleaved repetitions, so machine noise hits every callable alike.

`time_interleaved({"a": fa, "b": fb})` calls each callable `warmup` times, then runs `repeats`
rounds; each round calls every callable once, starting one further along each round (round r
runs names[r:] + names[:r], modulo their number). A burst of noise (another process, a frequency
change) therefore lands on all callables instead of on whichever one happened to be timed then.
Each call is timed alone with `time.perf_counter`; statistics are over the per-call times.

The callables take no arguments and must do the whole work (bind inputs with a closure or
functools.partial); what they return is discarded. The harness knows nothing about torch: wrap a
model call in `torch.inference_mode()` inside the callable (`bench.runtimes` does).
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from efficientformer.errors import ConfigError
from efficientformer.utils.progress import progress_bar


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"percentile q must be in [0, 1], got {q!r}")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Timing:
    """The per-call times (ms) of one measured callable, in the order they were taken."""

    name: str
    times_ms: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.times_ms:
            raise ValueError(f"Timing {self.name!r} has no times")

    @property
    def repeats(self) -> int:
        return len(self.times_ms)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def p90_ms(self) -> float:
        return percentile(self.times_ms, 0.9)

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.times_ms)

    @property
    def min_ms(self) -> float:
        return min(self.times_ms)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON: the statistics and the raw times."""
        return {"name": self.name, "repeats": self.repeats, "median_ms": self.median_ms, "p90_ms": self.p90_ms,
                "mean_ms": self.mean_ms, "min_ms": self.min_ms, "times_ms": list(self.times_ms)}


def rotation(names: Sequence[str], round_index: int) -> list[str]:
    """The call order of one round: `names` rotated left by `round_index`."""
    if not names:
        return []
    shift = round_index % len(names)
    return list(names[shift:]) + list(names[:shift])


def time_interleaved(fns: Mapping[str, Callable[[], object]], *, warmup: int = 3, repeats: int = 20,
                     progress: bool | None = None, description: str = "timing",
                     clock: Callable[[], float] = time.perf_counter, collect_garbage: bool = True
                     ) -> dict[str, Timing]:
    """Time every callable of `fns` over interleaved rounds; returns a Timing per name, in `fns` order.

    Args:
        fns: name -> zero-argument callable doing one measured unit of work.
        warmup: untimed calls of each callable before the first round (one-time costs: allocation,
            lazy compilation, caches); they run callable by callable in `fns` order.
        repeats: timed rounds; every callable is called once per round, in a rotating order.
        progress: show a progress bar over all calls (warm-up included); None = only on a terminal.
        description: the bar's label.
        clock: a monotonic clock in seconds (time.perf_counter; tests pass a fake one).
        collect_garbage: run the garbage collector once after warm-up and keep it off while timing,
            so that a collection does not land inside one callable's time.
    """
    if warmup < 0:
        raise ConfigError(f"warmup must be >= 0, got {warmup!r}")
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats!r}")
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    if not names:
        return {}
    with progress_bar(disable=None if progress is None else not progress) as bar:
        task = bar.add_task(description, total=len(names) * (warmup + repeats))
        for name in names:
            for _ in range(warmup):
                fns[name]()
                bar.advance(task)
        gc_was_enabled = gc.isenabled()
        if collect_garbage:
            gc.collect()
            gc.disable()
        try:
            for round_index in range(repeats):
                for name in rotation(names, round_index):
                    fn = fns[name]
                    start = clock()
                    fn()
                    times[name].append((clock() - start) * 1e3)
                    bar.advance(task)
        finally:
            if collect_garbage and gc_was_enabled:
                gc.enable()
    return {name: Timing(name, tuple(values)) for name, values in times.items()}


__all__ = ["Timing", "time_interleaved"]
