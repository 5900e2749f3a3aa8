"""Post-training int8 quantization with calibration images, checked against float32 eager PyTorch.

- ExecuTorch: PT2E (`torchao.quantization.pt2e` prepare_pt2e / convert_pt2e) with the XNNPACK
  quantizer, symmetric per-channel int8 weights and int8 activations, then lowered to XNNPACK like
  the float32 file (`export.executorch`).
- ONNX: onnxruntime static quantization (`quantize_static`, QDQ format, per-channel int8 weights,
  uint8 activations, min-max calibration) of the float32 file that `export.onnx` writes.

Calibration images go through the eval transform: a folder of class folders or a `path,label` list
file (read by `data.folder`), a flat folder of images, or a list of image paths. Without any, the
parity images are used, with a `CalibrationWarning`: enough to run, not to calibrate well.

The int8 check compares the file with float32 eager PyTorch on the parity images. It is a sanity
bound that catches a broken quantization (wrong scales, a mis-lowered layout), not an accuracy
claim: measure accuracy on a validation set. It fails when the top-1 agreement is below `min_top1`
(default 0.5: with the 4 parity images at most 2 may change class, since random or barely-trained
weights have near-tied logits) or when the relative error ||int8 - fp32||_2 / ||fp32||_2 of any
image is above `max_relative_error` (default 0.5, a cosine similarity of about 0.87). Measured here:
0.03-0.09 for the tiny test model and 0.27 for S0 with random weights; logits that have nothing to
do with the fp32 ones give about 1.4.
The report also has the max/mean absolute logit delta and the lowest cosine similarity; the export
result has the size of both files and their median latency on the same runtime (printed, not checked).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from efficientformer.data.folder import find_samples, is_image_file
from efficientformer.data.preprocess import DEFAULT_CROP_PCT, eval_transform, load_image
from efficientformer.errors import BadFileError, ConfigError, MissingFileError
from efficientformer.export import executorch as et
from efficientformer.export import onnx as onnx_export
from efficientformer.export.common import export_image_size
from efficientformer.export.parity import (
    ParityError,
    ParityReport,
    compare_outputs,
    eager_outputs,
    eval_crop_pct,
    parity_images,
)
from efficientformer.utils import atomic_write, require

DEFAULT_CALIB_COUNT = 64
DEFAULT_MIN_TOP1 = 0.5
DEFAULT_MAX_RELATIVE_ERROR = 0.5
LATENCY_ROUNDS = 7
LATENCY_CALLS = 3

CalibSource = str | os.PathLike | Sequence[str | os.PathLike] | torch.Tensor | None
Runner = Callable[[np.ndarray], np.ndarray]


class CalibrationWarning(UserWarning):
    """Int8 calibration on the built-in parity images because no calibration images were given."""


@dataclass(frozen=True)
class Int8Report(ParityReport):
    """How closely an int8 file reproduces float32 eager PyTorch (`atol` is unused: NaN, left out of `to_dict`).

    Attributes:
        cosine_similarity: lowest cosine similarity of an image's logits.
        min_top1: the check fails below this top-1 agreement.
        max_relative_error: the check fails above this relative error (`relative_error`: the largest
            ||int8 - fp32||_2 / ||fp32||_2 of an image's logits).
    """

    cosine_similarity: float
    min_top1: float
    max_relative_error: float

    @property
    def passed(self) -> bool:
        """True when top-1 agreement and relative error are within their limits (NaN fails)."""
        return bool(self.top1_agreement >= self.min_top1 and self.relative_error <= self.max_relative_error)

    def to_dict(self) -> dict[str, float | int | str | bool]:
        """Plain values for JSON (without the unused `atol`, so the JSON has no NaN)."""
        return {key: value for key, value in super().to_dict().items() if key != "atol"}

    def summary(self) -> str:
        """One line with the numbers."""
        return (f"int8 vs fp32: top-1 agreement {self.top1_agreement:.0%} (min {self.min_top1:.0%}), relative error "
                f"{self.relative_error:.3g} (max {self.max_relative_error:g}), cosine {self.cosine_similarity:.4f}, "
                f"max abs diff {self.max_abs_diff:.3g}, mean abs diff {self.mean_abs_diff:.3g} "
                f"over {self.num_images} images on {self.runtime}")


@dataclass(frozen=True)
class Int8Export:
    """An int8 file, the float32 file it was compared with (not kept), and the comparison.

    Attributes:
        artifact: the int8 file's record (ExecutorchExport or OnnxExport).
        latency_ms: median batch-1 latency of {"fp32": ..., "int8": ...} on the same runtime, interleaved.
    """

    path: Path
    format: str
    artifact: Any
    calib_source: str
    num_calib_images: int
    num_bytes: int
    fp32_num_bytes: int
    latency_ms: dict[str, float]
    report: Int8Report | None

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {**self.artifact.to_dict(), "int8": True, "calib_source": self.calib_source,
                "num_calib_images": self.num_calib_images, "fp32_num_bytes": self.fp32_num_bytes,
                "latency_ms": dict(self.latency_ms)}


def _image_paths(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    if not isinstance(source, (str, os.PathLike)):
        paths = [str(path) for path in source]
        missing = [path for path in paths if not Path(path).is_file()]
        if missing:
            raise MissingFileError(f"calibration image(s) not found: {', '.join(missing[:5])}")
        return paths
    root = Path(source)
    if root.is_file() and is_image_file(root.name):
        return [str(root)]
    if root.is_dir():
        with os.scandir(root) as entries:
            entries = list(entries)
        has_class_folders = any(entry.is_dir() and not entry.name.startswith(".") for entry in entries)
        if not has_class_folders:
            paths = sorted(entry.path for entry in entries if entry.is_file() and is_image_file(entry.name))
            if not paths:
                raise BadFileError(f"calibration folder {root} has no images (and no class folders)")
            return paths
    return [path for path, _ in find_samples(root)[1]]  # class folders or a path,label list file


def calibration_images(source: CalibSource, img_size: int | tuple[int, int], count: int = DEFAULT_CALIB_COUNT,
                       crop_pct: float = DEFAULT_CROP_PCT) -> tuple[torch.Tensor, str]:
    """(images (N, 3, H, W), a description of where they came from) for int8 calibration.

    Args:
        source: a folder (class folders or flat), a `path,label` list file, a list of image paths,
            a ready (N, 3, H, W) tensor, or None for the parity images (with a CalibrationWarning).
        count: use at most this many, spread evenly over the sorted files (so over the classes).
    """
    if count < 1:
        raise ConfigError(f"calibration image count must be >= 1, got {count}")
    if source is None:
        warnings.warn("no calibration images given: calibrating int8 on the 4 built-in parity images; pass a folder "
                      "of real images (--calib) for a representative calibration", CalibrationWarning, stacklevel=2)
        return parity_images(img_size), "parity images"
    if isinstance(source, torch.Tensor):
        return source[:count], f"{min(count, len(source))} given images"
    paths = _image_paths(source)
    picks = sorted({int(i) for i in np.linspace(0, len(paths) - 1, min(count, len(paths))).round()})
    images = torch.stack([eval_transform(load_image(paths[i]), img_size, crop_pct=crop_pct) for i in picks])
    where = str(source) if isinstance(source, (str, os.PathLike)) else f"{len(paths)} listed files"
    return images, where


def compare_int8(reference: np.ndarray, candidate: np.ndarray, *, runtime: str, format: str,
                 min_top1: float = DEFAULT_MIN_TOP1,
                 max_relative_error: float = DEFAULT_MAX_RELATIVE_ERROR) -> Int8Report:
    """An Int8Report of int8 outputs (N, classes) against float32 ones."""
    base = compare_outputs(reference, candidate, atol=float("nan"), format=format, runtime=runtime)
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    ref_norm = np.linalg.norm(reference, axis=-1)  # (N,)
    cand_norm = np.linalg.norm(candidate, axis=-1)  # (N,)
    cosine = (reference * candidate).sum(-1) / np.maximum(ref_norm * cand_norm, 1e-12)  # (N,)
    finite = np.isfinite(candidate).all()
    return Int8Report(**dataclasses.asdict(base), cosine_similarity=float(cosine.min()) if finite else float("nan"),
                      min_top1=min_top1, max_relative_error=max_relative_error)


def check_int8(model: nn.Module, run: Runner, images: torch.Tensor, *, format: str, runtime: str, path: str,
               batch_size: int = 1, min_top1: float = DEFAULT_MIN_TOP1,
               max_relative_error: float = DEFAULT_MAX_RELATIVE_ERROR) -> Int8Report:
    """Compare an int8 file's `run` with float32 eager `model` on `images` (batches of `batch_size`)."""
    reference = eager_outputs(model, images)
    batch = np.ascontiguousarray(images.float().cpu().numpy())
    candidate = np.concatenate([np.asarray(run(batch[i:i + batch_size])) for i in range(0, len(batch), batch_size)])
    if candidate.shape != reference.shape:
        raise ValueError(f"{path}: output shape {candidate.shape} on {runtime}, {reference.shape} in eager PyTorch")
    return compare_int8(reference, candidate, runtime=runtime, format=format, min_top1=min_top1,
                        max_relative_error=max_relative_error)


def interleaved_latency_ms(runners: dict[str, Runner], batch: np.ndarray, rounds: int = LATENCY_ROUNDS,
                           calls: int = LATENCY_CALLS) -> dict[str, float]:
    """Median milliseconds per call of each runner on `batch`, alternating runners so load hits all alike."""
    for run in runners.values():
        run(batch)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            for _ in range(calls):
                start = time.perf_counter()
                run(batch)
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def _finish(model: nn.Module, path: Path, format: str, artifact: Any, fp32_path: Path, runners: tuple[Runner, Runner],
            runtime: str, calib: tuple[torch.Tensor, str], img_size: tuple[int, int], check: bool,
            tolerance: dict[str, float]) -> Int8Export:
    """Check the int8 file against fp32 eager, time both files, raise ParityError over tolerance."""
    fp32_run, int8_run = runners
    images = parity_images(img_size, crop_pct=eval_crop_pct(model))
    report = check_int8(model, int8_run, images, format=format, runtime=runtime, path=str(path), **tolerance)
    latency = interleaved_latency_ms({"fp32": fp32_run, "int8": int8_run}, images[:1].numpy())
    result = Int8Export(path=path, format=format, artifact=artifact, calib_source=calib[1],
                        num_calib_images=len(calib[0]), num_bytes=path.stat().st_size,
                        fp32_num_bytes=fp32_path.stat().st_size, latency_ms=latency, report=report)
    if check and not report.passed:
        raise ParityError(report, str(path))
    return result


def quantize_executorch(model: nn.Module, path: str | os.PathLike, img_size: int | tuple[int, int] | None = None,
                        dynamic_batch: bool = False, max_batch: int = et.DEFAULT_MAX_BATCH, *,
                        calib: CalibSource = None,
                        calib_count: int = DEFAULT_CALIB_COUNT, check: bool = True, min_top1: float = DEFAULT_MIN_TOP1,
                        max_relative_error: float = DEFAULT_MAX_RELATIVE_ERROR) -> Int8Export:
    """Write an int8 ExecuTorch program (PT2E + XNNPACK quantizer, per-channel symmetric) and check it.

    Args:
        calib: calibration images (see `calibration_images`).
        check: raise ParityError when the int8 file is outside the int8 tolerance (module docstring).
    """
    require("executorch", et.EXTRA)
    require("torchao", et.EXTRA)
    size = export_image_size(model, img_size)
    images, where = calibration_images(calib, size, calib_count)
    fused = et.inference_module(model)
    batch_range = et.batch_range_of(dynamic_batch, max_batch)
    with et.quiet_executorch():
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        prepared = prepare_pt2e(et.capture(fused, size, dynamic_batch, max_batch).module(), quantizer)
        with torch.no_grad():
            for start in range(0, len(images), batch_range[1]):
                prepared(images[start:start + batch_range[1]])
        quantized = convert_pt2e(prepared)
    data, delegates = et.lower_to_xnnpack(et.capture(quantized, size, dynamic_batch, max_batch), batch_range)
    artifact = et.write_program(Path(path), data, size, batch_range, delegates, int8=True)
    with tempfile.TemporaryDirectory(prefix="efficientformer-fp32-") as folder:
        fp32 = et.export_executorch(model, Path(folder) / "fp32.pte", size, dynamic_batch, max_batch)
        runners = (et.load_runner(fp32.path), et.load_runner(artifact.path))
        return _finish(model, artifact.path, "executorch", artifact, fp32.path, runners,
                       f"executorch {et.executorch_version()} ({et.BACKEND})", (images, where), size, check,
                       {"min_top1": min_top1, "max_relative_error": max_relative_error})


class _CalibrationReader:
    """onnxruntime CalibrationDataReader over (N, 3, H, W) images, one image per batch."""

    def __init__(self, images: torch.Tensor, input_name: str) -> None:
        self._batches = iter([{input_name: image[None].numpy()} for image in images])  # (1, 3, H, W) each

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _onnx_runner(path: Path) -> Runner:
    session = onnx_export.onnxruntime_session(path)
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def quantize_onnx(model: nn.Module, path: str | os.PathLike, img_size: int | tuple[int, int] | None = None,
                  dynamic_batch: bool = True, opset: int | None = None, *, calib: CalibSource = None,
                  calib_count: int = DEFAULT_CALIB_COUNT, check: bool = True, min_top1: float = DEFAULT_MIN_TOP1,
                  max_relative_error: float = DEFAULT_MAX_RELATIVE_ERROR) -> Int8Export:
    """Write an int8 ONNX file (onnxruntime static quantization, QDQ, per-channel weights) and check it.

    Args:
        calib: calibration images (see `calibration_images`).
        check: raise ParityError when the int8 file is outside the int8 tolerance (module docstring).
    """
    ort = require("onnxruntime", onnx_export.EXTRA)
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    size = export_image_size(model, img_size)
    images, where = calibration_images(calib, size, calib_count)
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="efficientformer-int8-") as folder:
        fp32 = onnx_export.export_onnx(model, Path(folder) / "fp32.onnx", size, dynamic_batch, opset)
        prepared, int8 = Path(folder) / "prepared.onnx", Path(folder) / "int8.onnx"
        quant_pre_process(str(fp32.path), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(int8), _CalibrationReader(images, fp32.input_name),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        data = int8.read_bytes()
        with atomic_write(path) as handle:
            handle.write(data)
        artifact = dataclasses.replace(fp32, path=path, num_bytes=len(data))
        runners = (_onnx_runner(fp32.path), _onnx_runner(path))
        return _finish(model, path, "onnx", artifact, fp32.path, runners, f"onnxruntime {ort.__version__}",
                       (images, where), size, check, {"min_top1": min_top1, "max_relative_error": max_relative_error})


__all__ = ["DEFAULT_CALIB_COUNT", "DEFAULT_MAX_RELATIVE_ERROR", "DEFAULT_MIN_TOP1", "CalibrationWarning", "Int8Export",
           "Int8Report", "calibration_images", "check_int8", "compare_int8", "quantize_executorch", "quantize_onnx"]
