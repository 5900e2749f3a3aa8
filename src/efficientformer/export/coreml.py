"""CoreML export (.mlpackage, ML Program) of the fused model, a structural check anywhere, parity on macOS.

The fused model is captured with `torch.export` (with a symbolic batch dimension by default) and
converted by coremltools to an ML Program (minimum deployment target iOS 16 / macOS 13) with an
`images` input, float32 (batch, 3, H, W), and a `logits` output. `precision="f32"` converts with
fp32 compute precision (for parity with PyTorch); "fp16" is coremltools' default for ML Programs:
fp16 weights and arithmetic, half the file size.

CoreML models run only on macOS (the Core ML framework). Everywhere else, `export_coreml` still
writes the package and `inspect_coreml` checks it structurally: the spec loads, input and output
names and shapes, operation count, and no fp16 tensor in an f32 package. `check_coreml_parity`
runs the file on macOS and raises `ParityUnavailable` elsewhere, after the structural check.

coremltools is optional (`pip install 'efficientformer[coreml]'`) and imported inside the functions.
coremltools 9.0 has been tested by its authors with torch up to 2.7 (it warns so on import, a
warning we silence); with torch 2.13 the conversion of this model works (our tests).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib.metadata
import io
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from efficientformer.errors import BadFileError, ConfigError, MissingFileError, UnavailableError
from efficientformer.export.common import export_image_size, quiet_exporter
from efficientformer.export.parity import ParityReport, ParityUnavailable, check_parity, eval_crop_pct, parity_images
from efficientformer.models.fuse import fuse
from efficientformer.utils.optional import require

EXTRA = "coreml"
INPUT_NAME = "images"
BATCH_DIM = "batch"
# Default parity tolerance on the largest absolute logit difference, per precision.
PRECISIONS: dict[str, float] = {"f32": 1e-4, "fp16": 0.25}
DEFAULT_PRECISION = "f32"
DEFAULT_ATOL = PRECISIONS[DEFAULT_PRECISION]
_METADATA_PRECISION = "efficientformer.precision"
# MIL DataType enum values (coremltools.proto.MIL_pb2.DataType).
_FLOAT16, _FLOAT32 = 10, 11


@contextlib.contextmanager
def _quiet_coremltools() -> Iterator[None]:
    """Silence coremltools' notices: untested torch/scikit-learn versions, absent macOS libraries,
    deprecation warnings of its own internals (hundreds per conversion) and its tqdm progress bars,
    which have no off switch: stderr is captured, and written out only if the body raises."""
    loggers = [logging.getLogger(name) for name in ("coremltools", "torchao")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    captured = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(captured):
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"coremltools\.")
            yield
    except BaseException:
        sys.stderr.write(captured.getvalue())
        raise
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _coremltools() -> ModuleType:
    with _quiet_coremltools():
        return require("coremltools", EXTRA)


@dataclass(frozen=True)
class CoreMLExport:
    """What `export_coreml` wrote (a .mlpackage folder), as read back from its spec.

    Attributes:
        precision: "f32" or "fp16".
        input_shape: (batch, 3, H, W); batch is the string "batch" when it is a range.
        max_batch: the largest batch the input accepts (None: unbounded).
        num_ops: operations of the main function (constants included); `op_counts` by type.
        num_bytes: size of all files of the package.
    """

    path: Path
    precision: str
    input_name: str
    output_name: str
    input_shape: tuple[int | str, ...]
    output_shape: tuple[int | str, ...]
    max_batch: int | None
    num_ops: int
    op_counts: dict[str, int]
    spec_version: int
    num_bytes: int
    runtime_version: str

    @property
    def dynamic_batch(self) -> bool:
        """True when the batch dimension is a range."""
        return isinstance(self.input_shape[0], str)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {**dataclasses.asdict(self), "path": str(self.path), "input_shape": list(self.input_shape),
                "output_shape": list(self.output_shape), "dynamic_batch": self.dynamic_batch}


def export_coreml(model: nn.Module, path: str | os.PathLike, img_size: int | tuple[int, int] | None = None,
                  dynamic_batch: bool = True, precision: str = DEFAULT_PRECISION) -> CoreMLExport:
    """Write the fused, eval-mode `model` as a CoreML ML Program package and check its structure.

    The package is built in a temporary folder beside `path` and moved into place when complete.

    Args:
        model: an EfficientFormerV2 or any module whose parts expose `.fuse()`; it is not modified.
        path: the .mlpackage folder to write (replaced if it exists).
        img_size: input (height, width) or an int for a square; default the model's `config.img_size`.
        dynamic_batch: accept any batch size >= 1; else the package takes batch 1 only.
        precision: "f32" (fp32 compute precision, default) or "fp16".

    Raises:
        ValueError: the written package fails the structural check (see `inspect_coreml`).
    """
    ct = _coremltools()
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown CoreML precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    path = Path(path)
    if path.suffix != ".mlpackage":
        raise ConfigError(f"a CoreML ML Program is written as <name>.mlpackage; got {path}")
    if not path.parent.is_dir():
        raise MissingFileError(f"cannot write {path}: directory {path.parent} does not exist")
    if getattr(model, "features_only", False):
        raise ConfigError("CoreML export of a features_only model is not supported; export the classifier model")
    height, width = export_image_size(model, img_size)
    fused = fuse(model).to(device="cpu", dtype=torch.float32)
    output_name = "features" if getattr(model, "num_classes", 1) == 0 else "logits"
    example = torch.zeros(2 if dynamic_batch else 1, 3, height, width)  # (B, 3, H, W)
    dynamic_shapes = ({0: torch.export.Dim(BATCH_DIM, min=1)},) if dynamic_batch else None
    with quiet_exporter(), _quiet_coremltools():
        program = torch.export.export(fused, (example,), dynamic_shapes=dynamic_shapes).run_decompositions({})
        compute_precision = ct.precision.FLOAT32 if precision == "f32" else ct.precision.FLOAT16
        mlmodel = ct.convert(program, convert_to="mlprogram", compute_precision=compute_precision,
                             minimum_deployment_target=ct.target.iOS16)
        spec = mlmodel.get_spec()
        ct.utils.rename_feature(spec, spec.description.input[0].name, INPUT_NAME)
        ct.utils.rename_feature(spec, spec.description.output[0].name, output_name)
        mlmodel = ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)
    mlmodel.short_description = f"{getattr(getattr(model, 'config', None), 'name', type(model).__name__)} " \
                                f"(fused), {precision}, input {INPUT_NAME} (batch, 3, {height}, {width})"
    mlmodel.user_defined_metadata[_METADATA_PRECISION] = precision
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        mlmodel.save(str(staging / path.name))
        if path.exists():
            os.replace(path, staging / "previous")
        os.replace(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return inspect_coreml(path, expect_image_size=(height, width))


def _dims(feature: Any) -> tuple[tuple[int, ...], list[tuple[int, int]]]:
    array = feature.type.multiArrayType
    ranges = [(r.lowerBound, r.upperBound) for r in array.shapeRange.sizeRanges]
    return tuple(array.shape), ranges


def inspect_coreml(path: str | os.PathLike, expect_image_size: tuple[int, int] | None = None) -> CoreMLExport:
    """Read a .mlpackage's spec (no Core ML runtime needed) and check that it is a sound export of ours.

    Checks: the spec loads; one float32 input (batch, 3, H, W) and one output (batch, classes); the
    main function has operations; an f32 package has no fp16 tensor and an fp16 package has some.

    Raises:
        FileNotFoundError: no package at `path`.
        ValueError: the package cannot be read or fails a check; the message names the file and the check.
    """
    ct = _coremltools()
    path = Path(path)
    if not path.is_dir():
        raise MissingFileError(f"CoreML package {path} does not exist")
    try:
        with _quiet_coremltools():
            mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
        spec = mlmodel.get_spec()
    except Exception as error:  # coremltools raises assorted errors for a damaged package
        raise BadFileError(f"coremltools cannot read {path}: {error}") from None

    def fail(check: str) -> BadFileError:
        return BadFileError(f"CoreML package {path} fails the structural check: {check}")

    if spec.WhichOneof("Type") != "mlProgram":
        raise fail(f"it is a {spec.WhichOneof('Type')}, not an mlProgram")
    if len(spec.description.input) != 1 or len(spec.description.output) != 1:
        raise fail(f"{len(spec.description.input)} inputs and {len(spec.description.output)} outputs, expected 1 and 1")
    model_input, model_output = spec.description.input[0], spec.description.output[0]
    shape, ranges = _dims(model_input)
    if model_input.type.multiArrayType.dataType != ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32:
        raise fail(f"input {model_input.name} is not float32")
    if len(shape) != 4 or shape[1] != 3:
        raise fail(f"input {model_input.name} has shape {shape}, expected (batch, 3, H, W)")
    if expect_image_size is not None and tuple(shape[2:]) != tuple(expect_image_size):
        raise fail(f"input image size {tuple(shape[2:])}, expected {tuple(expect_image_size)}")
    low, high = ranges[0] if ranges else (shape[0], shape[0])
    dynamic = (low, high) != (shape[0], shape[0])
    max_batch = None if high < 0 or high >= 2**31 - 1 else int(high)  # INT32_MAX: unbounded
    input_shape = (BATCH_DIM if dynamic else int(shape[0]), 3, int(shape[2]), int(shape[3]))

    op_counts: collections.Counter[str] = collections.Counter()
    dtypes: collections.Counter[int] = collections.Counter()
    main = spec.mlProgram.functions.get("main")
    if main is None:
        raise fail("no main function")
    out_dims: list[int | str] = []
    for block in main.block_specializations.values():
        for operation in block.operations:
            op_counts[operation.type] += 1
            dtypes.update(output.type.tensorType.dataType for output in operation.outputs)
            for output in operation.outputs:
                if output.name == model_output.name:  # the description omits a dynamic output's shape
                    out_dims = [d.constant.size if d.WhichOneof("dimension") == "constant" else BATCH_DIM
                                for d in output.type.tensorType.dimensions]
    output_shape = (input_shape[0], *map(int, out_dims[1:])) if len(out_dims) == 2 else tuple(out_dims)
    if len(output_shape) != 2:
        raise fail(f"output {model_output.name} has shape {tuple(out_dims)}, expected (batch, classes)")
    compute = sum(count for kind, count in op_counts.items() if kind != "const")
    if compute == 0:
        raise fail("the main function has no operations")
    precision = mlmodel.user_defined_metadata.get(_METADATA_PRECISION) or ("fp16" if dtypes[_FLOAT16] else "f32")
    if precision == "f32" and dtypes[_FLOAT16]:
        raise fail(f"f32 was asked but {dtypes[_FLOAT16]} tensors are fp16")
    if precision == "fp16" and not dtypes[_FLOAT16]:
        raise fail("fp16 was asked but no tensor is fp16")
    num_bytes = sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
    return CoreMLExport(path=path, precision=precision, input_name=model_input.name, output_name=model_output.name,
                        input_shape=input_shape, output_shape=output_shape, max_batch=max_batch,
                        num_ops=sum(op_counts.values()), op_counts=dict(op_counts.most_common()),
                        spec_version=int(spec.specificationVersion), num_bytes=num_bytes,
                        runtime_version=importlib.metadata.version("coremltools"))


def _unavailable_reason() -> str | None:
    if sys.platform != "darwin":
        return f"CoreML models run only on macOS (the Core ML framework); this is {sys.platform}"
    return None


def load_runner(path: str | os.PathLike, num_threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A callable float32 (B, 3, H, W) array -> logits that runs the package on Core ML's CPU (macOS only).

    Args:
        num_threads: ignored: Core ML has no thread-count setting.

    Raises:
        RuntimeError: not on macOS.
    """
    ct = _coremltools()
    reason = _unavailable_reason()
    if reason:
        raise UnavailableError(f"cannot run {path}: {reason}")
    info = inspect_coreml(path)
    mlmodel = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)

    def run(batch: np.ndarray) -> np.ndarray:
        outputs = mlmodel.predict({info.input_name: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.asarray(outputs[info.output_name], dtype=np.float32)
    return run


def check_coreml_parity(model: nn.Module, path: str | os.PathLike, *, atol: float | None = None,
                        images: torch.Tensor | None = None) -> ParityReport:
    """Check a package structurally, then (on macOS) run it on Core ML's CPU and compare with eager `model`.

    Args:
        atol: tolerance on the largest absolute logit difference; default by the package's precision
            (1e-4 for f32, 0.25 for fp16).
        images: (N, 3, H, W) inputs; default `parity_images` at the package's input size.

    Raises:
        ParityUnavailable: not on macOS (the structural check has passed).
        ParityError: the outputs differ by more than `atol`; `.report` holds the numbers.
    """
    info = inspect_coreml(path)
    reason = _unavailable_reason()
    if reason:
        raise ParityUnavailable(f"{reason}: {path} was checked structurally only ({info.num_ops} operations, "
                                f"input {info.input_name} {info.input_shape}, {info.precision}); "
                                "run `efficientformer export --format coreml` on a Mac for parity")
    batch_size = None if info.dynamic_batch else int(info.input_shape[0])
    if images is None:
        images = parity_images(tuple(info.input_shape[2:]), crop_pct=eval_crop_pct(model))
        if batch_size is not None and len(images) % batch_size:
            images = images[:len(images) - len(images) % batch_size]
    return check_parity(model, load_runner(path), images, atol=PRECISIONS[info.precision] if atol is None else atol,
                        format="coreml", runtime=f"coremltools {info.runtime_version} CoreML CPU ({info.precision})",
                        batch_size=batch_size, path=str(path))


__all__ = ["DEFAULT_ATOL", "DEFAULT_PRECISION", "PRECISIONS", "CoreMLExport", "check_coreml_parity", "export_coreml",
           "inspect_coreml", "load_runner"]
