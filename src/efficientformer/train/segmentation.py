"""Semantic segmentation pieces: the training step, mIoU evaluation, segmenter checkpoints, prediction overlays."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from efficientformer.data.folder import SkippedSample
from efficientformer.data.masks import IGNORE_INDEX, EvalPairTransform, MaskFolder, eval_size, normalize
from efficientformer.data.preprocess import load_image
from efficientformer.errors import CheckpointError, ConfigError
from efficientformer.models.segmentation import Segmenter, SegmenterConfig
from efficientformer.train.task import StepInfo, TaskOutput
from efficientformer.weights.checkpoint import write_state_dict
from efficientformer.weights.metadata import read_metadata

SEGMENTER_FORMAT = "efficientformer-segmenter"


class SegmentationTask:
    """Per-pixel cross-entropy over the non-ignored pixels, one backward (train/task.py contract)."""

    find_unused_parameters = False

    def __init__(self, ignore_index: int = IGNORE_INDEX) -> None:
        self.ignore_index = ignore_index

    def step(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
             autocast: Callable[[], AbstractContextManager], backward: Callable[[torch.Tensor], None],
             info: StepInfo) -> TaskOutput:
        with autocast():
            logits = model(inputs)  # (B, classes, H, W)
            loss = F.cross_entropy(logits.float(), targets, ignore_index=self.ignore_index)
        value = loss.item()
        if math.isfinite(value):
            backward(loss)
        return TaskOutput(value, None)


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(classes, classes) int64 counts, rows = true class, columns = predicted; ignored pixels left out."""
    keep = target != ignore_index
    index = target[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(index.cpu(), minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass
class SegmentationResult:
    """Metrics from a confusion matrix: IoU per class (NaN when a class is neither present nor predicted)."""

    confusion: torch.Tensor
    skipped: list[str]

    @property
    def per_class_iou(self) -> list[float]:
        confusion = self.confusion.double()
        inter = confusion.diag()
        union = confusion.sum(0) + confusion.sum(1) - inter
        return [float("nan") if u == 0 else 100.0 * float(i / u) for i, u in zip(inter, union)]

    @property
    def miou(self) -> float:
        """Mean IoU (%) over the classes with a defined IoU."""
        values = [v for v in self.per_class_iou if not math.isnan(v)]
        return sum(values) / len(values) if values else float("nan")

    @property
    def pixel_accuracy(self) -> float:
        total = int(self.confusion.sum())
        return 100.0 * int(self.confusion.diag().sum()) / total if total else float("nan")


@torch.no_grad()
def evaluate_segmentation(model: nn.Module, dataset: MaskFolder, short_side: int, device: torch.device,
                          indices: Sequence[int] | None = None,
                          reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> SegmentationResult:
    """mIoU over `dataset` (or its `indices`), one whole image at a time at its own size.

    Each image is resized so its shorter side is about `short_side` (both sides multiples of 32); the logits are
    resized back to the mask's resolution, where the metrics are counted. `reduce` sums over DDP ranks.
    """
    was_training = model.training
    model.eval()
    transform = EvalPairTransform(short_side)
    num_classes = len(dataset.classes)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    skipped = []
    try:
        for index in range(len(dataset)) if indices is None else indices:
            item = dataset[index]
            if isinstance(item, SkippedSample):
                skipped.append(item.path)
                continue
            pixels, mask = transform(*item)
            logits = model(pixels[None].to(device))  # (1, classes, h, w)
            logits = F.interpolate(logits.float(), size=mask.shape, mode="bilinear", align_corners=False)
            confusion += confusion_matrix(logits.argmax(1)[0].cpu(), mask, num_classes, dataset.ignore_index)
    finally:
        model.train(was_training)
    if reduce is not None:
        confusion = reduce(confusion.to(device)).cpu()
    return SegmentationResult(confusion, skipped)


def save_segmenter(model: Segmenter, path: str | os.PathLike, classes: Sequence[str], ignore_index: int,
                   reduce_zero_label: bool, img_size: int) -> Path:
    """Weights + config + what evaluation and prediction need, as safetensors with metadata."""
    if len(classes) != model.num_classes:
        raise ConfigError(f"{len(classes)} class names for a segmenter of {model.num_classes} classes")
    metadata = {"format": SEGMENTER_FORMAT, "config": json.dumps(model.config.to_dict()),
                "classes": json.dumps(list(classes)), "ignore_index": str(ignore_index),
                "reduce_zero_label": "1" if reduce_zero_label else "0", "img_size": str(img_size)}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return write_state_dict(state, path, "ours", metadata)


def load_segmenter(path: str | os.PathLike, device: str | torch.device | None = None) -> tuple[Segmenter, dict]:
    """(segmenter in eval mode, {'classes', 'ignore_index', 'reduce_zero_label', 'img_size'}) from `save_segmenter`."""
    meta = read_metadata(path)
    if meta.format != SEGMENTER_FORMAT:
        raise CheckpointError(f"{path} is not a segmenter checkpoint (written by `efficientformer segment train`)")
    try:
        config = SegmenterConfig.from_dict(json.loads(meta.raw["config"]))
        info = {"classes": meta.classes, "ignore_index": int(meta.raw["ignore_index"]),
                "reduce_zero_label": meta.raw["reduce_zero_label"] == "1", "img_size": int(meta.raw["img_size"])}
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: invalid segmenter metadata ({error})") from None
    try:
        state = safetensors.torch.load_file(path)
    except (safetensors.SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {path}: corrupt or truncated ({error})") from None
    model = Segmenter(config)
    model.load_state_dict(state)
    return (model.to(device) if device is not None else model).eval(), info


def palette(num_classes: int) -> np.ndarray:
    """A fixed, distinct-looking (classes, 3) uint8 colour per class (the VOC bit-interleaving palette)."""
    colours = np.zeros((num_classes, 3), dtype=np.uint8)
    for label in range(num_classes):
        value, bits = label + 1, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                bits[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        colours[label] = bits
    return colours


@torch.no_grad()
def predict_mask(model: nn.Module, image: Image.Image | str | os.PathLike, short_side: int) -> np.ndarray:
    """(H, W) int64 class per pixel of `image` at its own resolution."""
    if not isinstance(image, Image.Image):
        image = load_image(image)
    parameter = next(model.parameters())
    size = eval_size(*image.size, short_side)
    pixels = normalize(image.resize(size, Image.Resampling.BILINEAR))[None].to(parameter.device)  # (1, 3, h, w)
    was_training = model.training
    model.eval()
    try:
        logits = model(pixels)  # (1, classes, h, w)
    finally:
        model.train(was_training)
    logits = F.interpolate(logits.float(), size=(image.size[1], image.size[0]), mode="bilinear", align_corners=False)
    return logits.argmax(1)[0].cpu().numpy()


def overlay(image: Image.Image, labels: np.ndarray, num_classes: int, alpha: float = 0.5) -> Image.Image:
    """The image with each pixel blended with its class colour."""
    colours = palette(num_classes)[labels]  # (H, W, 3)
    blended = (1 - alpha) * np.asarray(image.convert("RGB"), dtype=np.float32) + alpha * colours
    return Image.fromarray(np.clip(np.round(blended), 0, 255).astype(np.uint8))


def per_class_rows(result: SegmentationResult, classes: Sequence[str]) -> list[dict[str, Any]]:
    """One row per class: name, IoU (%), pixels of that class."""
    pixels = result.confusion.sum(1).tolist()
    return [{"class": name, "iou": iou, "pixels": count}
            for name, iou, count in zip(classes, result.per_class_iou, pixels)]


__all__ = ["SEGMENTER_FORMAT", "SegmentationResult", "SegmentationTask", "confusion_matrix", "evaluate_segmentation",
           "load_segmenter", "overlay", "palette", "per_class_rows", "predict_mask", "save_segmenter"]
