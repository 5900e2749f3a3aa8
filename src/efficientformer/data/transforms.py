"""Training augmentation on tensors (no torchvision), deterministic per sample (docs/training.md).

    transform = TrainTransform.from_recipe(recipe)        # RRC, flip, RandAugment, normalise, erasing
    train_set = AugmentedDataset(folder, transform, seed=recipe.seed)
    train_set.set_epoch(epoch)                            # before each epoch's DataLoader iterator
    image, label = train_set[index]                       # same (seed, epoch, index) -> same tensor

The pipeline is timm's `transforms_imagenet_train`: the image becomes a uint8 (3, H, W) tensor
once, then random-resized-crop (bicubic, antialiased), horizontal flip and RandAugment work on
uint8, and random erasing runs after normalisation. Every draw comes from the generator passed
to the call, which AugmentedDataset seeds from (seed, epoch, index, repeat) (data/seeding.py), so
the output does not depend on DataLoader workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from efficientformer.data.folder import SkippedSample
from efficientformer.data.preprocess import DEFAULT_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD, eval_transform, to_rgb
from efficientformer.data.randaugment import RandAugment, RandAugmentConfig, parse_rand_augment
from efficientformer.data.seeding import randint, sample_generator, uniform
from efficientformer.errors import ConfigError
from efficientformer.utils.sizes import to_pair

RESIZE_INTERPOLATIONS = ("bilinear", "bicubic")
ERASE_MODES = ("pixel", "rand", "const")

Box = tuple[int, int, int, int]  # (top, left, height, width)


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL image (any mode) -> uint8 (3, H, W) RGB tensor."""
    if image.mode != "RGB":
        image = to_rgb(image)
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8))  # (H, W, 3)
    return pixels.permute(2, 0, 1)  # (3, H, W), a view


def random_resized_crop_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                            generator: torch.Generator) -> Box:
    """timm's RandomResizedCrop.get_params: area fraction in `scale`, log-uniform aspect in `ratio`.

    Ten tries for a box that fits; then the whole image, centre-cropped to the nearest allowed aspect.
    Returns (top, left, height, width).
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = uniform(generator, *scale) * area
        aspect = math.exp(uniform(generator, *log_ratio))
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = randint(generator, 0, height - crop_h)
            left = randint(generator, 0, width - crop_w)
            return top, left, crop_h, crop_w
    in_ratio = width / height
    if in_ratio < min(ratio):
        crop_w, crop_h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        crop_w, crop_h = int(round(height * max(ratio))), height
    else:
        crop_w, crop_h = width, height
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def resized_crop(image: torch.Tensor, box: Box, size: tuple[int, int], interpolation: str = "bicubic") -> torch.Tensor:
    """Crop `box` = (top, left, height, width) of a uint8 (3, H, W) image and resize it to `size` (H, W).

    As Pillow's resize (which timm uses): antialiased, and separable with the horizontal pass
    first, rounded and clipped to [0, 255] between the passes; that reproduces Pillow to within a
    level on most pixels (a few overshooting edge pixels differ more).
    """
    top, left, crop_h, crop_w = box
    pixels = image[:, top:top + crop_h, left:left + crop_w].unsqueeze(0)  # (1, 3, h, w)
    for pass_size in ((crop_h, size[1]), (size[0], size[1])):
        if tuple(pixels.shape[-2:]) != pass_size:
            resized = F.interpolate(pixels.float(), size=pass_size, mode=interpolation, align_corners=False,
                                    antialias=True)  # (1, 3, h or H', W')
            pixels = resized.round_().clamp_(0, 255).to(torch.uint8)
    return pixels[0].contiguous()


def normalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (3, H, W) -> float32 (3, H, W): scale to [0, 1], subtract `mean`, divide by `std`."""
    tensor = image.float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return tensor.sub_(mean_t).div_(std_t)


class RandomErasing:
    """timm's RandomErasing on one normalised (C, H, W) tensor (Zhong et al., 2017).

    With probability `probability`, erase between 1 and `max_count` rectangles, each covering a
    uniform fraction in [min_area, max_area] / count of the image with log-uniform aspect in
    [min_aspect, 1 / min_aspect]; a box that does not fit is redrawn up to ten times, then skipped.

    Args:
        mode: 'pixel' fills with per-pixel N(0, 1) noise, 'rand' with one N(0, 1) colour per box,
            'const' with zeros (the mean colour, after normalisation).
    """

    def __init__(self, probability: float = 0.25, mode: str = "pixel", max_count: int = 1, min_area: float = 0.02,
                 max_area: float = 1 / 3, min_aspect: float = 0.3) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ConfigError(f"random erasing probability must be in [0, 1], got {probability}")
        if mode not in ERASE_MODES:
            raise ConfigError(f"random erasing mode must be one of {', '.join(ERASE_MODES)}, got {mode!r}")
        if max_count < 1:
            raise ConfigError(f"random erasing count must be at least 1, got {max_count}")
        self.probability = probability
        self.mode = mode
        self.max_count = max_count
        self.area = (min_area, max_area)
        self.log_aspect = (math.log(min_aspect), math.log(1.0 / min_aspect))

    def sample_boxes(self, height: int, width: int, generator: torch.Generator) -> list[Box]:
        """The rectangles one call erases, as (top, left, height, width); [] when it does not fire."""
        if uniform(generator) > self.probability:
            return []
        count = 1 if self.max_count == 1 else randint(generator, 1, self.max_count)
        boxes = []
        for _ in range(count):
            for _ in range(10):
                target_area = uniform(generator, *self.area) * height * width / count
                aspect = math.exp(uniform(generator, *self.log_aspect))
                box_h = int(round(math.sqrt(target_area * aspect)))
                box_w = int(round(math.sqrt(target_area / aspect)))
                if box_w < width and box_h < height:
                    boxes.append((randint(generator, 0, height - box_h), randint(generator, 0, width - box_w),
                                  box_h, box_w))
                    break
        return boxes

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        channels, height, width = image.shape
        boxes = self.sample_boxes(height, width, generator)
        if not boxes:
            return image
        image = image.clone()
        for top, left, box_h, box_w in boxes:
            if self.mode == "pixel":
                fill = torch.randn((channels, box_h, box_w), generator=generator, dtype=image.dtype)
            elif self.mode == "rand":
                fill = torch.randn((channels, 1, 1), generator=generator, dtype=image.dtype)
            else:
                fill = torch.zeros((channels, 1, 1), dtype=image.dtype)
            image[:, top:top + box_h, left:left + box_w] = fill
        return image


class TrainTransform:
    """PIL image -> augmented, normalised float (3, H, W): `transform(image, generator)`.

    Args:
        img_size: output (height, width), or an int for a square.
        scale, ratio: random-resized-crop area fraction and aspect (width / height) ranges.
        hflip: probability of a horizontal flip.
        rand_augment: timm RandAugment spec ('' for none) or a parsed RandAugmentConfig.
        reprob, remode, recount: random erasing probability, mode ('pixel', 'rand', 'const') and maximum count.
        interpolation: crop resize, 'bicubic' (docs/training.md) or 'bilinear'.
        mean, std: normalisation; RandAugment fills uncovered areas with round(255 * mean).
    """

    def __init__(self, img_size: int | Sequence[int] = 224, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip: float = 0.5,
                 rand_augment: str | RandAugmentConfig | None = "", reprob: float = 0.0, remode: str = "pixel",
                 recount: int = 1, interpolation: str = "bicubic", mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        if interpolation not in RESIZE_INTERPOLATIONS:
            raise ConfigError(f"interpolation must be one of {', '.join(RESIZE_INTERPOLATIONS)}, got {interpolation!r}")
        if not 0.0 <= hflip <= 1.0:
            raise ConfigError(f"hflip probability must be in [0, 1], got {hflip}")
        if not 0 < scale[0] <= scale[1] or not 0 < ratio[0] <= ratio[1]:
            raise ConfigError(f"scale and ratio must be positive (low, high) ranges, got {scale}, {ratio}")
        self.img_size = to_pair(img_size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.hflip = hflip
        self.interpolation = interpolation
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        config = parse_rand_augment(rand_augment) if isinstance(rand_augment, str) else rand_augment
        fill = tuple(min(255, round(255 * m)) for m in self.mean)
        self.rand_augment = RandAugment(config, fill=fill) if config is not None else None
        self.erasing = RandomErasing(reprob, remode, recount) if reprob > 0 else None

    @classmethod
    def from_recipe(cls, recipe: Any, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> TrainTransform:
        """Build from a train.recipes.TrainRecipe (read by attribute: img_size, scale, ratio, hflip,
        rand_augment, reprob, remode, recount)."""
        return cls(img_size=recipe.img_size, scale=recipe.scale, ratio=recipe.ratio, hflip=recipe.hflip,
                   rand_augment=recipe.rand_augment, reprob=recipe.reprob, remode=recipe.remode,
                   recount=recipe.recount, mean=mean, std=std)

    def __call__(self, image: Image.Image, generator: torch.Generator) -> torch.Tensor:
        pixels = pil_to_tensor(image)  # (3, H, W) uint8
        box = random_resized_crop_box(pixels.shape[1], pixels.shape[2], self.scale, self.ratio, generator)
        pixels = resized_crop(pixels, box, self.img_size, self.interpolation)
        if uniform(generator) < self.hflip:
            pixels = pixels.flip(-1)
        if self.rand_augment is not None:
            pixels = self.rand_augment(pixels, generator)
        tensor = normalize(pixels, self.mean, self.std)
        if self.erasing is not None:
            tensor = self.erasing(tensor, generator)
        return tensor

    def __repr__(self) -> str:
        return (f"TrainTransform(img_size={self.img_size}, scale={self.scale}, ratio={self.ratio}, "
                f"hflip={self.hflip}, rand_augment={self.rand_augment!r}, erasing="
                f"{None if self.erasing is None else (self.erasing.probability, self.erasing.mode)}, "
                f"interpolation={self.interpolation!r})")


class EvalTransform:
    """preprocess.eval_transform behind the training transform's `transform(image, generator)` call.

    Args:
        img_size: output (height, width), or an int for a square.
        crop_pct: fraction of the resized shorter side kept by the centre crop.
    """

    def __init__(self, img_size: int | Sequence[int] = 224, crop_pct: float = DEFAULT_CROP_PCT,
                 interpolation: str = "bicubic", mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        self.img_size = to_pair(img_size)
        self.crop_pct = crop_pct
        self.interpolation = interpolation
        self.mean = tuple(mean)
        self.std = tuple(std)

    @classmethod
    def from_recipe(cls, recipe: Any, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> EvalTransform:
        """Build from a TrainRecipe's img_size and crop_pct."""
        return cls(img_size=recipe.img_size, crop_pct=recipe.crop_pct, mean=mean, std=std)

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        return eval_transform(image, self.img_size, crop_pct=self.crop_pct, interpolation=self.interpolation,
                              mean=self.mean, std=self.std)


class ImageDataset(Protocol):
    """What AugmentedDataset wraps: (PIL image, label) items, or None / a SkippedSample for a sample to skip."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Image.Image, int] | SkippedSample | None: ...


class AugmentedDataset(Dataset):
    """Applies `transform(image, generator)` to a base dataset, seeding each item from (seed, epoch, index).

    Items are looked up by index, or by (index, repeat) when a sampler repeats indices within an
    epoch (repeated augmentation): each copy then gets its own augmentation. None and SkippedSample
    items of the base (unreadable samples it skips) pass through unchanged.

    The epoch travels to DataLoader workers when they start, i.e. with each new iterator: call
    `set_epoch` before creating it, and do not use persistent_workers.

    Args:
        base: a dataset of (PIL image, label) pairs.
        transform: a callable (image, generator) -> tensor, e.g. TrainTransform or EvalTransform.
        seed: the run's base seed.
    """

    def __init__(self, base: ImageDataset, transform: Callable[[Image.Image, torch.Generator], torch.Tensor],
                 seed: int = 0) -> None:
        self.base = base
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations the following items get."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int] | SkippedSample | None:
        index, repeat = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), 0)
        if index < 0:
            index += len(self)
        item = self.base[index]
        if item is None or isinstance(item, SkippedSample):
            return item
        image, label = item
        generator = sample_generator(self.seed, self.epoch, index, repeat)
        return self.transform(image, generator), label


__all__ = ["AugmentedDataset", "ERASE_MODES", "EvalTransform", "ImageDataset", "RESIZE_INTERPOLATIONS", "RandomErasing",
           "TrainTransform"]
