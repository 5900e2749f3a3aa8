"""OpenVINO IR export (.xml + .bin) of the fused model, and its parity check on the OpenVINO CPU plugin.

The fused model is captured with `torch.export` (as for ONNX; TorchScript tracing, OpenVINO's
other PyTorch path, is deprecated in torch 2.13 and gives the same latency) and converted directly
by `openvino.convert_model`, with no ONNX file in between, at a fixed image size and, by default, a
dynamic batch. The IR has an `images` input, float32 (batch, 3, H, W), and a `logits` output.

Precision. OpenVINO's CPU plugin runs in bf16 by default on CPUs that have bf16 instructions
(AVX512-BF16/AMX), which moves logits by ~1e-2..1e-1; fp32 parity needs the f32
`INFERENCE_PRECISION_HINT` and an IR whose weights are not compressed to fp16. The precision
asked for at export is written into the IR (rt_info `efficientformer/precision`), and
`compile_openvino` / `load_runner` / the parity check compile the file with that hint:
- "f32": fp32 weights in the .bin, f32 hint; tolerance 1e-4.
- "bf16": fp32 weights, bf16 hint; tolerance 0.25 (bf16 keeps 8 mantissa bits).
- "fp16": weights compressed to fp16 in the .bin (half the file size), f16 hint; tolerance 0.25.
  A CPU without fp16 arithmetic runs it in bf16 (or f32); the runtime string of the parity report
  names the precision the plugin actually chose.

Telemetry. `openvino.convert_model` reports each conversion to Intel unless the user opted out, and then
waits a fixed second for the report to leave (`force_shutdown(1.0)` in openvino-telemetry 2025.2), on any
machine: the latency table converts hundreds of blocks, and that second was most of its build time on
OpenVINO. The conversions of this project send no telemetry (`_no_telemetry`); the user's own
`convert_model` calls are left alone.

openvino is optional (`pip install 'efficientformer[openvino]'`) and imported inside the functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
from torch import nn

from efficientformer.errors import BadFileError, ConfigError, MissingFileError
from efficientformer.export.common import export_image_size, quiet_exporter
from efficientformer.export.parity import ParityReport, check_parity, eval_crop_pct, parity_images
from efficientformer.models.fuse import fuse
from efficientformer.utils.optional import require
from efficientformer.utils.signals import preserved_signal_stack

EXTRA = "openvino"
INPUT_NAME = "images"
BATCH_DIM = "batch"
DEVICE = "CPU"
# Default parity tolerance on the largest absolute logit difference, per precision.
PRECISIONS: dict[str, float] = {"f32": 1e-4, "bf16": 0.25, "fp16": 0.25}
DEFAULT_PRECISION = "f32"
DEFAULT_ATOL = PRECISIONS[DEFAULT_PRECISION]
_HINTS = {"f32": "f32", "bf16": "bf16", "fp16": "f16"}  # our name -> INFERENCE_PRECISION_HINT value
_RT_INFO_PRECISION = ["efficientformer", "precision"]


@dataclass(frozen=True)
class OpenVinoExport:
    """What `export_openvino` wrote.

    Attributes:
        path: the IR's .xml (graph); its weights are `weights_path`, the .bin of the same stem.
        precision: "f32", "bf16" or "fp16" (see the module docstring).
        input_shape: (batch, 3, H, W); batch is the string "batch" when it is dynamic.
        num_bytes: size of .xml and .bin together.
    """

    path: Path
    weights_path: Path
    precision: str
    input_name: str
    output_name: str
    input_shape: tuple[int | str, ...]
    num_bytes: int
    runtime_version: str

    @property
    def dynamic_batch(self) -> bool:
        """True when the batch dimension is symbolic."""
        return isinstance(self.input_shape[0], str)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {**dataclasses.asdict(self), "path": str(self.path), "weights_path": str(self.weights_path),
                "input_shape": list(self.input_shape), "dynamic_batch": self.dynamic_batch}


def openvino_version() -> str:
    """The installed openvino release ("2026.4.1")."""
    require("openvino", EXTRA)
    return importlib.metadata.version("openvino")


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown OpenVINO precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def export_openvino(model: nn.Module, path: str | os.PathLike, img_size: int | tuple[int, int] | None = None,
                    dynamic_batch: bool = True, precision: str = DEFAULT_PRECISION,
                    approximate: tuple[str, ...] = ()) -> OpenVinoExport:
    """Write the fused, eval-mode `model` as an OpenVINO IR: `path` (.xml) and the .bin beside it.

    Both files are written into a temporary folder beside `path` and moved into place, the .xml
    last, so a reader never finds an .xml without its weights.

    Args:
        model: an EfficientFormerV2 or any module whose parts expose `.fuse()`; it is not modified.
        path: the .xml file to write.
        img_size: input (height, width) or an int for a square; default the model's `config.img_size`.
        dynamic_batch: make the batch dimension symbolic; else the IR takes batch 1 only.
        precision: "f32" (default, exact), "bf16" or "fp16" (see the module docstring).
        approximate: opt-in approximations of `fuse` (models.fuse.APPROXIMATIONS); default none.
    """
    require("openvino", EXTRA)
    _check_precision(precision)
    path = Path(path)
    if path.suffix != ".xml":
        raise ConfigError(f"an OpenVINO IR is written as <name>.xml (+ <name>.bin); got {path}")
    if not path.parent.is_dir():
        raise MissingFileError(f"cannot write {path}: directory {path.parent} does not exist")
    if getattr(model, "features_only", False):
        raise ConfigError("OpenVINO export of a features_only model is not supported; export the classifier model")
    height, width = export_image_size(model, img_size)
    fused = fuse(model, approximate=approximate).to(device="cpu", dtype=torch.float32)
    output_name = "features" if getattr(model, "num_classes", 1) == 0 else "logits"
    # Batch 2 for a dynamic batch: torch.export specialises dimensions of size 1.
    ov_model = convert_program(fused, torch.zeros(2 if dynamic_batch else 1, 3, height, width),
                               dynamic_batch=dynamic_batch, input_name=INPUT_NAME, output_name=output_name)
    ov_model.set_rt_info(precision, _RT_INFO_PRECISION)
    weights_path = save_ir(ov_model, path, compress_to_fp16=precision == "fp16")
    return OpenVinoExport(path=path, weights_path=weights_path, precision=precision, input_name=INPUT_NAME,
                          output_name=output_name,
                          input_shape=(BATCH_DIM if dynamic_batch else 1, 3, height, width),
                          num_bytes=path.stat().st_size + weights_path.stat().st_size,
                          runtime_version=openvino_version())


def read_precision(ov_model: Any, path: str | os.PathLike) -> str:
    """The precision an IR was exported with (rt_info `efficientformer/precision`); "f32" for a foreign IR."""
    if not ov_model.has_rt_info(_RT_INFO_PRECISION):
        return DEFAULT_PRECISION
    precision = ov_model.get_rt_info(_RT_INFO_PRECISION).astype(str)
    if precision not in PRECISIONS:
        raise BadFileError(f"{path}: rt_info efficientformer/precision is {precision!r}, "
                           f"not one of {', '.join(PRECISIONS)}")
    return precision


@contextlib.contextmanager
def _no_telemetry() -> Iterator[None]:
    """Conversions inside send no OpenVINO telemetry and so skip its one-second wait (module docstring).

    openvino-telemetry's sender drops its messages for the duration (its consent is decided once per process
    and stays the user's); with nothing queued, the end of a conversion does not wait. Without the package,
    or if the sender moved, OpenVINO behaves as it would without us.
    """
    try:
        from openvino_telemetry.utils.sender import TelemetrySender
    except ImportError:
        yield
        return
    if "send" not in TelemetrySender.__dict__:
        yield
        return
    with mock.patch.object(TelemetrySender, "send", lambda self, backend, message: None):
        yield


def convert_program(fused: nn.Module, example: torch.Tensor, *, dynamic_batch: bool = False,
                    input_name: str = INPUT_NAME, output_name: str = "logits") -> Any:
    """An inference module traced by `torch.export` at `example` and converted to an `openvino.Model`.

    The one path from a module to OpenVINO: `export_openvino` (networks on images) and the runtime
    layer (export/runtimes.py: networks and single blocks) use it. `dynamic_batch` makes dimension 0
    symbolic (the example's batch must then be >= 2); every other dimension is the example's.
    """
    ov = require("openvino", EXTRA)
    dynamic_shapes = ({0: torch.export.Dim(BATCH_DIM, min=1)},) if dynamic_batch else None
    # OpenVINO does not carry the static sizes over from the program: give the input shape.
    shape = ov.PartialShape([-1 if dynamic_batch else example.shape[0], *example.shape[1:]])
    with quiet_exporter(), _no_telemetry():
        program = torch.export.export(fused, (example,), dynamic_shapes=dynamic_shapes)
        ov_model = ov.convert_model(program, input=[(shape, ov.Type.f32)])
    ov_model.inputs[0].get_tensor().set_names({input_name})
    ov_model.outputs[0].get_tensor().set_names({output_name})
    return ov_model


def save_ir(ov_model: Any, path: str | os.PathLike, compress_to_fp16: bool = False) -> Path:
    """Write `path` (.xml) and its .bin so that a reader never finds an .xml without its weights; returns the .bin.

    Both files are written into a temporary folder beside `path` and moved into place, the .xml last.
    """
    ov = require("openvino", EXTRA)
    path = Path(path)
    weights_path = path.with_suffix(".bin")
    staging = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent))
    try:
        ov.save_model(ov_model, str(staging / path.name), compress_to_fp16=compress_to_fp16)
        os.replace(staging / weights_path.name, weights_path)
        os.replace(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return weights_path


def compile_openvino(path: str | os.PathLike, precision: str | None = None,
                     num_threads: int | None = None) -> tuple[Any, str]:
    """Read an IR and compile it for the CPU with its precision hint; returns (compiled model, precision).

    The compiled model uses the LATENCY performance hint (one inference stream), which suits timing one call.

    Args:
        precision: override the precision written at export ("f32", "bf16", "fp16").
        num_threads: INFERENCE_NUM_THREADS; default OpenVINO's (all cores).
    """
    ov = require("openvino", EXTRA)
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"OpenVINO IR {path} does not exist")
    core = ov.Core()
    try:
        ov_model = core.read_model(str(path))
    except Exception as error:  # openvino raises RuntimeError subclasses of its own
        raise BadFileError(f"OpenVINO cannot read {path}: {error}") from None
    precision = _check_precision(precision) if precision is not None else read_precision(ov_model, path)
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": _HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
    if num_threads is not None:
        if num_threads < 1:
            raise ConfigError(f"num_threads must be >= 1, got {num_threads}")
        config["INFERENCE_NUM_THREADS"] = int(num_threads)
    try:
        with preserved_signal_stack():  # the plugin's own signal stack would dangle (utils/signals.py)
            compiled = core.compile_model(ov_model, DEVICE, config)
    except Exception as error:
        raise BadFileError(f"OpenVINO cannot compile {path} for {DEVICE}: {error}") from None
    return compiled, precision


def _runner(compiled: Any) -> Callable[[np.ndarray], np.ndarray]:
    with preserved_signal_stack():
        request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(batch: np.ndarray) -> np.ndarray:
        return np.array(request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})[output])  # a copy
    return run


def load_runner(path: str | os.PathLike, num_threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A callable float32 (B, 3, H, W) array -> output array that runs the IR at its exported precision.

    Args:
        num_threads: INFERENCE_NUM_THREADS; default OpenVINO's.
    """
    compiled, _ = compile_openvino(path, num_threads=num_threads)
    return _runner(compiled)


def check_openvino_parity(model: nn.Module, path: str | os.PathLike, *, atol: float | None = None,
                          images: torch.Tensor | None = None, precision: str | None = None) -> ParityReport:
    """Run an IR on the OpenVINO CPU plugin and compare it with eager `model` on the parity images.

    Args:
        model: the eager model the IR was exported from.
        atol: tolerance on the largest absolute logit difference; default `PRECISIONS[precision]`.
        images: (N, 3, H, W) inputs; default `parity_images` at the IR's input size.
        precision: run at this precision instead of the one written at export.

    Raises:
        ParityError: the outputs differ by more than `atol`; `.report` holds the numbers.
    """
    compiled, precision = compile_openvino(path, precision=precision)
    partial = compiled.input(0).get_partial_shape()
    batch_dim, _, height, width = (dim.get_length() if dim.is_static else None for dim in partial)
    if images is None:
        if height is None or width is None:
            raise ConfigError(f"{path} has a dynamic image size {partial}: pass the parity images")
        images = parity_images((height, width), crop_pct=eval_crop_pct(model))
        if batch_dim is not None and len(images) % batch_dim:
            images = images[:len(images) - len(images) % batch_dim]
    used = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # an openvino Type: "f32", "bf16"
    runtime = f"openvino {openvino_version()} {DEVICE} ({precision} asked, {used} used)"
    return check_parity(model, _runner(compiled), images, atol=PRECISIONS[precision] if atol is None else atol,
                        format="openvino", runtime=runtime, batch_size=batch_dim, path=str(path))


__all__ = ["DEFAULT_ATOL", "DEFAULT_PRECISION", "PRECISIONS", "OpenVinoExport", "check_openvino_parity",
           "compile_openvino", "convert_program", "export_openvino", "load_runner", "openvino_version",
           "read_precision", "save_ir"]
