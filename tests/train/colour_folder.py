"""A small image folder of three colour classes, with one corrupt file, for training and eval tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"blue": (40, 60, 220), "green": (40, 200, 60), "red": (220, 40, 40)}
PER_CLASS = 12


@dataclass
class ColourFolder:
    root: Path
    bad: Path  # the corrupt file (in class "red")


def build_colour_folder(root: Path, per_class: int = PER_CLASS, with_bad: bool = True) -> ColourFolder:
    """root/<colour>/<i>.png: 24x24 noisy solid colours (distinct images), plus red/broken.png (not a PNG)."""
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            noise = rng.integers(-25, 26, (24, 24, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)  # (24, 24, 3)
            Image.fromarray(pixels).save(root / name / f"{index:02d}.png")
    bad = root / "red" / "broken.png"
    if with_bad:
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"this is not an image" * 4)
    return ColourFolder(root, bad)
