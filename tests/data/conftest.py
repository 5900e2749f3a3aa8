"""A small image folder with good files of several modes, broken files of every kind, and files to ignore."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PIXEL_LIMIT = 2000  # PIL.Image.MAX_IMAGE_PIXELS during the tests: the 64x64 "bomb" exceeds it, 24x16 images do not


@dataclass
class ImageTree:
    """Root of the folder; good files and bad files (-> reason) as paths relative to it."""

    root: Path
    good: tuple[str, ...]
    bad: dict[str, str]

    def path(self, relative: str) -> str:
        return str(self.root / relative)

    def all_files(self) -> list[str]:
        return sorted(self.path(name) for name in (*self.good, *self.bad))


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)  # (H, W, 3)


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def build_image_tree(root: Path) -> ImageTree:
    """Write the tree under `root` (classes cat, dog, fish) and describe it."""
    for folder in ("cat/nested", "dog", "fish/.cache", ".git"):
        (root / folder).mkdir(parents=True)
    small = Image.fromarray(_noise(16, 24))
    small.save(root / "cat/rgb.jpg")
    rgba = np.dstack([_noise(16, 24, 1), np.full((16, 24), 128, np.uint8)])  # (H, W, 4), half transparent
    Image.fromarray(rgba, "RGBA").save(root / "cat/alpha.png")
    small.save(root / "cat/nested/deep.PPM", "PPM")  # nested folder, upper-case extension
    small.convert("P").save(root / "dog/palette.gif")
    Image.fromarray(np.full((16, 24), 40000, np.uint16)).save(root / "dog/gray16.png")
    Image.new("CMYK", (24, 16), (10, 20, 30, 40)).save(root / "dog/cmyk.jpg")
    small.save(root / "fish/plain.bmp")
    assert Image.open(root / "dog/gray16.png").mode in ("I;16", "I")

    jpeg = _encoded(Image.fromarray(_noise(40, 40)), "JPEG")
    (root / "cat/truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "dog/empty.jpg").write_bytes(b"")
    (root / "dog/random.jpg").write_bytes(np.random.default_rng(2).bytes(600))
    Image.fromarray(_noise(64, 64)).save(root / "fish/bomb.png")  # 4096 pixels > PIXEL_LIMIT
    png = bytearray(_encoded(Image.fromarray(_noise(40, 40)), "PNG"))
    png[100:200] = bytes(100)  # zeros inside the compressed pixel data
    (root / "fish/corrupt.png").write_bytes(bytes(png))

    for ignored in ("cat/.hidden.jpg", "fish/.cache/cached.jpg", ".git/object.jpg"):  # garbage, never read
        (root / ignored).write_bytes(b"not an image")
    (root / "cat/notes.txt").write_text("not an image extension")
    (root / "README.txt").write_text("files in the root are not samples")
    return ImageTree(
        root=root,
        good=("cat/alpha.png", "cat/nested/deep.PPM", "cat/rgb.jpg", "dog/cmyk.jpg", "dog/gray16.png",
              "dog/palette.gif", "fish/plain.bmp"),
        bad={"cat/truncated.jpg": "truncated", "dog/empty.jpg": "empty", "dog/random.jpg": "unreadable",
             "fish/bomb.png": "oversized", "fish/corrupt.png": "corrupt"},
    )


@pytest.fixture
def image_tree(tmp_path, monkeypatch) -> ImageTree:
    """The tree in tmp_path/images, with Pillow's decompression-bomb limit lowered to PIXEL_LIMIT."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", PIXEL_LIMIT)
    return build_image_tree(tmp_path / "images")
