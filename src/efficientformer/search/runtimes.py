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
  OpenVINO IR at its static input shape, run on ExecuTorch's runtime / the CPU plugin. Lowering an
  entry costs seconds (ExecuTorch most), so a paper-space table takes longer to build than on
  onnxruntime.
"""

from __future__ import annotations

import importlib.metadata
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

from efficientformer.export.runtimes import prepare
from efficientformer.utils.optional import require

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
        raise ValueError(f"unknown clock {clock!r}; known: {', '.join(CLOCKS)}")
    if clock == "cpu" and threads != 1:
        raise ValueError(f"clock 'cpu' measures the calling thread only and needs threads=1, got threads={threads}; "
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
        raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    if runtime == "onnxruntime":
        require("onnxscript", "onnx")
    elif runtime in PACKAGES:
        require(PACKAGES[runtime][0], runtime)
    with warnings.catch_warnings():  # entries export hundreds of times: no warnings at all
        warnings.simplefilter("ignore")
        return prepare(module, example, runtime, threads=threads or torch.get_num_threads())


__all__ = ["CLOCKS", "RUNTIMES", "clock_function", "make_runner", "runtime_versions"]
