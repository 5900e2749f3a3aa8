"""Runtime-independent parity check: an exported file's logits against eager PyTorch on real images.

The images are the bundled sample photo plus a few deterministic synthetic pictures (a colour
gradient, stripes with a disc, and noise), all through the eval transform, so the inputs have the
statistics of real preprocessed photos rather than of `randn`. Each exporter supplies a `run`
callable (a float32 (B, 3, H, W) array -> its output array); `check_parity` compares the outputs
and raises `ParityError` when they differ by more than the tolerance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from efficientformer.data.preprocess import DEFAULT_CROP_PCT, eval_transform, load_image, sample_image_path
from efficientformer.errors import ConfigError, UnavailableError

DEFAULT_NUM_SYNTHETIC = 3
_SYNTHETIC_SIZE = (320, 256)  # (width, height): not square, so the resize and crop both act


class ParityError(RuntimeError):
    """An exported model whose outputs differ from eager PyTorch by more than the tolerance."""

    def __init__(self, report: ParityReport, path: str | None = None, detail: str | None = None) -> None:
        self.report = report
        self.path = path
        where = f" for {path}" if path else ""
        super().__init__(f"{report.format} parity check failed{where}: {detail or report.summary()}")


class ParityUnavailable(UnavailableError):
    """The exported file's runtime cannot run on this machine (e.g. CoreML off macOS), so parity was not checked."""


@dataclass(frozen=True)
class ParityReport:
    """How closely an exported model reproduces eager PyTorch on the parity images.

    Attributes:
        format: export format ("onnx").
        runtime: the runtime that ran the file, with its version ("onnxruntime 1.32.0").
        num_images: images compared.
        max_abs_diff: largest absolute difference over all outputs of all images.
        mean_abs_diff: mean absolute difference.
        top1_agreement: fraction of images whose arg-max class is the same in both.
        atol: the tolerance on `max_abs_diff`.
        relative_error: largest ||output - eager||_2 / ||eager||_2 of an image's outputs (scale-free, so
            comparable between models whose logits are large or, freshly initialised, tiny).
    """

    format: str
    runtime: str
    num_images: int
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    atol: float
    relative_error: float

    @property
    def passed(self) -> bool:
        """True when `max_abs_diff <= atol` (a NaN difference fails)."""
        return bool(self.max_abs_diff <= self.atol)

    def summary(self) -> str:
        """One line with the numbers."""
        return (f"max abs diff {self.max_abs_diff:.3g} (atol {self.atol:g}), mean abs diff {self.mean_abs_diff:.3g}, "
                f"top-1 agreement {self.top1_agreement:.0%} over {self.num_images} images on {self.runtime}")

    def to_dict(self) -> dict[str, float | int | str | bool]:
        """Plain values for JSON."""
        return {**dataclasses.asdict(self), "passed": self.passed}


def synthetic_images(count: int = DEFAULT_NUM_SYNTHETIC, seed: int = 0) -> list[Image.Image]:
    """`count` deterministic RGB pictures cycling through a gradient, stripes with a disc, and noise."""
    width, height = _SYNTHETIC_SIZE
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height)[:, None]  # (H, 1)
    cols = np.linspace(0.0, 1.0, width)[None, :]  # (1, W)
    images = []
    for index in range(count):
        kind = index % 3
        phase = rng.uniform(0.0, 1.0, size=3)
        if kind == 0:
            pixels = np.stack([(rows * (1 - p) + cols * p + p) % 1.0 for p in phase], axis=-1)  # (H, W, 3)
        elif kind == 1:
            stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (cols * 12 + rows * 5))  # (H, W)
            disc = (rows - 0.5) ** 2 + (cols - 0.5) ** 2 * (width / height) ** 2 < 0.1  # (H, W)
            pixels = np.stack([np.where(disc, p, stripes * p) for p in phase], axis=-1)  # (H, W, 3)
        else:
            pixels = rng.uniform(0.0, 1.0, size=(height, width, 3))
        images.append(Image.fromarray(np.round(pixels * 255).astype(np.uint8)))  # (H, W, 3) uint8 -> RGB
    return images


def eval_crop_pct(model: nn.Module) -> float:
    """The centre crop `model`'s weights are evaluated with (`efficientformer.data_config`): a zoo tag's
    (0.95 for the released weights), else the default 0.875."""
    from efficientformer.factory import data_config
    from efficientformer.models.efficientformer_v2 import EfficientFormerV2

    return data_config(model).crop_pct if isinstance(model, EfficientFormerV2) else DEFAULT_CROP_PCT


def parity_images(img_size: int | tuple[int, int], num_synthetic: int = DEFAULT_NUM_SYNTHETIC, seed: int = 0,
                  crop_pct: float = DEFAULT_CROP_PCT) -> torch.Tensor:
    """The sample photo and `num_synthetic` synthetic images, preprocessed: (1 + num_synthetic, 3, H, W).

    Exporters pass `eval_crop_pct(model)`, so a model is checked on images preprocessed as its weights expect.
    """
    images = [load_image(sample_image_path()), *synthetic_images(num_synthetic, seed)]
    return torch.stack([eval_transform(image, img_size, crop_pct=crop_pct) for image in images])


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, *, atol: float, format: str,
                    runtime: str) -> ParityReport:
    """A ParityReport for two (N, ...) output arrays; top-1 agreement is taken over the last axis."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        raise ValueError(f"output shapes differ: {candidate.shape} from {runtime}, "
                         f"{reference.shape} from eager PyTorch")
    diff = np.abs(reference - candidate)
    max_diff, relative = 0.0, 0.0
    if diff.size:
        flat = (len(reference), -1)
        per_image = (np.linalg.norm(diff.reshape(flat), axis=-1)
                     / np.maximum(np.linalg.norm(reference.reshape(flat), axis=-1), 1e-12))  # (N,)
        max_diff, relative = float(diff.max()), float(per_image.max())
        if not np.isfinite(candidate).all():
            max_diff = relative = float("nan")
    same_top1 = reference.argmax(axis=-1) == candidate.argmax(axis=-1)  # (N,)
    return ParityReport(format=format, runtime=runtime, num_images=len(reference), max_abs_diff=max_diff,
                        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
                        top1_agreement=float(same_top1.mean()) if same_top1.size else 1.0, atol=atol,
                        relative_error=relative)


def eager_outputs(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    """The eval-mode float32 CPU outputs of `model` (its mode is restored afterwards)."""
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return model(images.to(device=device, dtype=dtype)).float().cpu().numpy()
    finally:
        model.train(was_training)


def check_parity(model: nn.Module, run: Callable[[np.ndarray], np.ndarray], images: torch.Tensor, *, atol: float,
                 format: str, runtime: str, batch_size: int | None = None, path: str | None = None) -> ParityReport:
    """Compare `run` (the exported file) with eager `model` on `images`; raise if they differ by more than `atol`.

    Args:
        run: float32 (B, 3, H, W) array -> output array, e.g. an onnxruntime session.
        images: (N, 3, H, W) preprocessed images (see `parity_images`).
        batch_size: images per `run` call (a file with a static batch size needs exactly that); default all at once.
        path: the file, named in the error.

    Raises:
        ParityError: `max_abs_diff > atol`, a non-finite output or a wrong output shape; `.report` has the numbers.
    """
    if atol < 0:
        raise ConfigError(f"atol must be >= 0, got {atol}")
    reference = eager_outputs(model, images)
    batch = np.ascontiguousarray(images.float().cpu().numpy())
    step = batch_size or len(batch)
    if len(batch) % step:
        raise ValueError(f"{len(batch)} parity images do not split into batches of {step}")
    candidate = np.concatenate([np.asarray(run(batch[start:start + step])) for start in range(0, len(batch), step)])
    if candidate.shape != reference.shape:
        report = ParityReport(format, runtime, len(batch), float("nan"), float("nan"), 0.0, atol, float("nan"))
        raise ParityError(report, path, detail=f"output shape {candidate.shape} on {runtime}, "
                                               f"{reference.shape} in eager PyTorch")
    report = compare_outputs(reference, candidate, atol=atol, format=format, runtime=runtime)
    if not report.passed:
        raise ParityError(report, path)
    return report


__all__ = ["DEFAULT_NUM_SYNTHETIC", "ParityError", "ParityReport", "ParityUnavailable", "check_parity",
           "compare_outputs", "eager_outputs", "eval_crop_pct", "parity_images", "synthetic_images"]
