"""A generated segmentation dataset: rectangles of three colour classes on a fourth, plus ignored borders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from efficientformer.data.preprocess import IMAGENET_MEAN, IMAGENET_STD

CLASSES = ("ground", "red", "green", "blue")
COLOURS = np.array([(128, 128, 128), (220, 40, 40), (40, 200, 60), (40, 60, 220)], dtype=np.int64)
IGNORE = 255


def build_mask_dataset(root: Path, count: int = 6, size: tuple[int, int] = (64, 96), split: str | None = None,
                       seed: int = 0, palette_masks: bool = False) -> Path:
    """root/images[/split]/NN.jpg... (PNG here, lossless) + root/annotations[/split]/NN.png + root/classes.txt."""
    rng = np.random.default_rng(seed)
    images = root / "images" / (split or "")
    masks = root / "annotations" / (split or "")
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    height, width = size
    for index in range(count):
        labels = np.zeros((height, width), dtype=np.uint8)
        for label in (1, 2, 3):
            top, left = rng.integers(0, height - 16), rng.integers(0, width - 16)
            labels[top:top + int(rng.integers(12, 28)), left:left + int(rng.integers(12, 40))] = label
        pixels = np.clip(COLOURS[labels] + rng.integers(-20, 21, (height, width, 3)), 0, 255).astype(np.uint8)
        labels[:2] = IGNORE  # an unlabelled strip
        Image.fromarray(pixels).save(images / f"{index:02d}.png")
        mask = Image.fromarray(labels, mode="L")
        if palette_masks:
            mask = mask.convert("P")
        mask.save(masks / f"{index:02d}.png")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


class ColourOracle(nn.Module):
    """Classifies every pixel by its nearest class colour: a perfect model for `build_mask_dataset` data."""

    def __init__(self) -> None:
        super().__init__()
        mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.register_buffer("colours", torch.tensor(COLOURS, dtype=torch.float32) / 255.0)  # (classes, 3)
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = x * self.std + self.mean  # (B, 3, H, W) in [0, 1]
        distance = (rgb[:, None] - self.colours[None, :, :, None, None]).square().sum(2)  # (B, classes, H, W)
        return -distance + self.dummy
