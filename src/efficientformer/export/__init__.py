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

from efficientformer.export.onnx import DEFAULT_OPSET, OnnxExport, check_onnx_parity, export_onnx
from efficientformer.export.parity import ParityError, ParityReport, check_parity, parity_images


@dataclass(frozen=True)
class ExportFormat:
    """One deployment format.

    Attributes:
        suffix: file name suffix of the exported file (".onnx").
        export: (model, path, img_size=, dynamic_batch=, **options) -> a record of the file with `.path`
            and `.to_dict()`.
        check: (model, path, atol=...) -> ParityReport; raises ParityError over tolerance.
        default_atol: tolerance on the largest absolute logit difference.
    """

    name: str
    suffix: str
    export: Callable[..., Any]
    check: Callable[..., ParityReport]
    default_atol: float


FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat("onnx", ".onnx", export_onnx, check_onnx_parity, default_atol=1e-4),
}


@dataclass(frozen=True)
class ExportResult:
    """An exported file and, when it was checked, its parity report."""

    format: str
    artifact: Any
    parity: ParityReport | None


def export_model(model: nn.Module, path: str | os.PathLike, format: str = "onnx", *,
                 img_size: int | tuple[int, int] | None = None, dynamic_batch: bool = True,
                 atol: float | None = None, check: bool = True, **options: Any) -> ExportResult:
    """Export `model` to `path` in `format` and (by default) check parity on the format's runtime.

    Args:
        format: a key of FORMATS.
        img_size: input (height, width) or an int; default the model's `config.img_size`.
        dynamic_batch: a symbolic batch dimension where the format allows it.
        atol: parity tolerance; default the format's (1e-4 for fp32 ONNX).
        check: run the parity check (it raises ParityError when it fails; the file stays written).
        options: format-specific export options (onnx: `opset`).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    spec = FORMATS[format]
    artifact = spec.export(model, path, img_size=img_size, dynamic_batch=dynamic_batch, **options)
    parity = spec.check(model, artifact.path, atol=spec.default_atol if atol is None else atol) if check else None
    return ExportResult(format, artifact, parity)


__all__ = [
    "DEFAULT_OPSET",
    "FORMATS",
    "ExportFormat",
    "ExportResult",
    "OnnxExport",
    "ParityError",
    "ParityReport",
    "check_onnx_parity",
    "check_parity",
    "export_model",
    "export_onnx",
    "parity_images",
]
