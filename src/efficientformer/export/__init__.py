"""Deployment: export the fused model to a runtime's file format and check it against eager PyTorch.

Each format is one entry of FORMATS: an `export(model, path, img_size, dynamic_batch)` function and
a `check(model, path, atol=...)` parity function that raises `ParityError` with the numbers.
Runtimes (onnxruntime, ...) are optional and imported only inside those functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from efficientformer.export.executorch import ExecutorchExport, check_executorch_parity, export_executorch, load_runner
from efficientformer.export.onnx import DEFAULT_OPSET, OnnxExport, check_onnx_parity, export_onnx
from efficientformer.export.parity import ParityError, ParityReport, check_parity, parity_images
from efficientformer.export.quantize import (
    DEFAULT_CALIB_COUNT, CalibrationWarning, Int8Export, Int8Report, calibration_images, quantize_executorch, quantize_onnx,
)


@dataclass(frozen=True)
class ExportFormat:
    """One deployment format.

    Attributes:
        suffix: file name suffix of the exported file (".onnx").
        export: (model, path, img_size=, dynamic_batch=, **options) -> a record of the file with `.path`
            and `.to_dict()`.
        check: (model, path, atol=...) -> ParityReport; raises ParityError over tolerance.
        default_atol: tolerance on the largest absolute logit difference.
        quantize: (model, path, img_size=, calib=, calib_count=, check=, **options) -> Int8Export, the
            post-training int8 path with its own check (export.quantize); None when the format has none.
    """

    name: str
    suffix: str
    export: Callable[..., Any]
    check: Callable[..., ParityReport]
    default_atol: float
    quantize: Callable[..., Any] | None = None


FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat("onnx", ".onnx", export_onnx, check_onnx_parity, default_atol=1e-4, quantize=quantize_onnx),
    "executorch": ExportFormat("executorch", ".pte", export_executorch, check_executorch_parity, default_atol=1e-4,
                               quantize=quantize_executorch),
}


@dataclass(frozen=True)
class ExportResult:
    """An exported file and, when it was checked, its parity report."""

    format: str
    artifact: Any
    parity: ParityReport | None


def export_model(model: nn.Module, path: str | os.PathLike, format: str = "onnx", *,
                 img_size: int | tuple[int, int] | None = None, dynamic_batch: bool | None = None,
                 atol: float | None = None, check: bool = True, int8: bool = False, calib: Any = None,
                 calib_count: int = DEFAULT_CALIB_COUNT, **options: Any) -> ExportResult:
    """Export `model` to `path` in `format` and (by default) check parity on the format's runtime.

    Args:
        format: a key of FORMATS.
        img_size: input (height, width) or an int; default the model's `config.img_size`.
        dynamic_batch: a symbolic batch dimension where the format allows it; default the format's
            (ONNX: dynamic; ExecuTorch: static batch 1, True gives a bounded batch 1..`max_batch`).
        atol: parity tolerance; default the format's (1e-4 for fp32 ONNX). Not used for int8.
        check: run the parity check (it raises ParityError when it fails; the file stays written).
        int8: post-training int8 quantization (formats with `quantize`: onnx, executorch), checked
            against fp32 eager with the int8 tolerance of export.quantize (`min_top1`, `max_relative_error`
            options); the result's artifact is an Int8Export with sizes and latencies of both files.
        calib: int8 calibration images: a folder, a path,label list file, image paths or a tensor;
            default the parity images, with a CalibrationWarning.
        calib_count: use at most this many calibration images.
        options: format-specific export options (onnx: `opset`; executorch: `max_batch`).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    spec = FORMATS[format]
    if dynamic_batch is not None:
        options["dynamic_batch"] = dynamic_batch
    if int8:
        if spec.quantize is None:
            int8_formats = ", ".join(name for name, entry in FORMATS.items() if entry.quantize is not None)
            raise ValueError(f"no int8 export for format {format!r}; int8 is available for {int8_formats}")
        quantized = spec.quantize(model, path, img_size=img_size, calib=calib, calib_count=calib_count, check=check,
                                  **options)
        return ExportResult(format, quantized, quantized.report)
    artifact = spec.export(model, path, img_size=img_size, **options)
    parity = spec.check(model, artifact.path, atol=spec.default_atol if atol is None else atol) if check else None
    return ExportResult(format, artifact, parity)


__all__ = [
    "DEFAULT_CALIB_COUNT",
    "DEFAULT_OPSET",
    "FORMATS",
    "CalibrationWarning",
    "ExecutorchExport",
    "ExportFormat",
    "ExportResult",
    "Int8Export",
    "Int8Report",
    "OnnxExport",
    "ParityError",
    "ParityReport",
    "calibration_images",
    "check_executorch_parity",
    "check_onnx_parity",
    "check_parity",
    "export_executorch",
    "export_model",
    "export_onnx",
    "load_runner",
    "parity_images",
    "quantize_executorch",
    "quantize_onnx",
]
