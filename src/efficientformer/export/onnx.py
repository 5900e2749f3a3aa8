"""ONNX export with torch's dynamo exporter, and the parity check on onnxruntime.

The exported graph is that of the fused model (`efficientformer.fuse`: BN, layer scales and the
attention scale folded into convs, bias tables frozen as constants, one averaged head), traced by
`torch.export` and translated by onnxscript. With torch 2.13 the file uses opset 20 of the default
ONNX domain (`DEFAULT_OPSET`, torch's default; GELU is the opset-20 `Gelu` op) and IR version 10;
`opset=17` or `18` give files for older runtimes (GELU is then written with `Erf`). The input is
`images`, float32 (batch, 3, H, W); the output `logits` (or `features` for `num_classes=0`).

onnx, onnxscript and onnxruntime are optional (`pip install 'efficientformer[onnx]'`) and are
imported inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import nn

from efficientformer.errors import BadFileError, ConfigError, MissingFileError
from efficientformer.export.common import export_image_size, quiet_exporter
from efficientformer.export.onnx_rewrites import rewrite_for_onnxruntime
from efficientformer.export.parity import ParityReport, check_parity, eval_crop_pct, parity_images
from efficientformer.models.fuse import fuse
from efficientformer.utils import atomic_write, require

DEFAULT_OPSET = 20
DEFAULT_ATOL = 1e-4
INPUT_NAME = "images"
BATCH_DIM = "batch"
EXTRA = "onnx"


@dataclass(frozen=True)
class OnnxExport:
    """What `export_onnx` wrote.

    Attributes:
        input_shape: (batch, 3, H, W); batch is the string "batch" when it is dynamic.
        rewrites: the exact graph rewrites applied after export (export/onnx_rewrites.py), by name.
    """

    path: Path
    opset: int
    ir_version: int
    input_name: str
    output_name: str
    input_shape: tuple[int | str, ...]
    num_bytes: int
    rewrites: tuple[str, ...] = ()

    @property
    def dynamic_batch(self) -> bool:
        """True when the batch dimension is symbolic."""
        return isinstance(self.input_shape[0], str)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {**dataclasses.asdict(self), "path": str(self.path), "input_shape": list(self.input_shape),
                "dynamic_batch": self.dynamic_batch}


def export_onnx(model: nn.Module, path: str | os.PathLike, img_size: int | tuple[int, int] | None = None,
                dynamic_batch: bool = True, opset: int | None = None, rewrite: bool = True,
                approximate: tuple[str, ...] = ()) -> OnnxExport:
    """Write the fused, eval-mode `model` to an ONNX file (atomically: a reader never sees a partial file).

    Args:
        model: an EfficientFormerV2, or any module whose parts expose `.fuse()` (e.g. MobileNetV2);
            it is not modified.
        img_size: input (height, width) or an int for a square; default the model's `config.img_size`.
        dynamic_batch: make the batch dimension symbolic ("batch"); else the file takes batch 1 only.
        opset: ONNX opset of the default domain; default `DEFAULT_OPSET` (torch's default).
        rewrite: apply the exact graph rewrites for onnxruntime (export/onnx_rewrites.py); the
            file then runs the same numbers faster (within float rounding, checked by the parity test).
        approximate: opt-in approximations of `fuse` (models.fuse.APPROXIMATIONS, e.g. "gelu-tanh");
            default none, i.e. exact. Check such a file with a looser tolerance (APPROXIMATE_ATOL).
    """
    require("onnx", EXTRA)
    require("onnxscript", EXTRA)
    if getattr(model, "features_only", False):
        raise ConfigError("ONNX export of a features_only model is not supported; export the classifier model")
    height, width = export_image_size(model, img_size)
    path = Path(path)
    fused = fuse(model, approximate=approximate).to(device="cpu", dtype=torch.float32)
    output_name = "features" if getattr(model, "num_classes", 1) == 0 else "logits"
    # Batch 2 for a dynamic batch: torch.export specialises dimensions of size 1.
    example = torch.zeros(2 if dynamic_batch else 1, 3, height, width)  # (B, 3, H, W)
    dynamic_shapes = ({0: torch.export.Dim(BATCH_DIM, min=1)},) if dynamic_batch else None
    applied: dict[str, int] = {}
    proto = onnx_proto(fused, example, dynamic_shapes=dynamic_shapes, opset=opset, input_name=INPUT_NAME,
                       output_name=output_name, rewrite=rewrite, applied=applied)
    applied.update({name: 1 for name in approximate})
    data = proto.SerializeToString()
    with atomic_write(path) as handle:
        handle.write(data)
    opset_used = next(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx"))
    shape = (BATCH_DIM if dynamic_batch else 1, 3, height, width)
    return OnnxExport(path=path, opset=opset_used, ir_version=proto.ir_version, input_name=INPUT_NAME,
                      output_name=output_name, input_shape=shape, num_bytes=len(data),
                      rewrites=tuple(name for name, count in applied.items() if count))


def onnx_proto(fused: nn.Module, example: torch.Tensor, *, dynamic_shapes: Any = None, opset: int | None = None,
               input_name: str = "x", output_name: str | None = None, rewrite: bool = True,
               applied: dict[str, int] | None = None) -> Any:
    """The ONNX ModelProto of an inference module traced at `example` (torch's dynamo exporter + our rewrites).

    The one path from a module to ONNX: `export_onnx` (whole networks on images) and the runtime layer
    (export/runtimes.py: networks and single blocks on feature maps) both use it.

    Args:
        fused: the module to export as it is (fuse it first); float32 on the CPU.
        example: the input; its shape is the graph's, except the dimensions in `dynamic_shapes`.
        rewrite: apply export/onnx_rewrites.py; `applied` (if given) receives nodes rewritten per rewrite.
    """
    require("onnx", EXTRA)
    require("onnxscript", EXTRA)
    with quiet_exporter(), _reused_registry():
        program = torch.onnx.export(fused, (example,), dynamo=True, verbose=False, opset_version=opset,
                                    input_names=[input_name],
                                    output_names=None if output_name is None else [output_name],
                                    dynamic_shapes=dynamic_shapes)
    proto = program.model_proto
    counts = rewrite_for_onnxruntime(proto) if rewrite else {}
    if applied is not None:
        applied.update(counts)
    return proto


# opset -> the exporter's table of ATen -> ONNX functions, built once per process (see _reused_registry).
_REGISTRIES: dict[Any, Any] = {}


@contextlib.contextmanager
def _reused_registry() -> Iterator[None]:
    """Let torch's exporter build its ATen -> ONNX function table once per process instead of once per export.

    torch 2.13's `torch.onnx.export` rebuilds the table on every call (it parses the source of about
    7,000 onnxscript functions), which measured 0.68 s of the 1.36 s an average latency-table entry
    took to export on the 2-core machine: half of a paper-space table's lowering. The table depends
    only on the opset, and we never add custom translations to it, so one per opset serves every
    export; the graphs are the same (tests/export/test_onnx_registry.py). This reaches into the
    exporter's private `_registration` module: if it moves in another torch, exports run as before.
    """
    try:
        from torch.onnx._internal.exporter import _registration
    except ImportError:
        yield
        return
    registry_class = getattr(_registration, "ONNXRegistry", None)
    build = getattr(registry_class, "from_torchlib", None)
    if build is None or not isinstance(registry_class.__dict__.get("from_torchlib"), classmethod):
        yield
        return

    def reused(cls: type, *args: Any, **kwargs: Any) -> Any:
        key = (args, tuple(sorted(kwargs.items())))
        if key not in _REGISTRIES:
            _REGISTRIES[key] = build(*args, **kwargs)
        return _REGISTRIES[key]

    with mock.patch.object(registry_class, "from_torchlib", classmethod(reused)):
        yield


def onnxruntime_session(path: str | os.PathLike, num_threads: int | None = None, spinning: bool = False) -> Any:
    """An onnxruntime CPU InferenceSession for an ONNX file, with errors that name the file.

    Args:
        num_threads: intra-op threads; default onnxruntime's (one per physical core).
        spinning: let the pool's workers busy-wait between ops (onnxruntime's own default is on). Off
            by default: measured on the 2-core machine (README, "Deployment speed"), spinning made 2
            threads slower than 1 (S0 14.4 ms vs 12.8), and with several sessions alive in one process
            (bench, a user's app with more than one model) more than 2x slower, because an idle
            session's spinning worker takes the core from the session running; without it 2 threads
            are faster than 1 (S0 11.7 ms). With one thread there is no worker and it makes no difference.
    """
    ort = require("onnxruntime", EXTRA)
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"ONNX file {path} does not exist")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    if num_threads is not None:
        options.intra_op_num_threads = int(num_threads)
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
        raise BadFileError(f"onnxruntime cannot load {path}: {error}") from None


def check_onnx_parity(model: nn.Module, path: str | os.PathLike, *, atol: float = DEFAULT_ATOL,
                      images: torch.Tensor | None = None) -> ParityReport:
    """Run an ONNX file on onnxruntime and compare it with eager `model` on the parity images.

    The image size is read from the file's input. A file with a dynamic batch gets all images in one
    batch, one with a static batch gets them in batches of that size.

    Args:
        model: the eager model the file was exported from (compared unfused, in eval mode).
        atol: tolerance on the largest absolute output difference (1e-4 for fp32).
        images: (N, 3, H, W) preprocessed inputs; default `parity_images` at the file's input size.

    Raises:
        ParityError: the outputs differ by more than `atol`; `.report` holds the numbers.
    """
    ort = require("onnxruntime", EXTRA)
    session = onnxruntime_session(path)
    (model_input,) = session.get_inputs()
    batch_dim, _, height, width = model_input.shape
    static_batch = batch_dim if isinstance(batch_dim, int) else None
    if images is None:
        if not (isinstance(height, int) and isinstance(width, int)):
            raise ConfigError(f"{path} has a dynamic image size {model_input.shape}: pass the parity images")
        images = parity_images((height, width), crop_pct=eval_crop_pct(model))
        if static_batch is not None and len(images) % static_batch:
            images = images[:len(images) - len(images) % static_batch]

    def run(batch):
        return session.run(None, {model_input.name: batch})[0]

    return check_parity(model, run, images, atol=atol, format="onnx", runtime=f"onnxruntime {ort.__version__}",
                        batch_size=static_batch, path=str(path))


__all__ = ["DEFAULT_ATOL", "DEFAULT_OPSET", "OnnxExport", "check_onnx_parity", "export_onnx", "onnx_proto",
           "onnxruntime_session"]
