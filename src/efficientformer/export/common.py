"""Helpers every exporter shares: the input size to export at and silencing torch's exporter noise."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

from torch import nn

from efficientformer.errors import ConfigError
from efficientformer.utils.sizes import to_pair


def export_image_size(model: nn.Module, img_size: int | tuple[int, int] | None) -> tuple[int, int]:
    """(height, width) to export at: `img_size` (an int means square), else the model's `config.img_size`."""
    if img_size is None:
        config = getattr(model, "config", None)
        if config is None or getattr(config, "img_size", None) is None:
            raise ConfigError(f"{type(model).__name__} has no config.img_size: give img_size to export it")
        img_size = config.img_size
    return to_pair(img_size)


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence the exporter's known noise (absent torchvision ops, a torch-internal FutureWarning)."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)


__all__ = ["export_image_size", "quiet_exporter"]
