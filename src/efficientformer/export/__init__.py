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

from efficientformer.errors import ConfigError, UnknownNameError
from efficientformer.export.coreml import CoreMLExport, check_coreml_parity, export_coreml
from efficientformer.export.executorch import ExecutorchExport, check_executorch_parity, export_executorch
from efficientformer.export.onnx import DEFAULT_OPSET, OnnxExport, check_onnx_parity, export_onnx
from efficientformer.export.openvino import OpenVinoExport, check_openvino_parity, export_openvino
from efficientformer.export.parity import ParityError, ParityReport, ParityUnavailable, check_parity, parity_images
from efficientformer.export.quantize import (
    DEFAULT_CALIB_COUNT,
    CalibrationWarning,
    Int8Export,
    Int8Report,
    calibration_images,
    quantize_executorch,
    quantize_onnx,
)
from efficientformer.export.tflite import TfliteExport, check_tflite_parity, export_tflite

# Default parity tolerance of a file exported with an opt-in approximation (models.fuse.APPROXIMATIONS):
# tanh-GELU moves random-weight S0/S1/L logits by 1e-3..3e-3 against exact eager.
APPROXIMATE_ATOL = 2e-2


@dataclass(frozen=True)
class ExportFormat:
    """One deployment format.

    Attributes:
        suffix: file name suffix of the exported file (".onnx").
        export: (model, path, img_size=, dynamic_batch=, **options) -> a record of the file with `.path`
            and `.to_dict()`.
        check: (model, path, atol=...) -> ParityReport; raises ParityError over tolerance, and
            ParityUnavailable where the runtime cannot run here (CoreML off macOS).
        default_atol: tolerance on the largest absolute logit difference of a full-precision file;
            without `atol` export_model uses the check's own default, which may depend on the file
            (OpenVINO bf16/fp16 IRs, CoreML fp16 packages: 0.25).
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
    "openvino": ExportFormat("openvino", ".xml", export_openvino, check_openvino_parity, default_atol=1e-4),
    "tflite": ExportFormat("tflite", ".tflite", export_tflite, check_tflite_parity, default_atol=1e-4),
    "coreml": ExportFormat("coreml", ".mlpackage", export_coreml, check_coreml_parity, default_atol=1e-4),
}


@dataclass(frozen=True)
class ExportResult:
    """An exported file and, when it was checked, its parity report.

    Attributes:
        parity_unavailable: why parity could not be checked on this machine (then `parity` is None).
    """

    format: str
    artifact: Any
    parity: ParityReport | None
    parity_unavailable: str | None = None


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
        options: format-specific export options (onnx: `opset`, `rewrite`; executorch: `max_batch`;
            openvino: `precision` f32|bf16|fp16; coreml: `precision` f32|fp16; onnx and openvino:
            `approximate`, opt-in approximations checked with APPROXIMATE_ATOL unless `atol` is given).
    """
    if format not in FORMATS:
        raise UnknownNameError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    spec = FORMATS[format]
    if dynamic_batch is not None:
        options["dynamic_batch"] = dynamic_batch
    if int8:
        if spec.quantize is None:
            int8_formats = ", ".join(name for name, entry in FORMATS.items() if entry.quantize is not None)
            raise ConfigError(f"no int8 export for format {format!r}; int8 is available for {int8_formats}")
        quantized = spec.quantize(model, path, img_size=img_size, calib=calib, calib_count=calib_count, check=check,
                                  **options)
        return ExportResult(format, quantized, quantized.report)
    artifact = spec.export(model, path, img_size=img_size, **options)
    if not check:
        return ExportResult(format, artifact, None)
    if atol is None and options.get("approximate"):
        atol = APPROXIMATE_ATOL
    try:
        parity = spec.check(model, artifact.path, **({} if atol is None else {"atol": atol}))
    except ParityUnavailable as error:
        return ExportResult(format, artifact, None, parity_unavailable=str(error))
    return ExportResult(format, artifact, parity)


__all__ = [
    "APPROXIMATE_ATOL",
    "DEFAULT_CALIB_COUNT",
    "DEFAULT_OPSET",
    "FORMATS",
    "CalibrationWarning",
    "CoreMLExport",
    "ExecutorchExport",
    "ExportFormat",
    "ExportResult",
    "Int8Export",
    "Int8Report",
    "OnnxExport",
    "OpenVinoExport",
    "ParityError",
    "ParityReport",
    "ParityUnavailable",
    "TfliteExport",
    "calibration_images",
    "check_coreml_parity",
    "check_executorch_parity",
    "check_onnx_parity",
    "check_openvino_parity",
    "check_parity",
    "check_tflite_parity",
    "export_coreml",
    "export_executorch",
    "export_model",
    "export_onnx",
    "export_openvino",
    "export_tflite",
    "parity_images",
    "quantize_executorch",
    "quantize_onnx",
]
