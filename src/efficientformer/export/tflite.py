"""TFLite (LiteRT) export of the fused model with litert-torch, and its parity check on the LiteRT interpreter.

litert-torch captures the fused model with `torch.export` and lowers it to a .tflite flatbuffer
(fp32, NCHW as in PyTorch; the converter inserts the layout transposes). The file has one
signature, `serving_default`, with input `images`, float32 (1, 3, H, W), and output `logits`.

The batch is static (1): litert-torch 0.10 cannot lower a symbolic batch through the model's
reshapes (its JAX bridge needs concrete shapes), so `dynamic_batch=True` gives a batch-1 file, as
`export_model` allows ("a symbolic batch dimension where the format allows it").

litert-torch and ai-edge-litert are optional (`pip install 'efficientformer[tflite]'`, about 2 GB
with their JAX and TensorFlow-Lite dependencies) and imported inside the functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from efficientformer.errors import BadFileError, ConfigError, MissingFileError
from efficientformer.export.common import export_image_size, quiet_exporter
from efficientformer.export.parity import ParityReport, check_parity, eval_crop_pct, parity_images
from efficientformer.models.fuse import fuse
from efficientformer.utils import atomic_write, require

EXTRA = "tflite"
INPUT_NAME = "images"
SIGNATURE = "serving_default"
DEFAULT_ATOL = 1e-4


class _Signature(nn.Module):
    """Names the file's input and output: forward(images) -> {"logits": ...}."""

    def __init__(self, model: nn.Module, output_name: str) -> None:
        super().__init__()
        self.model = model
        self.output_name = output_name

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.output_name: self.model(images)}


@dataclass(frozen=True)
class TfliteExport:
    """What `export_tflite` wrote.

    Attributes:
        input_shape: (1, 3, H, W): the batch is always static.
    """

    path: Path
    signature: str
    input_name: str
    output_name: str
    input_shape: tuple[int, ...]
    num_bytes: int
    runtime_version: str

    @property
    def dynamic_batch(self) -> bool:
        """Always False (see the module docstring)."""
        return False

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {**dataclasses.asdict(self), "path": str(self.path), "input_shape": list(self.input_shape),
                "dynamic_batch": self.dynamic_batch}


@contextlib.contextmanager
def _no_progress() -> Iterator[None]:
    """Turn off litert-torch's progress lines (it reads LITERT_TORCH_SHOW_PROGRESS each time)."""
    key = "LITERT_TORCH_SHOW_PROGRESS"
    previous = os.environ.get(key)
    os.environ[key] = "n"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous


def runtime_version() -> str:
    """"litert-torch X, ai-edge-litert Y" for the installed packages."""
    require("ai_edge_litert", EXTRA)
    return (f"litert-torch {importlib.metadata.version('litert-torch')}, "
            f"ai-edge-litert {importlib.metadata.version('ai-edge-litert')}")


def export_tflite(model: nn.Module, path: str | os.PathLike, img_size: int | tuple[int, int] | None = None,
                  dynamic_batch: bool = True) -> TfliteExport:
    """Write the fused, eval-mode `model` to a .tflite file (atomically), batch 1.

    Args:
        model: an EfficientFormerV2 or any module whose parts expose `.fuse()`; it is not modified.
        img_size: input (height, width) or an int for a square; default the model's `config.img_size`.
        dynamic_batch: accepted for the common export signature; the file's batch is 1 either way.
    """
    with _no_progress():
        litert_torch = require("litert_torch", EXTRA)
    require("ai_edge_litert", EXTRA)
    path = Path(path)
    if getattr(model, "features_only", False):
        raise ConfigError("TFLite export of a features_only model is not supported; export the classifier model")
    height, width = export_image_size(model, img_size)
    output_name = "features" if getattr(model, "num_classes", 1) == 0 else "logits"
    wrapped = _Signature(fuse(model).to(device="cpu", dtype=torch.float32), output_name).eval()
    example = torch.zeros(1, 3, height, width)  # (1, 3, H, W)
    with _no_progress(), quiet_exporter():
        converted = litert_torch.convert(wrapped, sample_kwargs={INPUT_NAME: example})
        data = converted.model_content()
    with atomic_write(path) as handle:
        handle.write(data)
    return TfliteExport(path=path, signature=SIGNATURE, input_name=INPUT_NAME, output_name=output_name,
                        input_shape=(1, 3, height, width), num_bytes=len(data), runtime_version=runtime_version())


def _interpreter(path: str | os.PathLike, num_threads: int | None) -> Any:
    interpreter_module = require("ai_edge_litert.interpreter", EXTRA)
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"TFLite file {path} does not exist")
    if num_threads is not None and num_threads < 1:
        raise ConfigError(f"num_threads must be >= 1, got {num_threads}")
    try:
        return interpreter_module.Interpreter(model_path=str(path), num_threads=num_threads)
    except Exception as error:  # the interpreter raises ValueError/RuntimeError with its own text
        raise BadFileError(f"LiteRT cannot load {path}: {error}") from None


def load_runner(path: str | os.PathLike, num_threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A callable float32 (B, 3, H, W) array -> output array on the LiteRT interpreter (XNNPACK, CPU).

    A batch larger than the file's is run one file-batch at a time.

    Args:
        num_threads: interpreter threads; default LiteRT's.
    """
    interpreter = _interpreter(path, num_threads)
    signatures = interpreter.get_signature_list()
    if SIGNATURE not in signatures:
        raise BadFileError(f"{path} has no {SIGNATURE!r} signature (it has {sorted(signatures)})")
    (input_name,) = signatures[SIGNATURE]["inputs"]
    (output_name,) = signatures[SIGNATURE]["outputs"]
    runner = interpreter.get_signature_runner(SIGNATURE)
    file_batch = int(runner.get_input_details()[input_name]["shape"][0])

    def run(batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if len(batch) % file_batch:
            raise ConfigError(f"{path} takes batches of {file_batch}; got {len(batch)} images")
        outputs = [runner(**{input_name: batch[start:start + file_batch]})[output_name]
                   for start in range(0, len(batch), file_batch)]
        return np.concatenate(outputs)
    return run


def check_tflite_parity(model: nn.Module, path: str | os.PathLike, *, atol: float = DEFAULT_ATOL,
                        images: torch.Tensor | None = None) -> ParityReport:
    """Run a .tflite file on the LiteRT interpreter and compare it with eager `model` on the parity images.

    Raises:
        ParityError: the outputs differ by more than `atol`; `.report` holds the numbers.
    """
    run = load_runner(path)
    if images is None:
        interpreter = _interpreter(path, None)
        _, _, height, width = (int(v) for v in interpreter.get_input_details()[0]["shape"])
        images = parity_images((height, width), crop_pct=eval_crop_pct(model))
    return check_parity(model, run, images, atol=atol, format="tflite", runtime=runtime_version(), path=str(path))


__all__ = ["DEFAULT_ATOL", "TfliteExport", "check_tflite_parity", "export_tflite", "load_runner", "runtime_version"]
