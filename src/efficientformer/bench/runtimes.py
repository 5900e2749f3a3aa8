"""The runtimes `bench` can time a model on, each a way to turn (model, batch, threads) into a timed callable.

| runtime        | what is timed                                                              |
|----------------|----------------------------------------------------------------------------|
| torch-eager    | the model as built (BatchNorms, layer scales, both heads), eval mode        |
| torch-fused    | `fuse(model, channels_last=True)` with channels-last inputs                |
| torch-compile  | the same, wrapped in `torch.compile` (inductor, weight freezing)           |
| onnxruntime    | the fused model exported to ONNX (`export_onnx`), CPU session              |
| executorch     | the fused model exported to an ExecuTorch .pte (XNNPACK), its runner       |
| openvino       | the fused model exported to OpenVINO IR, its runner                        |

Every callable runs the whole batch and discards the output; torch calls run under
`torch.inference_mode()`. Exported files go to a work directory, one per model and export option
(ExecuTorch: the static batch-1 program for latency, a bounded dynamic batch for throughput). The export and runtime packages are optional and
imported only when their runtime is prepared: `unavailable(name)` says why one cannot run.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from efficientformer.models.fuse import fuse

TimedCall = Callable[[], object]


@dataclass(frozen=True)
class Preparation:
    """What a runtime needs to build a timed callable.

    Attributes:
        name: the model's name (file names in `workdir` are derived from it).
        img_size: (height, width) of the input.
        threads: intra-op threads for the runtime (torch's are set by the caller).
        workdir: a directory for exported files, shared by all models of one bench run.
    """

    name: str
    img_size: tuple[int, int]
    threads: int
    workdir: Path


@dataclass(frozen=True)
class Runtime:
    """One runtime: a loader for each model and the packages it needs.

    Attributes:
        prepare: (model, prep) -> (batch -> timed callable); exports happen here, once per model.
        packages: distributions whose presence makes the runtime available, and whose versions
            are recorded with the results.
        modules: modules of this package it imports (exporters written separately; absent = unavailable).
    """

    name: str
    description: str
    prepare: Callable[[nn.Module, Preparation], Callable[[int], TimedCall]]
    packages: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()


def _images(batch: int, img_size: tuple[int, int], channels_last: bool = False) -> torch.Tensor:
    # Fixed seed: every runtime and model sees the same kind of input.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, *img_size, generator=generator)  # (B, 3, H, W)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def torch_call(model: nn.Module, x: torch.Tensor) -> TimedCall:
    """A timed callable running `model(x)` without autograd."""
    def call() -> object:
        with torch.inference_mode():
            return model(x)
    return call


def _prepare_eager(model: nn.Module, prep: Preparation) -> Callable[[int], TimedCall]:
    model = model.eval()
    return lambda batch: torch_call(model, _images(batch, prep.img_size))


def _prepare_fused(model: nn.Module, prep: Preparation) -> Callable[[int], TimedCall]:
    fused = fuse(model, channels_last=True)
    return lambda batch: torch_call(fused, _images(batch, prep.img_size, channels_last=True))


def _prepare_compiled(model: nn.Module, prep: Preparation) -> Callable[[int], TimedCall]:
    def for_batch(batch: int) -> TimedCall:
        # One compiled module per batch size: shapes stay static, so inductor never falls back to
        # a dynamic-shape graph when a second batch size arrives. The first call (warm-up) compiles.
        compiled = fuse(model, channels_last=True, compile=True)
        return torch_call(compiled, _images(batch, prep.img_size, channels_last=True))
    return for_batch


def _array_call(run: Callable[[np.ndarray], object], batch: int, img_size: tuple[int, int]) -> TimedCall:
    x = _images(batch, img_size).numpy()  # (B, 3, H, W) float32
    return lambda: run(x)


def _prepare_onnxruntime(model: nn.Module, prep: Preparation) -> Callable[[int], TimedCall]:
    from efficientformer.export.onnx import export_onnx, onnxruntime_session

    path = prep.workdir / f"{prep.name}.onnx"
    export = export_onnx(model, path, img_size=prep.img_size, dynamic_batch=True)
    session = onnxruntime_session(export.path, num_threads=prep.threads)
    input_name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> object:
        return session.run(None, {input_name: x})
    return lambda batch: _array_call(run, batch, prep.img_size)


def _prepare_exported(module_name: str, export_name: str, suffix: str,
                      options_for: Callable[[int], dict[str, object]]
                      ) -> Callable[[nn.Module, Preparation], Callable[[int], TimedCall]]:
    """A loader for an exporter module with `export_<format>(model, path, img_size=, **options)` and
    `load_runner(path, num_threads=None) -> (ndarray -> ndarray)`.

    Args:
        options_for: batch -> export options; batches with equal options share one file.
    """
    def prepare(model: nn.Module, prep: Preparation) -> Callable[[int], TimedCall]:
        module = importlib.import_module(module_name)
        export = getattr(module, export_name)
        runners: dict[tuple, Callable[[np.ndarray], object]] = {}

        def for_batch(batch: int) -> TimedCall:
            options = options_for(batch)
            key = tuple(sorted(options.items()))
            if key not in runners:
                stem = "_".join([prep.name] + [f"{name}{value}" for name, value in key])
                result = export(model, prep.workdir / f"{stem}{suffix}", img_size=prep.img_size, **options)
                runners[key] = module.load_runner(result.path, num_threads=prep.threads)
            return _array_call(runners[key], batch, prep.img_size)
        return for_batch
    return prepare


def _executorch_options(batch: int) -> dict[str, object]:
    # Batch 1 is the static single-image program a phone app runs; a larger batch needs a bounded
    # dynamic batch (ExecuTorch plans memory for the upper bound). Measured with executorch 1.5: such a
    # file runs batches up to 15 whatever max_batch is (16 and above fail in set_inputs), see export/executorch.py.
    return {"dynamic_batch": False} if batch == 1 else {"dynamic_batch": True, "max_batch": batch}


RUNTIMES: dict[str, Runtime] = {runtime.name: runtime for runtime in (
    Runtime("torch-eager", "the model as built, eval mode (unfused)", _prepare_eager),
    Runtime("torch-fused", "fuse(model, channels_last=True)", _prepare_fused),
    Runtime("torch-compile", "fused + torch.compile (inductor, freezing)", _prepare_compiled),
    Runtime("onnxruntime", "fused -> ONNX (opset 20), onnxruntime CPU", _prepare_onnxruntime,
            packages=("onnxruntime", "onnx", "onnxscript"), modules=("efficientformer.export.onnx",)),
    Runtime("executorch", "fused -> ExecuTorch .pte (XNNPACK), static batch 1 / bounded batch",
            _prepare_exported("efficientformer.export.executorch", "export_executorch", ".pte", _executorch_options),
            packages=("executorch",), modules=("efficientformer.export.executorch",)),
    Runtime("openvino", "fused -> OpenVINO IR (f32), CPU",
            _prepare_exported("efficientformer.export.openvino", "export_openvino", ".xml",
                              lambda batch: {"dynamic_batch": True}),
            packages=("openvino",), modules=("efficientformer.export.openvino",)),
)}
DEFAULT_RUNTIMES = ("torch-eager", "torch-fused", "onnxruntime", "executorch", "openvino")


def unavailable(name: str) -> str | None:
    """Why runtime `name` cannot run here (a missing package or exporter), or None when it can."""
    if name not in RUNTIMES:
        raise KeyError(f"unknown runtime {name!r}; choose from {', '.join(RUNTIMES)}")
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
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    return threads


__all__ = ["DEFAULT_RUNTIMES", "RUNTIMES", "Preparation", "Runtime", "set_threads", "torch_call", "unavailable",
           "versions"]
