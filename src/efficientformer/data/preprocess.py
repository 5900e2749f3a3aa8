"""Evaluation preprocessing with Pillow and torch only, and the bundled class names and sample photo.

The eval transform is the standard ImageNet one (docs/training.md): resize the shorter side to
floor(size / crop_pct) bicubically, centre-crop `size`, scale to [0, 1], normalise with the ImageNet
mean and std. It reproduces timm's/torchvision's PIL pipeline (same rounding of sizes and offsets).
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

# Defined with the weights' data configs (one source for the numbers); re-exported here.
from efficientformer.errors import BadFileError, ConfigError, ImageError, MissingFileError
from efficientformer.utils.sizes import to_pair
from efficientformer.weights.zoo import DEFAULT_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD

BACKGROUND = (255, 255, 255)

INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}

_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def load_image(path: str | os.PathLike) -> Image.Image:
    """Read an image file fully and return it as 8-bit RGB.

    Conversions: the EXIF orientation is applied (phone photos come out upright); transparency
    (RGBA, LA, palette with a transparent colour) is composited over a white background; 16-bit
    grayscale is scaled to 8 bits (65535 -> 255) instead of being clipped; CMYK, palette, 1-bit,
    grayscale and YCbCr go through Pillow's conversion. Of an animated or multi-page file the first
    frame is used. Embedded ICC profiles are not applied (pixels are taken as sRGB).

    Raises:
        FileNotFoundError: the path does not exist.
        ImageError: the file is not an image Pillow can decode, is truncated or corrupt, or is too large.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"image {path} does not exist" if not path.exists() else f"image {path} is not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                image = ImageOps.exif_transpose(image)
                return to_rgb(image, path)
    except UnidentifiedImageError:
        raise ImageError(f"cannot read image {path}: not an image format Pillow recognises") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"cannot read image {path}: {error}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        if isinstance(error, ImageError):
            raise
        raise ImageError(f"cannot read image {path}: corrupt or truncated file ({error})") from None


def to_rgb(image: Image.Image, source: str | os.PathLike = "image") -> Image.Image:
    """Convert a Pillow image of any mode to 8-bit RGB (see `load_image` for the rules)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return _wide_gray_to_rgb(image)
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise ImageError(f"cannot convert {source} from Pillow mode {mode!r} to RGB ({error})") from None


def _wide_gray_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer or float grayscale -> 8-bit RGB.

    16-bit modes are scaled by 255/65535. Mode "I" (how some Pillow versions open 16-bit PNGs) is
    taken as 8-bit when its values fit in [0, 255] and as 16-bit otherwise; mode "F" as [0, 1]
    when its values fit there and as [0, 255] otherwise.
    """
    values = np.asarray(image, dtype=np.float64)  # (H, W)
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "I" and values.max(initial=0) > 255:
        values = values * (255.0 / 65535.0)
    elif image.mode == "F" and values.max(initial=0) <= 1.0:
        values = values * 255.0
    gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")


def resize_size(image_size: tuple[int, int], img_size: tuple[int, int], crop_pct: float) -> tuple[int, int]:
    """(width, height) to resize to, so that the crop of `img_size` is `crop_pct` of the shorter side."""
    width, height = image_size
    target_h, target_w = (math.floor(img_size[0] / crop_pct), math.floor(img_size[1] / crop_pct))
    if target_w / width >= target_h / height:  # width limits: it becomes target_w
        return target_w, max(target_h, int(target_w * height / width))
    return max(target_w, int(target_h * width / height)), target_h


def eval_transform(image: Image.Image, img_size: int | tuple[int, int] = (224, 224),
                   crop_pct: float = DEFAULT_CROP_PCT, interpolation: str = "bicubic",
                   mean: tuple[float, float, float] = IMAGENET_MEAN,
                   std: tuple[float, float, float] = IMAGENET_STD) -> torch.Tensor:
    """An RGB image -> normalised float tensor (3, H, W): resize by 1/crop_pct, centre crop, normalise.

    Args:
        img_size: (height, width) of the output, or an int for a square.
        crop_pct: fraction of the resized shorter side kept by the crop (0.875: 224 from 256).
        interpolation: one of INTERPOLATIONS.
    """
    size = to_pair(img_size)
    if not 0.0 < crop_pct <= 1.0:
        raise ConfigError(f"crop_pct must be in (0, 1], got {crop_pct}")
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    if image.mode != "RGB":
        image = to_rgb(image)
    new_w, new_h = resize_size(image.size, size, crop_pct)
    image = image.resize((new_w, new_h), INTERPOLATIONS[interpolation])
    top = int(round((new_h - size[0]) / 2.0))
    left = int(round((new_w - size[1]) / 2.0))
    image = image.crop((left, top, left + size[1], top + size[0]))
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8))  # (H, W, 3)
    tensor = pixels.permute(2, 0, 1).float().div_(255.0)  # (3, H, W)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return tensor.sub_(mean_t).div_(std_t)


def _asset(name: str) -> Path:
    return Path(str(files("efficientformer") / "assets" / name))


@functools.lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in class-index order (bundled; see assets/LICENSES.md)."""
    path = _asset("imagenet_classes.txt")
    names = tuple(line for line in path.read_text(encoding="utf-8").splitlines() if line)
    if len(names) != 1000:
        raise BadFileError(f"{path} should list 1000 class names, found {len(names)}: reinstall the package")
    return names


def sample_image_path() -> Path:
    """Path of the bundled sample photo (a cat, CC0; see assets/LICENSES.md)."""
    return _asset("cat.jpg")


__all__ = ["DEFAULT_CROP_PCT", "IMAGENET_MEAN", "IMAGENET_STD", "INTERPOLATIONS", "ImageError", "eval_transform",
           "imagenet_class_names", "load_image", "resize_size", "sample_image_path", "to_rgb"]
