"""Latency lookup table (docs/search.md): per-entry latencies measured on this machine, summed per subnet.

    table = build_lut(TINY_SPACE, "torch-fused", img_size=64, path="lut.json")   # resumable
    table = LatencyTable.load("lut.json")
    table.predict(config)                                                         # ms, sum of entries

A subnet decomposes (`decompose`) into entries (stem, downsamples, the attention and FFN halves of
blocks, head), each a module built standalone and timed alone at batch 1; what they are and where
they sit is search/lut_entries.py. Runtimes:
`torch-eager` (eval mode), `torch-fused` (`models.fuse`: BN/scales folded) and `onnxruntime`
(each entry exported alone, fused, static batch 1, CPU provider). Timing is `bench.timing`'s one
harness, entries interleaved in chunks; after every chunk the JSON file is rewritten atomically,
so a killed build resumes where it stopped and never re-measures a finished entry.

Additivity is checked by `lut_validate.validate_lut`. What the plain sum misses is fitted on
calibration networks (`lut_validate.calibrate`, never the validation ones) as three terms that
`predict` applies: `scale * sum + ms_per_mparam * params / 1e6 + overhead_ms`. `ms_per_mparam` is the
cost of cold weights: timed alone, an entry finds its weights in the core's L2 cache (2 MB per core
here), while inside a network every layer's weights were evicted by the rest of the network and come
from L3 or memory; it is largest for the weight-heavy 14x14 and 7x7 stages. `overhead_ms` is per-network
dispatch, `scale` the machine's speed since the entries were timed (docs/search.md, "Latency table").
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from efficientformer.bench.timing import time_interleaved
from efficientformer.errors import BadFileError, ConfigError, MissingFileError, UnknownNameError
from efficientformer.models.config import ModelConfig
from efficientformer.search.lut_entries import (
    BASE_FIELDS,
    KINDS,
    EntrySpec,
    ParamCounter,
    build_entry,
    decompose,
    entry_params,
    example_input,
    space_entries,
)
from efficientformer.search.runtimes import RUNTIMES, Preparer, clock_function, runtime_versions
from efficientformer.search.space import SearchSpace
from efficientformer.utils.io import atomic_write
from efficientformer.utils.machine import cpu_name, machine_line
from efficientformer.utils.progress import progress_bar
from efficientformer.utils.sizes import to_pair
from efficientformer.utils.threads import threads as torch_threads

FORMAT = "efficientformer-lut/1"
# The fitted terms of LatencyTable.predict: scale * sum + ms_per_mparam * params / 1e6 + overhead_ms.
CALIBRATION_TERMS = ("scale", "ms_per_mparam", "overhead_ms")


@dataclass
class LatencyTable:
    """Measured entries (key -> median ms) plus the header saying where and how they were measured."""

    header: dict[str, Any]
    entries: dict[str, dict[str, Any]]
    path: Path | None = None
    _params: ParamCounter | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def runtime(self) -> str:
        return self.header["runtime"]

    @property
    def calibration(self) -> dict[str, float]:
        """The fitted terms of `predict` (CALIBRATION_TERMS); the plain sum until `lut_validate.calibrate` ran."""
        fitted = self.header.get("calibration")
        if fitted:
            return {term: float(fitted[term]) for term in CALIBRATION_TERMS}
        return {"scale": 1.0, "ms_per_mparam": 0.0, "overhead_ms": 0.0}

    @property
    def overhead_ms(self) -> float:
        """The fitted per-network constant (0 until calibrated)."""
        return self.calibration["overhead_ms"]

    def _where(self) -> str:
        return f"latency table {self.path}" if self.path else "the latency table"

    def check_config(self, config: ModelConfig) -> None:
        """Raise when `config` differs from the table in a field the entries were built with."""
        base = self.header["base"]
        for name in BASE_FIELDS:
            if getattr(config, name) != base[name]:
                raise ConfigError(f"{config.name}.{name} is {getattr(config, name)!r} but {self._where()} was measured "
                                 f"with {base[name]!r}")
        if list(config.img_size) != list(self.header["img_size"]):
            raise ConfigError(f"{config.name} is built for img_size {list(config.img_size)} but {self._where()} was "
                             f"measured at {self.header['img_size']}")

    def breakdown(self, config: ModelConfig) -> list[tuple[str, float]]:
        """(key, ms) per entry of `config`; a missing entry is an error that names it."""
        self.check_config(config)
        rows = []
        for entry in decompose(config):
            if entry.key not in self.entries:
                raise UnknownNameError(f"{self._where()} has no entry {entry.key!r} (needed by {config.name}); "
                                       f"build the table for a space that contains it")
            rows.append((entry.key, float(self.entries[entry.key]["median_ms"])))
        return rows

    def sum_ms(self, config: ModelConfig) -> float:
        """Sum of the entries of `config` (without the overhead)."""
        return sum(ms for _, ms in self.breakdown(config))

    def predict(self, config: ModelConfig) -> float:
        """Predicted latency (ms) of `config`: its entries' sum, with the calibration's terms once calibrated."""
        terms = self.calibration
        predicted = terms["scale"] * self.sum_ms(config) + terms["overhead_ms"]
        if terms["ms_per_mparam"]:
            if self._params is None:
                self._params = ParamCounter()
            predicted += terms["ms_per_mparam"] * self._params(config) / 1e6
        return predicted

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps({**self.header, "entries": self.entries}))  # a deep copy

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the JSON atomically (to `path`, default where it was loaded from)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("LatencyTable.save needs a path")
        with atomic_write(target) as handle:
            handle.write(json.dumps(self.to_dict(), indent=1).encode())
        self.path = target
        return target

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatencyTable:
        """Read a table written by `build_lut` (errors name the file and the field)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as error:
            raise MissingFileError(f"cannot read latency table {path}: {error}") from None
        except ValueError as error:
            raise BadFileError(f"latency table {path} is not valid JSON: {error}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BadFileError(f"{path} is not a latency table (format {FORMAT!r} expected)")
        for field in ("runtime", "img_size", "threads", "base", "entries"):
            if field not in data:
                raise BadFileError(f"latency table {path} has no {field!r} field")
        entries = data.pop("entries")
        return cls(header=data, entries=entries, path=path)


def _header(space: SearchSpace, runtime: str, threads: int, warmup: int, repeats: int, clock: str) -> dict[str, Any]:
    base = space.base
    return {"format": FORMAT, "runtime": runtime, "versions": runtime_versions(runtime), "clock": clock,
            "torch": torch.__version__, "python": platform.python_version(), "machine": machine_line(),
            "cpu": cpu_name(), "cpu_count": os.cpu_count(), "threads": threads, "img_size": list(base.img_size),
            "batch_size": 1, "warmup": warmup, "repeats": repeats, "statistic": "median",
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "space": space.to_dict(),
            "base": {name: getattr(base, name) for name in BASE_FIELDS}, "complete": False}


# Where a build's wall time goes (header "build_s"): building, fusing, exporting and loading the
# entries ("prepare", also per entry as "prepare_s"), warm-up and timed calls ("timing"), rewriting the file ("save").
BUILD_PHASES = ("prepare", "timing", "save")

# Header fields a resumed build must share with the file it continues.
_RESUME_FIELDS = ("runtime", "clock", "threads", "img_size", "warmup", "repeats", "base")


def _resume(path: Path, header: dict[str, Any]) -> LatencyTable | None:
    if not path.exists():
        return None
    table = LatencyTable.load(path)
    for field in _RESUME_FIELDS:
        if table.header.get(field) != header[field]:
            raise ConfigError(f"cannot resume latency table {path}: its {field} is {table.header.get(field)!r}, this "
                             f"build's is {header[field]!r} (use another --output or the same settings)")
    return table


def _timed_prepare(runner: Callable[[nn.Module, torch.Tensor], Callable[[], object]], module: nn.Module,
                   example: torch.Tensor) -> tuple[Callable[[], object], float]:
    began = time.perf_counter()
    return runner(module, example), time.perf_counter() - began


def build_lut(space: SearchSpace, runtime: str = "torch-fused", img_size: int | tuple[int, int] | None = None, *,
              path: str | os.PathLike | None = None, warmup: int = 10, repeats: int = 50, threads: int = 1,
              clock: str = "cpu", chunk: int = 8, progress: bool | None = None,
              on_measured: Callable[[list[EntrySpec]], None] | None = None, entries: Iterable[EntrySpec] | None = None,
              runner: Callable[[nn.Module, torch.Tensor], Callable[[], object]] | None = None,
              timer: Callable[[], float] | None = None, workers: int | None = None) -> LatencyTable:
    """Measure every entry of `space` on `runtime`; resumes from `path` when it holds a partial table.

    Args:
        img_size: input size (default the space's); the space is rebuilt for it.
        path: the JSON file, rewritten atomically after every chunk (None: keep in memory).
        warmup, repeats: bench.timing settings per entry (batch 1).
        threads: torch intra-op threads (and onnxruntime's).
        clock: "cpu" (the calling thread's CPU time: robust on a shared machine, needs threads=1) or
            "wall" (perf_counter: what an idle device shows; any thread count). See runtimes.CLOCKS.
        chunk: entries timed together (interleaved) between two saves.
        on_measured: called with each finished chunk after it is saved (progress hooks, tests).
        entries: measure only these (default `space_entries(space)`); a repeated key is measured once.
        runner, timer: `runner(module, input)` -> the timed call, and the clock in seconds (default
            `runtimes.Preparer` on `runtime` and the `clock` timer; tests pass fakes).
        workers: processes lowering entries in parallel for the exported runtimes (default one per
            core; 1 = in this process). Timing always runs here, alone, after its chunk is lowered.
    """
    if runtime not in RUNTIMES:
        raise UnknownNameError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    if img_size is not None:
        space = space.replace_base(img_size=to_pair(img_size))
    timer = clock_function(clock, threads) if timer is None else timer
    with torch_threads(threads), Preparer(runtime, threads, workers) as preparer:
        header = _header(space, runtime, threads, warmup, repeats, clock)
        path = Path(path) if path is not None else None
        table = (_resume(path, header) if path is not None else None) or LatencyTable(header, {}, path)
        every = space_entries(space)
        wanted = every if entries is None else entries
        # Each distinct entry once: a key is measured once however often `entries` repeats it, and
        # never again once the file holds it (resume).
        todo = list({e.key: e for e in wanted if e.key not in table.entries}.values())
        spent = table.header.setdefault("build_s", dict.fromkeys(BUILD_PHASES, 0.0))  # summed over resumed runs
        with progress_bar(disable=None if progress is None else not progress) as bar:
            task = bar.add_task(f"LUT {runtime}", total=len(table.entries) + len(todo), completed=len(table.entries))
            for start in range(0, len(todo), chunk):
                batch = todo[start:start + chunk]
                began = time.perf_counter()
                if runner is None:
                    calls = preparer.prepare({e.key: (build_entry(e, space.base), example_input(e)) for e in batch})
                else:
                    calls = {e.key: _timed_prepare(runner, build_entry(e, space.base), example_input(e)) for e in batch}
                spent["prepare"] += time.perf_counter() - began  # wall: parallel lowering counts once
                began = time.perf_counter()
                timings = time_interleaved({key: call for key, (call, _) in calls.items()}, warmup=warmup,
                                           repeats=repeats, progress=False, clock=timer)
                spent["timing"] += time.perf_counter() - began
                for entry in batch:
                    timing = timings[entry.key]
                    table.entries[entry.key] = {"median_ms": timing.median_ms, "p90_ms": timing.p90_ms,
                                                "prepare_s": calls[entry.key][1], "spec": entry.to_dict()}
                if path is not None:
                    began = time.perf_counter()
                    table.save(path)
                    spent["save"] += time.perf_counter() - began
                bar.advance(task, len(batch))
                if on_measured is not None:
                    on_measured(batch)
    table.header["complete"] = all(e.key in table.entries for e in every)  # a subset build keeps a full table full
    table.header["date_completed"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if path is not None:
        table.save(path)
    return table


__all__ = ["CALIBRATION_TERMS", "EntrySpec", "KINDS", "LatencyTable", "ParamCounter", "build_entry", "entry_params",
           "build_lut", "decompose", "example_input", "space_entries"]
