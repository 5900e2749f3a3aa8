"""The runtimes `bench` can time a model on, each a way to turn (model, batch, threads) into a timed callable.

| runtime        | what is timed                                                              |
|----------------|----------------------------------------------------------------------------|
| torch-eager    | the model as built (BatchNorms, layer scales, both heads), eval mode        |
| torch-fused    | `fuse(model, channels_last=True)` with channels-last inputs                |
| torch-compile  | the same, wrapped in `torch.compile` (inductor, weight freezing)           |
| onnxruntime    | the fused model exported to ONNX (with the exact rewrites), CPU session    |
| executorch     | the fused model lowered to one XNNPACK program, its runtime                |
| openvino       | the fused model converted to OpenVINO IR (f32), its CPU plugin              |

Every runtime goes through the one runtime layer, `export.runtimes.prepare`, which the latency
table uses too. Each batch size gets a file of its own with a static shape (the latency batch 1 is
what a phone app runs, and static files are the fastest on every runtime); torch calls run under
`torch.inference_mode()`. The export and runtime packages are optional and imported only when their
runtime is prepared: `unavailable(name)` says why one cannot run.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from efficientformer.errors import ConfigError, UnknownNameError
from efficientformer.export.runtimes import TimedCall, prepare, torch_call


@dataclass(frozen=True)
class Preparation:
    """What a runtime needs to build a timed callable.

    Attributes:
        name: the model's name (file names in `workdir` are derived from it).
        img_size: (height, width) of the input.
        threads: intra-op threads for the runtime (torch's are set by the caller).
        workdir: a directory for exported files, shared by all models of one bench run.
        approximate: opt-in approximations of `fuse` (models.fuse.APPROXIMATIONS); default exact.
    """

    name: str
    img_size: tuple[int, int]
    threads: int
    workdir: Path
    approximate: tuple[str, ...] = ()


@dataclass(frozen=True)
class Runtime:
    """One runtime: a loader for each model and the packages it needs.

    Attributes:
        prepare: (model, prep) -> (batch -> timed callable); exports happen in the batch call.
        packages: distributions whose presence makes the runtime available, and whose versions
            are recorded with the results.
        modules: modules of this package it imports (exporters written separately; absent = unavailable).
        group: runtimes of one group share a thread pool and are timed together, in the same interleaved
            rounds (bench.measure.measurement_groups); "" = timed alone.
    """

    name: str
    description: str
    prepare: Callable[[nn.Module, Preparation], Callable[[int], TimedCall]]
    packages: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    group: str = ""


def _images(batch: int, img_size: tuple[int, int]) -> torch.Tensor:
    # Fixed seed: every runtime and model sees the same kind of input.
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, *img_size, generator=generator)  # (B, 3, H, W)


def _through_layer(runtime: str, channels_last: bool = False
                   ) -> Callable[[nn.Module, Preparation], Callable[[int], TimedCall]]:
    def prepare_model(model: nn.Module, prep: Preparation) -> Callable[[int], TimedCall]:
        model = model.eval()

        def for_batch(batch: int) -> TimedCall:
            return prepare(model, _images(batch, prep.img_size), runtime, threads=prep.threads, workdir=prep.workdir,
                           name=f"{prep.name}_b{batch}", channels_last=channels_last,
                           approximate=() if runtime == "torch-eager" else prep.approximate)
        return for_batch
    return prepare_model


RUNTIMES: dict[str, Runtime] = {runtime.name: runtime for runtime in (
    Runtime("torch-eager", "the model as built, eval mode (unfused)", _through_layer("torch-eager"), group="torch"),
    Runtime("torch-fused", "fuse(model, channels_last=True)", _through_layer("torch-fused", channels_last=True),
            group="torch"),
    Runtime("torch-compile", "fused + torch.compile (inductor, freezing)",
            _through_layer("torch-compile", channels_last=True), group="torch"),
    Runtime("onnxruntime", "fused -> ONNX (opset 20, exact rewrites), onnxruntime CPU", _through_layer("onnxruntime"),
            packages=("onnxruntime", "onnx", "onnxscript"), modules=("efficientformer.export.onnx",)),
    Runtime("executorch", "fused -> ExecuTorch .pte (one XNNPACK delegate), static batch",
            _through_layer("executorch"), packages=("executorch",), modules=("efficientformer.export.executorch",)),
    Runtime("openvino", "fused -> OpenVINO IR (f32), CPU, static batch", _through_layer("openvino"),
            packages=("openvino",), modules=("efficientformer.export.openvino",)),
)}
DEFAULT_RUNTIMES = ("torch-eager", "torch-fused", "onnxruntime", "executorch", "openvino")


def unavailable(name: str) -> str | None:
    """Why runtime `name` cannot run here (a missing package or exporter), or None when it can."""
    if name not in RUNTIMES:
        raise UnknownNameError(f"unknown runtime {name!r}; choose from {', '.join(RUNTIMES)}")
    runtime = RUNTIMES[name]
    for package in runtime.packages:
        try:
            importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return f"not installed: {package} (pip install it to bench {name})"
    for module in runtime.modules:
        if importlib.util.find_spec(module) is None:
            return f"not available: {module} is not in this version of efficientformer"
    return None


def versions(names: list[str]) -> dict[str, str]:
    """Versions of torch and of the packages of the given runtimes (those installed)."""
    found = {"torch": torch.__version__}
    for name in names:
        for package in RUNTIMES[name].packages:
            try:
                found[package] = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                pass
    return found


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (default: every core); returns the count in use."""
    if threads is None:
        threads = os.cpu_count() or 1
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    return threads


__all__ = ["DEFAULT_RUNTIMES", "RUNTIMES", "Preparation", "Runtime", "set_threads", "torch_call", "unavailable",
           "versions"]
