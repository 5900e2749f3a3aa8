"""How the LUT and its validation run a module on a runtime: one zero-argument callable per module.

The same function prepares a single LUT entry and a whole network, so predicted and measured
latencies go through the same path:

- `torch-eager`: the module in eval mode under `torch.inference_mode()`;
- `torch-fused`: `models.fuse(module)` in NCHW (BN, layer scales, softmax scale folded; biases
  frozen). Not channels-last as in `efficientformer bench`: the attention reshapes hand NCHW tensors
  to the next block, so a channels-last entry timed alone does not pay the layout conversions it
  pays inside a network, and the sum missed whole-network latency by 10-19% on the tiny space
  (NCHW: within 3%);
- `onnxruntime`: the fused module through `export.runtimes.prepare`, the runtime layer bench uses
  too: the project's ONNX path (`export.onnx.onnx_proto`, with its exact rewrites) at the entry's
  static input shape, run by `export.onnx.onnxruntime_session` with `threads` intra-op threads;
- `executorch`, `openvino`: the same layer: each entry lowered alone to one XNNPACK program / an f32
  OpenVINO IR at its static input shape, run on ExecuTorch's runtime / the CPU plugin. ExecuTorch's
  lowering (its edge and XNNPACK passes) costs several times an ONNX export, so its tables take
  longest to build (README, "Search").

Lowering (export, compile to a file) is most of a table's build time, about ten times the timing of
an entry. `Preparer` therefore lowers a chunk of
modules in worker processes, one per core, and loads and times them in the calling process while
the workers wait, so the timing never shares the machine with an export.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import importlib.metadata
import logging
import multiprocessing
import os
import pickle
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from efficientformer.errors import ConfigError, UnknownNameError
from efficientformer.export.runtimes import EXPORTED, load, lower, prepare
from efficientformer.utils.optional import require

log = logging.getLogger(__name__)

RUNTIMES = ("torch-eager", "torch-fused", "onnxruntime", "executorch", "openvino")
# Distributions whose versions determine a runtime's speed (recorded in a table's header).
PACKAGES = {"onnxruntime": ("onnxruntime", "onnx", "onnxscript"), "executorch": ("executorch",),
            "openvino": ("openvino",)}
# "cpu" is the calling thread's CPU time. With one intra-op thread all of torch's, onnxruntime's,
# XNNPACK's (ExecuTorch) and OpenVINO's synchronous-inference work runs on the calling thread, so it
# equals the wall time of an idle machine, while on a shared, loaded machine it leaves out the time
# other processes hold the core (wall time then inflates long calls more than short ones and breaks
# additivity). "wall" is perf_counter.
CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}


def clock_function(clock: str, threads: int) -> Callable[[], float]:
    """The timer of `clock` ("cpu" or "wall"); "cpu" only measures correctly with one thread."""
    if clock not in CLOCKS:
        raise UnknownNameError(f"unknown clock {clock!r}; known: {', '.join(CLOCKS)}")
    if clock == "cpu" and threads != 1:
        raise ConfigError(f"clock 'cpu' measures the calling thread only and needs threads=1, got threads={threads}; "
                         f"use clock 'wall' for multi-threaded latency")
    return CLOCKS[clock]


def runtime_versions(runtime: str) -> dict[str, str]:
    """Package versions that determine `runtime`'s speed."""
    versions = {"torch": torch.__version__}
    for package in PACKAGES.get(runtime, ()):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def make_runner(module: nn.Module, example: torch.Tensor, runtime: str, threads: int | None = None
                ) -> Callable[[], object]:
    """A callable that runs `module` on `example` once on `runtime` (module must be in eval mode).

    Built by the project's one runtime layer (`export.runtimes.prepare`), as bench's runtimes are.
    """
    if runtime not in RUNTIMES:
        raise UnknownNameError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    _require_runtime(runtime)
    with warnings.catch_warnings():  # entries export hundreds of times: no warnings at all
        warnings.simplefilter("ignore")
        return prepare(module, example, runtime, threads=threads or torch.get_num_threads())


def _require_runtime(runtime: str) -> None:
    if runtime == "onnxruntime":
        require("onnxscript", "onnx")
    elif runtime in PACKAGES:
        require(PACKAGES[runtime][0], runtime)


def _start_worker() -> None:
    torch.set_num_threads(1)  # one worker per core
    warnings.simplefilter("ignore")


def _lower_in_worker(payload: bytes, runtime: str, directory: str, name: str) -> tuple[str, float]:
    began = time.perf_counter()
    module, example = pickle.loads(payload)  # pickled by this project's own Preparer, not user data
    path = lower(module, example, runtime, directory, name=name)
    return str(path), time.perf_counter() - began


class Preparer:
    """Prepares many modules for timing on one runtime; lowering runs in `workers` parallel processes.

        with Preparer("onnxruntime", threads=1) as preparer:
            calls = preparer.prepare({"a": (module_a, input_a), "b": (module_b, input_b)})  # name -> (call, s)

    Runtimes without a file (torch-*) and `workers=1` prepare in this process (`make_runner`).
    Otherwise each module is pickled to a worker (spawned: no state shared with this process),
    lowered to a file in a temporary directory, and loaded here with `threads` intra-op threads.
    The seconds returned per module are its lowering (in the worker) plus its loading.

    Args:
        workers: lowering processes; default one per core (os.cpu_count()).
    """

    def __init__(self, runtime: str, threads: int = 1, workers: int | None = None) -> None:
        if runtime not in RUNTIMES:
            raise UnknownNameError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
        if workers is not None and workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        self.runtime, self.threads = runtime, threads
        self.workers = workers or os.cpu_count() or 1
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._directory: tempfile.TemporaryDirectory | None = None
        self._count = 0

    @property
    def parallel(self) -> bool:
        return self.runtime in EXPORTED and self.workers > 1

    def __enter__(self) -> Preparer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers and remove the lowered files (loaded runtimes keep their copies)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None

    def prepare(self, modules: Mapping[str, tuple[nn.Module, torch.Tensor]]
                ) -> dict[str, tuple[Callable[[], object], float]]:
        """name -> (zero-argument call of the module on its input, preparation seconds), in `modules` order."""
        if not self.parallel or len(modules) < 2:
            prepared = {}
            for name, (module, example) in modules.items():
                began = time.perf_counter()
                prepared[name] = (make_runner(module.eval(), example, self.runtime, threads=self.threads),
                                  time.perf_counter() - began)
            return prepared
        _require_runtime(self.runtime)
        try:
            return self._prepare_in_workers(modules)
        except concurrent.futures.process.BrokenProcessPool as error:
            # A script without `if __name__ == "__main__":` cannot start spawned workers (they re-run it).
            log.warning("parallel lowering failed (%s); lowering in this process from now on", error)
            self.close()
            self.workers = 1
            return self.prepare(modules)

    def _prepare_in_workers(self, modules: Mapping[str, tuple[nn.Module, torch.Tensor]]
                            ) -> dict[str, tuple[Callable[[], object], float]]:
        if self._pool is None:
            self._directory = tempfile.TemporaryDirectory(prefix="efficientformer-lower-")
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker)
        futures = {}
        for name, (module, example) in modules.items():
            self._count += 1
            # Plain pickle bytes: the pool's own pickler shares each tensor through a file descriptor, and
            # 54 networks at once exceeded the open-file limit (Errno 24).
            payload = pickle.dumps((module.eval(), example.detach().cpu()), protocol=pickle.HIGHEST_PROTOCOL)
            futures[name] = self._pool.submit(_lower_in_worker, payload, self.runtime, self._directory.name,
                                              f"m{self._count}")
        prepared = {}
        for name, future in futures.items():
            path, lowering_s = future.result()
            began = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                call = load(path, self.runtime, modules[name][1], threads=self.threads)
            for leftover in (Path(path), Path(path).with_suffix(".bin")):  # .bin: an OpenVINO IR's weights
                leftover.unlink(missing_ok=True)
            prepared[name] = (call, lowering_s + time.perf_counter() - began)
        return prepared


__all__ = ["CLOCKS", "RUNTIMES", "Preparer", "clock_function", "make_runner", "runtime_versions"]
