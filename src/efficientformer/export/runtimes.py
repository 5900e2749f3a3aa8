"""The one runtime layer: given a module and an example input, run it on a runtime as a zero-argument callable.

`bench` (whole networks), the latency table (single blocks on feature maps) and the exporters go
through the same lowering, so a time measured anywhere in the project is a time of the graph a
user deploys:

| runtime       | what `prepare` builds                                                                 |
|---------------|---------------------------------------------------------------------------------------|
| torch-eager   | the module as given, eval mode, under `torch.inference_mode()`                        |
| torch-fused   | `fuse(module)` (NCHW, or channels-last with `channels_last=True`)                     |
| torch-compile | the fused module under `torch.compile` (inductor, weight freezing); compiles on call 1  |
| onnxruntime   | the fused module via `onnx_proto` (export/onnx.py, with its exact rewrites), CPU session |
| executorch    | the fused module lowered to one XNNPACK program (export/executorch.py), its runtime    |
| openvino      | the fused module converted by `convert_program` (export/openvino.py), f32 CPU plugin    |

Every runtime gets the example's exact shape (static shapes: what a phone app runs, and the fastest
files; a larger batch is another call with another example). `threads` sets the runtime's intra-op
threads (torch's are process-wide: `torch.set_num_threads`, set by the caller). Exported files go to
`workdir` when given (kept), else to a temporary directory removed once the runtime holds the model.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from efficientformer.errors import UnknownNameError
from efficientformer.models.fuse import fuse

TimedCall = Callable[[], object]

RUNTIMES = ("torch-eager", "torch-fused", "torch-compile", "onnxruntime", "executorch", "openvino")
EXPORTED = ("onnxruntime", "executorch", "openvino")


def first_array(output: object) -> np.ndarray:
    """The first output of a runtime (a tensor, an array, or a list or tuple of them) as a float32 array of its own
    (a copy: runtimes may reuse their output buffers on the next call)."""
    while isinstance(output, (list, tuple)):
        output = output[0]
    if isinstance(output, torch.Tensor):
        output = output.detach().float().cpu().numpy()
    return np.array(output, dtype=np.float32)


class RuntimeCall:
    """A model prepared on a runtime for one input shape.

    Calling it with no argument runs the bound example once (what is timed; the output is returned
    as the runtime gives it). `run(inputs)` runs other inputs of the same shape and returns the first
    output as a float32 array, e.g. to compare the runtime's logits with eager PyTorch's.
    """

    __slots__ = ("_bound", "_run")

    def __init__(self, run: Callable[[torch.Tensor], object], bound: TimedCall) -> None:
        self._run = run
        self._bound = bound

    def __call__(self) -> object:
        return self._bound()

    def run(self, inputs: torch.Tensor) -> np.ndarray:
        return first_array(self._run(inputs))


def torch_call(module: nn.Module, example: torch.Tensor, *, channels_last: bool = False) -> RuntimeCall:
    """`module(example)` without autograd; with `channels_last`, inputs are passed in channels-last memory."""
    def run(inputs: torch.Tensor) -> object:
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return module(inputs)

    example = example.contiguous(memory_format=torch.channels_last) if channels_last else example

    def call() -> object:
        with torch.inference_mode():
            return module(example)
    return RuntimeCall(run, call)


def _array_call(run: Callable[[np.ndarray], object], example: torch.Tensor) -> RuntimeCall:
    def as_array(inputs: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(inputs.detach().cpu().numpy(), dtype=np.float32)

    array = as_array(example)
    return RuntimeCall(lambda inputs: run(as_array(inputs)), lambda: run(array))


def _lower_onnx(fused: nn.Module, example: torch.Tensor, path: Path) -> None:
    from efficientformer.export.onnx import onnx_proto

    path.write_bytes(onnx_proto(fused, example).SerializeToString())


def _lower_executorch(fused: nn.Module, example: torch.Tensor, path: Path) -> None:
    from efficientformer.export import executorch as et

    data, _ = et.lower_to_xnnpack(et.capture_example(fused, example), (example.shape[0],) * 2)
    path.write_bytes(data)


def _lower_openvino(fused: nn.Module, example: torch.Tensor, path: Path) -> None:
    from efficientformer.export import openvino as ov_export

    ov_export.save_ir(ov_export.convert_program(fused, example), path)


def _load_onnx(path: Path, threads: int | None) -> Callable[[np.ndarray], object]:
    from efficientformer.export.onnx import onnxruntime_session

    session = onnxruntime_session(path, num_threads=threads)  # holds the model: the file may go
    name = session.get_inputs()[0].name
    return lambda array: session.run(None, {name: array})


def _load_executorch(path: Path, threads: int | None) -> Callable[[np.ndarray], object]:
    from efficientformer.export import executorch as et

    return et.load_runner(path, num_threads=threads)  # the loaded program keeps its data


def _load_openvino(path: Path, threads: int | None) -> Callable[[np.ndarray], object]:
    from efficientformer.export import openvino as ov_export

    return ov_export.load_runner(path, num_threads=threads)


# runtime -> (file suffix, write the lowered file, load it as a callable on a float32 array)
_FILES = {"onnxruntime": (".onnx", _lower_onnx, _load_onnx),
          "executorch": (".pte", _lower_executorch, _load_executorch),
          "openvino": (".xml", _lower_openvino, _load_openvino)}


def lower(module: nn.Module, example: torch.Tensor, runtime: str, directory: str | Path, *, name: str = "module",
          approximate: tuple[str, ...] = ()) -> Path:
    """Lower `module` at `example`'s shape to `runtime`'s file in `directory` (an EXPORTED runtime); its path.

    The first half of `prepare`, which needs no runtime installed: it can run in another process
    (the latency table lowers its entries in parallel workers and loads them in the timing process).
    """
    if runtime not in EXPORTED:
        raise UnknownNameError(f"runtime {runtime!r} has no file to lower to; those that do: {', '.join(EXPORTED)}")
    suffix, write, _ = _FILES[runtime]
    fused = fuse(module.eval(), approximate=approximate).to(device="cpu", dtype=torch.float32)
    path = Path(directory) / f"{name}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    write(fused, example.detach().to(device="cpu", dtype=torch.float32), path)
    return path


def load(path: str | Path, runtime: str, example: torch.Tensor, *, threads: int | None = None) -> RuntimeCall:
    """The second half of `prepare`: a callable running the file `lower` wrote on `example` once."""
    if runtime not in EXPORTED:
        raise UnknownNameError(f"runtime {runtime!r} loads no file; those that do: {', '.join(EXPORTED)}")
    return _array_call(_FILES[runtime][2](Path(path), threads), example)


def prepare(module: nn.Module, example: torch.Tensor, runtime: str, *, threads: int | None = None,
            workdir: str | Path | None = None, name: str = "module", channels_last: bool = False,
            approximate: tuple[str, ...] = ()) -> RuntimeCall:
    """A zero-argument callable running `module` on `example` once on `runtime` (see the module table);
    its `run(inputs)` runs other inputs of the example's shape.

    Args:
        module: an eval-mode module whose parts expose `.fuse()` where they fold (any module works).
        example: the input, on the CPU for the exported runtimes; its shape is the one compiled for.
        threads: intra-op threads of the runtime; None = the runtime's default.
        workdir: keep exported files here (named after `name`); None = a temporary directory.
        channels_last: torch-fused/torch-compile only: channels-last weights and input.
        approximate: opt-in approximations of `fuse` (models.fuse.APPROXIMATIONS); default exact.
    """
    if runtime not in RUNTIMES:
        raise UnknownNameError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    if runtime == "torch-eager":
        return torch_call(module.eval(), example)
    if runtime in ("torch-fused", "torch-compile"):
        fused = fuse(module, channels_last=channels_last, compile=runtime == "torch-compile", approximate=approximate)
        return torch_call(fused, example, channels_last=channels_last)
    if workdir is not None:
        return load(lower(module, example, runtime, workdir, name=name, approximate=approximate), runtime, example,
                    threads=threads)
    with tempfile.TemporaryDirectory(prefix="efficientformer-runtime-") as temporary:
        path = lower(module, example, runtime, temporary, name=name, approximate=approximate)
        return load(path, runtime, example, threads=threads)  # the runtime holds the model: the file may go


__all__ = ["EXPORTED", "RUNTIMES", "RuntimeCall", "TimedCall", "first_array", "load", "lower", "prepare", "torch_call"]
