"""Classify image files with a model: eval preprocessing, softmax, top-k with class names."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image

from efficientformer.data.preprocess import (
    DEFAULT_CROP_PCT,
    IMAGENET_MEAN,
    IMAGENET_STD,
    eval_transform,
    imagenet_class_names,
    load_image,
)
from efficientformer.errors import ConfigError
from efficientformer.factory import classify_weights, create_model, data_config, load_model
from efficientformer.models.config import ModelConfig
from efficientformer.models.efficientformer_v2 import EfficientFormerV2
from efficientformer.weights.zoo import WEIGHTS


class Prediction(NamedTuple):
    """One of the top-k classes of an image."""

    index: int
    name: str
    prob: float


def class_names(num_classes: int) -> list[str]:
    """ImageNet-1k names for 1000 classes, else 'class 0', 'class 1', ..."""
    if num_classes == 1000:
        return list(imagenet_class_names())
    return [f"class {i}" for i in range(num_classes)]


def prepare_model(model: str | os.PathLike | ModelConfig | None = None,
                  weights: str | os.PathLike | None = None,
                  device: str | torch.device | None = None, *, num_classes: int | None = None,
                  img_size: int | tuple[int, int] | None = None) -> tuple[EfficientFormerV2, bool]:
    """The model to predict with, in eval mode, and whether it has trained weights.

    Args:
        model: registry name, alias or config JSON; optional when `weights` says which model it is.
        weights: a checkpoint file (any layout; rebuilt with `load_model`) or a weight tag
            (downloaded through the zoo). Without weights the model is randomly initialised.
        num_classes, img_size: override the config as in `create_model` (bias tables are resampled;
            a new class count gets fresh heads).
    """
    if model is None and weights is None:
        raise ConfigError("give a model (name, alias or config JSON) and/or weights (a checkpoint file or weight tag)")
    overrides = {key: value for key, value in (("num_classes", num_classes), ("img_size", img_size))
                 if value is not None}
    if weights is None:
        return create_model(model, device=device, **overrides).eval(), False
    text = str(weights)
    if classify_weights(weights) == "checkpoint":  # the one rule: factory.classify_argument
        path = Path(text)
        if overrides:
            config = load_model(path, model=model).config
            return create_model(config, pretrained=path, device=device, **overrides).eval(), True
        return load_model(path, model=model, device=device), True
    if model is None:
        model = WEIGHTS[text].model
    return create_model(model, pretrained=text, device=device, **overrides).eval(), True


def load_images(images: Sequence[str | os.PathLike | Image.Image], img_size: tuple[int, int],
                crop_pct: float = DEFAULT_CROP_PCT, interpolation: str = "bicubic",
                mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """Read and preprocess image files (or PIL images) into a (B, 3, H, W) batch."""
    tensors = []
    for image in images:
        if not isinstance(image, Image.Image):
            image = load_image(image)
        tensors.append(eval_transform(image, img_size, crop_pct=crop_pct, interpolation=interpolation,
                                      mean=tuple(mean), std=tuple(std)))
    return torch.stack(tensors)  # (B, 3, H, W)


def predict(model: EfficientFormerV2, images: Sequence[str | os.PathLike | Image.Image], topk: int = 5, *,
            crop_pct: float | None = None, interpolation: str | None = None, batch_size: int = 32,
            names: Sequence[str] | None = None) -> list[list[Prediction]]:
    """Top-k classes of each image, highest probability first.

    Images are preprocessed with `data_config(model)` (the crop, filter, mean and std of its
    weight tag; 0.875 bicubic ImageNet otherwise) at the model's `config.img_size`, and run in
    eval mode on the model's device (its train/eval mode is restored afterwards).

    Args:
        images: file paths or PIL images.
        topk: classes per image (at most the number of classes).
        crop_pct, interpolation: override the data config's.
        names: class names; default ImageNet names for 1000 classes, else "class N".
    """
    if isinstance(images, (str, os.PathLike, Image.Image)):
        images = [images]
    if getattr(model, "features_only", False) or model.num_classes == 0:
        raise ConfigError("predict needs a model with a classifier head (num_classes > 0, not features_only)")
    if topk < 1:
        raise ConfigError(f"topk must be >= 1, got {topk}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    names = list(names) if names is not None else class_names(model.num_classes)
    if len(names) != model.num_classes:
        raise ConfigError(f"{len(names)} class names given for a model with {model.num_classes} classes")
    k = min(topk, model.num_classes)
    config = data_config(model)
    crop_pct = config.crop_pct if crop_pct is None else crop_pct
    interpolation = config.interpolation if interpolation is None else interpolation
    parameter = next(model.parameters())
    results: list[list[Prediction]] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            batch = load_images(images[start:start + batch_size], model.config.img_size, crop_pct, interpolation,
                                config.mean, config.std)
            with torch.inference_mode():
                logits = model(batch.to(device=parameter.device, dtype=parameter.dtype))  # (B, classes)
                probs, indices = logits.float().softmax(dim=-1).topk(k, dim=-1)  # (B, k)
            for row_probs, row_indices in zip(probs.tolist(), indices.tolist()):
                results.append([Prediction(i, names[i], p) for i, p in zip(row_indices, row_probs)])
    finally:
        model.train(was_training)
    return results


__all__ = ["Prediction", "class_names", "load_images", "predict", "prepare_model"]
