"""The embedded default dataset: scikit-learn's 1,797 handwritten digits (8x8, 10 classes).

It ships inside the scikit-learn wheel (`pip install efficientformer[demo]`), so the default run
needs no download. Images are upscaled to RGB PIL images; the split is a fixed, stratified 80/20
(seed 0), so every run and every machine trains and evaluates on the same images.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from efficientformer.errors import ConfigError, MissingDependencyError

DIGITS_CLASSES = tuple(str(i) for i in range(10))


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise MissingDependencyError("the embedded default dataset needs scikit-learn: pip install "
                                     "'efficientformer[demo]' (or pass --data DIR)") from None
    digits = load_digits()
    return digits.images.astype(np.float32), digits.target.astype(np.int64)  # (N, 8, 8) in [0, 16], (N,)


def _split(labels: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: per class, a fixed permutation; the first `val_fraction` go to validation."""
    rng = np.random.default_rng(0)
    train, val = [], []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        cut = int(round(len(members) * val_fraction))
        val.append(members[:cut])
        train.append(members[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


class DigitsDataset:
    """(PIL RGB image of `size` pixels, label) pairs of one split ('train' or 'val').

    Args:
        size: side of the upscaled square image (bilinear from 8x8).
        val_fraction: share of each class held out for validation.
    """

    classes = DIGITS_CLASSES

    def __init__(self, split: str = "train", size: int = 64, val_fraction: float = 0.2) -> None:
        if split not in ("train", "val"):
            raise ConfigError(f"split must be 'train' or 'val', got {split!r}")
        images, labels = _digits()
        train, val = _split(labels, val_fraction)
        self.indices = train if split == "train" else val
        self.images = images
        self.labels = labels
        self.size = size
        self.split = split

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        item = self.indices[index]
        pixels = (self.images[item] * (255.0 / 16.0)).round().astype(np.uint8)  # (8, 8)
        image = Image.fromarray(pixels).resize((self.size, self.size), Image.Resampling.BILINEAR)
        return image.convert("RGB"), int(self.labels[item])


__all__ = ["DIGITS_CLASSES", "DigitsDataset"]
