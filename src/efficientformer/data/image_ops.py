"""RandAugment's image operations on uint8 (3, H, W) tensors, written to match Pillow's.

Each colour operation reproduces the Pillow function timm's `auto_augment.py` calls (ImageOps,
ImageEnhance, `Image.transform`) including its integer rounding: grayscale is Pillow's ITU-R 601
fixed-point luma, enhancement blends truncate like `Image.blend`, the sharpness smoothing kernel
rounds half up and leaves the one-pixel border untouched, equalize uses Pillow's step rule.

Geometric operations take Pillow's affine convention: (a, b, c, d, e, f) maps an output point
(x, y) to the input point (a x + b y + c, d x + e y + f), with pixel centres at half-integers.
Points whose source falls outside the image get the fill colour; points inside are interpolated
with edge pixels repeated, as Pillow does. Bilinear results are truncated like Pillow's and match
it up to ties (a value Pillow computes as 100.9999 and we as 101.0 differs by one level);
`grid_sample`'s bicubic kernel is a = -0.75 where Pillow's affine bicubic uses a = -1,
so bicubic differs from Pillow by a few levels at sharp edges.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from efficientformer.errors import ConfigError

GEOMETRIC_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")

_SMOOTH_KERNEL = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0  # ImageFilter.SMOOTH


def check_image(image: torch.Tensor) -> None:
    """Raise unless `image` is a uint8 (3, H, W) tensor."""
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a uint8 (3, H, W) image tensor, got {image.dtype} {tuple(image.shape)}")


def apply_lut(image: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Map every pixel of channel c through `lut[c]` (a (3, 256) table, clamped to [0, 255])."""
    channels, height, width = image.shape
    table = lut.clamp(0, 255).to(torch.uint8)  # (3, 256)
    flat = image.reshape(channels, height * width).long()  # (3, H*W)
    return torch.gather(table, 1, flat).reshape(channels, height, width)


def invert(image: torch.Tensor) -> torch.Tensor:
    """255 - x (ImageOps.invert)."""
    return 255 - image


def auto_contrast(image: torch.Tensor) -> torch.Tensor:
    """Stretch each channel so its darkest value becomes 0 and its brightest 255 (ImageOps.autocontrast)."""
    low = image.amin(dim=(1, 2)).double().view(3, 1)  # (3, 1)
    high = image.amax(dim=(1, 2)).double().view(3, 1)
    levels = torch.arange(256, dtype=torch.float64).view(1, 256)
    flat = high <= low
    scale = 255.0 / torch.where(flat, torch.ones_like(high), high - low)
    stretched = (levels * scale - low * scale).trunc()  # (3, 256), int() of Pillow's lut entries
    return apply_lut(image, torch.where(flat, levels, stretched))


def equalize(image: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per channel, with Pillow's step rule (ImageOps.equalize)."""
    tables = []
    identity = torch.arange(256, dtype=torch.int64)
    for channel in image:
        histogram = torch.bincount(channel.reshape(-1).long(), minlength=256)  # (256,)
        used = histogram[histogram > 0]
        step = int(used.sum() - used[-1]) // 255 if used.numel() > 1 else 0
        if step == 0:  # one colour, or too few pixels to spread
            tables.append(identity)
            continue
        before = torch.cumsum(histogram, 0) - histogram  # pixels below each level
        tables.append(torch.div(before + step // 2, step, rounding_mode="floor"))
    return apply_lut(image, torch.stack(tables))


def posterize(image: torch.Tensor, bits: int) -> torch.Tensor:
    """Keep the `bits` most significant bits of every value (ImageOps.posterize); 8 or more is identity."""
    if bits >= 8:
        return image.clone()
    mask = (0xFF << (8 - max(bits, 0))) & 0xFF
    return image & mask


def solarize(image: torch.Tensor, threshold: int) -> torch.Tensor:
    """Invert the values at or above `threshold` (ImageOps.solarize); 256 is identity."""
    if threshold > 255:  # compared as a Python int: a uint8 tensor would wrap 256 to 0
        return image.clone()
    return torch.where(image >= max(int(threshold), 0), 255 - image, image)


def solarize_add(image: torch.Tensor, add: int, threshold: int = 128) -> torch.Tensor:
    """Add `add` (saturating at 255) to the values below `threshold` (timm's solarize_add)."""
    raised = (image.to(torch.int16) + add).clamp(0, 255).to(torch.uint8)
    return torch.where(image < threshold, raised, image)


def grayscale(image: torch.Tensor) -> torch.Tensor:
    """Pillow's RGB -> L luma, (R*19595 + G*38470 + B*7471 + 2**15) >> 16, as a (1, H, W) uint8 tensor."""
    red, green, blue = image.to(torch.int32)
    luma = (red * 19595 + green * 38470 + blue * 7471 + 0x8000) >> 16  # (H, W)
    return luma.to(torch.uint8).unsqueeze(0)


def blend(degenerate: torch.Tensor, image: torch.Tensor, factor: float) -> torch.Tensor:
    """`degenerate + factor * (image - degenerate)`, clamped and truncated as Image.blend does.

    Args:
        degenerate: what factor 0 gives; broadcast against `image`.
        factor: 1 returns `image`; above 1 extrapolates away from `degenerate`.
    """
    base = degenerate.float()
    mixed = base + float(factor) * (image.float() - base)
    return mixed.clamp_(0.0, 255.0).floor_().to(torch.uint8)


def color(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Saturation: blend from the grayscale image (ImageEnhance.Color)."""
    return blend(grayscale(image), image, factor)


def contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Contrast: blend from a flat image at the mean luma, rounded (ImageEnhance.Contrast)."""
    luma = grayscale(image)
    mean = int(int(luma.sum(dtype=torch.int64)) / luma.numel() + 0.5)  # exact integer sum: no thread-order effects
    return blend(torch.full((1, 1, 1), mean, dtype=torch.uint8), image, factor)


def brightness(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Brightness: blend from black (ImageEnhance.Brightness)."""
    return blend(torch.zeros((1, 1, 1), dtype=torch.uint8), image, factor)


def smooth(image: torch.Tensor) -> torch.Tensor:
    """ImageFilter.SMOOTH: 3x3 kernel (1 1 1; 1 5 1; 1 1 1)/13 rounded half up; the border is copied."""
    channels, height, width = image.shape
    if height < 3 or width < 3:
        return image.clone()
    kernel = _SMOOTH_KERNEL.view(1, 1, 3, 3).expand(channels, 1, 3, 3)  # one depthwise kernel per channel
    inner = F.conv2d(image.float().unsqueeze(0), kernel, groups=channels)  # (1, 3, H-2, W-2)
    out = image.clone()
    out[:, 1:-1, 1:-1] = (inner[0] + 0.5).floor_().clamp_(0, 255).to(torch.uint8)
    return out


def sharpness(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Sharpness: blend from the smoothed image (ImageEnhance.Sharpness)."""
    return blend(smooth(image), image, factor)


def affine(image: torch.Tensor, matrix: tuple[float, float, float, float, float, float],
           fill: tuple[int, int, int], interpolation: str = "bilinear") -> torch.Tensor:
    """Resample with Pillow's `Image.transform(size, AFFINE, matrix)` convention (see the module docstring).

    Args:
        matrix: (a, b, c, d, e, f): output point (x, y) samples input (a x + b y + c, d x + e y + f),
            in pixel units with pixel centres at half-integers.
        fill: the colour of output pixels whose source lies outside the image.
        interpolation: one of GEOMETRIC_INTERPOLATIONS.
    """
    if interpolation not in GEOMETRIC_INTERPOLATIONS:
        raise ConfigError(f"interpolation must be one of {', '.join(GEOMETRIC_INTERPOLATIONS)}, got {interpolation!r}")
    _, height, width = image.shape
    a, b, c, d, e, f = (float(value) for value in matrix)
    ys = torch.arange(height, dtype=torch.float64).add_(0.5).view(height, 1)  # (H, 1) output pixel centres
    xs = torch.arange(width, dtype=torch.float64).add_(0.5).view(1, width)  # (1, W)
    source_x = a * xs + b * ys + c  # (H, W)
    source_y = d * xs + e * ys + f
    inside = (source_x >= 0) & (source_x < width) & (source_y >= 0) & (source_y < height)  # (H, W)
    grid = torch.stack((source_x * (2.0 / width) - 1.0, source_y * (2.0 / height) - 1.0), dim=-1)  # (H, W, 2)
    # float64, so that truncating like Pillow does not turn an exact 101 computed as 100.99999 into 100
    sampled = F.grid_sample(image.double().unsqueeze(0), grid.unsqueeze(0), mode=interpolation,
                            padding_mode="border", align_corners=False)[0]  # (3, H, W)
    if interpolation == "bilinear":  # Pillow truncates bilinear results
        sampled = sampled.add_(1e-6).floor_()
    sampled = sampled.round_().clamp_(0, 255).to(torch.uint8)
    fill_colour = torch.tensor(fill, dtype=torch.uint8).view(3, 1, 1)
    return torch.where(inside, sampled, fill_colour)


def rotate(image: torch.Tensor, degrees: float, fill: tuple[int, int, int],
           interpolation: str = "bilinear") -> torch.Tensor:
    """Rotate counter-clockwise by `degrees` about the image centre, same size (Image.rotate)."""
    _, height, width = image.shape
    angle = -math.radians(degrees)
    cos, sin = round(math.cos(angle), 15), round(math.sin(angle), 15)
    centre_x, centre_y = width / 2.0, height / 2.0
    # output -> input: rotate about the centre by -degrees
    matrix = (cos, sin, centre_x - cos * centre_x - sin * centre_y,
              -sin, cos, centre_y + sin * centre_x - cos * centre_y)
    return affine(image, matrix, fill, interpolation)


def shear_x(image: torch.Tensor, factor: float, fill: tuple[int, int, int],
            interpolation: str = "bilinear") -> torch.Tensor:
    """x_in = x + factor * y, about the top-left corner as timm's shear_x."""
    return affine(image, (1.0, factor, 0.0, 0.0, 1.0, 0.0), fill, interpolation)


def shear_y(image: torch.Tensor, factor: float, fill: tuple[int, int, int],
            interpolation: str = "bilinear") -> torch.Tensor:
    """y_in = y + factor * x, about the top-left corner as timm's shear_y."""
    return affine(image, (1.0, 0.0, 0.0, factor, 1.0, 0.0), fill, interpolation)


def translate_x(image: torch.Tensor, pixels: float, fill: tuple[int, int, int],
                interpolation: str = "bilinear") -> torch.Tensor:
    """x_in = x + pixels: positive values move the content left."""
    return affine(image, (1.0, 0.0, pixels, 0.0, 1.0, 0.0), fill, interpolation)


def translate_y(image: torch.Tensor, pixels: float, fill: tuple[int, int, int],
                interpolation: str = "bilinear") -> torch.Tensor:
    """y_in = y + pixels: positive values move the content up."""
    return affine(image, (1.0, 0.0, 0.0, 0.0, 1.0, pixels), fill, interpolation)


__all__ = [
    "GEOMETRIC_INTERPOLATIONS", "affine", "apply_lut", "auto_contrast", "blend", "brightness", "check_image", "color",
    "contrast", "equalize", "grayscale", "invert", "posterize", "rotate", "sharpness", "shear_x", "shear_y", "smooth",
    "solarize", "solarize_add", "translate_x", "translate_y",
]
