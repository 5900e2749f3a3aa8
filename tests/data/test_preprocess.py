"""data.preprocess: image modes to RGB, corrupt files named, the eval transform, bundled assets."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from efficientformer.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageError,
    eval_transform,
    imagenet_class_names,
    load_image,
    sample_image_path,
)
from efficientformer.data.preprocess import resize_size

SIZE = (40, 30)  # (width, height) of the synthetic images


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def _gradient(mode: str = "RGB") -> Image.Image:
    x = np.linspace(0, 255, SIZE[0], dtype=np.uint8)[None, :].repeat(SIZE[1], 0)  # (H, W)
    rgb = np.stack([x, x[::-1], np.full_like(x, 90)], axis=-1)  # (H, W, 3)
    return Image.fromarray(rgb).convert(mode)


@pytest.mark.parametrize("mode,suffix", [("CMYK", ".jpg"), ("CMYK", ".tiff"), ("P", ".png"), ("L", ".png"),
                                         ("1", ".png"), ("RGBA", ".png"), ("LA", ".png"), ("YCbCr", ".jpg")])
def test_modes_convert_to_rgb(tmp_path, mode, suffix):
    path = _save(_gradient(mode), tmp_path / f"image_{mode}{suffix}")
    image = load_image(path)
    assert image.mode == "RGB" and image.size == SIZE
    assert eval_transform(image, 32).shape == (3, 32, 32)


def test_alpha_is_composited_over_white(tmp_path):
    gray = np.full((SIZE[1], SIZE[0]), 100, np.uint8)
    alpha = np.zeros_like(gray)
    alpha[:, SIZE[0] // 2:] = 255  # left half transparent, right half opaque
    path = _save(Image.fromarray(np.stack([gray, alpha], -1), mode="LA"), tmp_path / "la.png")
    pixels = np.asarray(load_image(path))
    assert (pixels[:, 0] == 255).all() and (pixels[:, -1] == 100).all()


def test_palette_with_transparent_colour(tmp_path):
    image = Image.new("P", SIZE, 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.putpixel((0, 0), 0)
    path = _save(image, tmp_path / "palette.png", transparency=0)
    pixels = np.asarray(load_image(path))
    assert tuple(pixels[0, 0]) == (255, 255, 255) and tuple(pixels[5, 5]) == (10, 200, 30)


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32768, 65535, 1000]], dtype=np.uint16).repeat(3, 0)  # (3, 4)
    path = _save(Image.fromarray(values), tmp_path / "gray16.png")
    assert Image.open(path).mode in ("I;16", "I")
    pixels = np.asarray(load_image(path))
    assert pixels.shape == (3, 4, 3)
    assert pixels[0, :, 0].tolist() == [0, 128, 255, 4]


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = _save(_gradient(), tmp_path / "rotated.jpg", exif=exif)
    assert load_image(path).size == (SIZE[1], SIZE[0])


def test_corrupt_and_truncated_files_are_named(tmp_path):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image" * 10)
    with pytest.raises(ImageError, match="garbage.jpg"):
        load_image(garbage)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(buffer, "JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated.jpg"):
        load_image(truncated)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError, match="not a file"):
        load_image(tmp_path)


def test_eval_transform_sizes_and_normalisation():
    assert resize_size((451, 300), (224, 224), 0.875) == (384, 256)  # shorter side 256 = 224 / 0.875
    assert resize_size((300, 451), (224, 224), 0.9) == (248, 372)
    assert resize_size((400, 400), (256, 192), 1.0) == (256, 256)
    flat = Image.new("RGB", (300, 200), (255, 128, 0))
    tensor = eval_transform(flat)
    assert tensor.shape == (3, 224, 224) and tensor.dtype == torch.float32
    expected = (torch.tensor([255, 128, 0]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(tensor[:, 100, 100], expected)
    assert eval_transform(flat, (256, 192), crop_pct=1.0).shape == (3, 256, 192)
    with pytest.raises(ValueError, match="crop_pct"):
        eval_transform(flat, crop_pct=1.5)
    with pytest.raises(ValueError, match="interpolation"):
        eval_transform(flat, interpolation="cubic")


def test_centre_crop_is_centred():
    image = Image.new("RGB", (512, 256), (0, 0, 0))
    image.paste((255, 255, 255), (128, 0, 384, 256))  # white centre square of the resized 256-high image
    tensor = eval_transform(image, 224, interpolation="nearest", mean=(0, 0, 0), std=(1, 1, 1))
    assert torch.all(tensor == 1.0)


def test_bundled_assets():
    names = imagenet_class_names()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert names[0] == "tench" and names[1] == "goldfish" and names[281] == "tabby" and names[999] == "toilet tissue"
    image = load_image(sample_image_path())
    assert image.size == (451, 300) and sample_image_path().stat().st_size < 60_000
