"""Semantic segmentation data: image folders with PNG label masks, joint image/mask transforms.

Layouts (the mask of `x.jpg` is `x.png`, found by file stem):
    root/images[/split]/*.jpg + root/annotations[/split]/*.png   (ADE20K; `masks/` also accepted)
    root/JPEGImages/*.jpg + root/SegmentationClass/*.png [+ ImageSets/Segmentation/<split>.txt]   (VOC)
Class names come from `classes.txt` (one per line, in label order) in `root`, or a given file.
A mask value is a class index, or `ignore_index` (not counted in loss or metrics). With
`reduce_zero_label` (ADE20K's raw masks: 0 = "other") 0 becomes the ignore index and every other k
except the ignore index becomes k - 1.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from efficientformer.data.folder import BAD_IMAGE_POLICIES, SkippedSample, is_image_file
from efficientformer.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImageError, load_image
from efficientformer.errors import BadFileError, ConfigError, MissingFileError

IGNORE_INDEX = 255


def read_class_names(path: str | os.PathLike) -> tuple[str, ...]:
    """One class name per non-empty line."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"class-name file {path} does not exist (one class name per line, in label order)")
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if not names:
        raise BadFileError(f"class-name file {path} lists no classes")
    return names


def find_pairs(root: str | os.PathLike, split: str | None = None) -> list[tuple[str, str]]:
    """(image path, mask path) pairs of a folder in one of the module's layouts; an unpaired image is an error."""
    root = Path(root).expanduser()
    if (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir():
        image_dir, mask_dir = root / "JPEGImages", root / "SegmentationClass"
        list_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        stems = (list_file.read_text().split() if split and list_file.is_file()
                 else sorted(p.stem for p in mask_dir.iterdir() if p.suffix.lower() == ".png"))
    else:
        image_dir = root / "images"
        mask_dir = next((root / name for name in ("annotations", "masks") if (root / name).is_dir()), root / "masks")
        if split:
            image_dir, mask_dir = image_dir / split, mask_dir / split
        if not image_dir.is_dir() or not mask_dir.is_dir():
            raise MissingFileError(f"{root} has no {image_dir.relative_to(root)}/ and {mask_dir.relative_to(root)}/ "
                                   f"folders (expected images/ + annotations/ or masks/, or the VOC layout)")
        stems = sorted(Path(name).stem for name in os.listdir(image_dir) if is_image_file(name))
    images = {Path(name).stem: image_dir / name for name in os.listdir(image_dir) if is_image_file(name)}
    pairs = []
    for stem in stems:
        if stem not in images:
            raise MissingFileError(f"no image for {stem} in {image_dir}")
        mask = mask_dir / f"{stem}.png"
        if not mask.is_file():
            raise MissingFileError(f"image {images[stem]} has no mask {mask}")
        pairs.append((str(images[stem]), str(mask)))
    if not pairs:
        raise BadFileError(f"{root}: no image/mask pairs found")
    return pairs


class MaskFolder:
    """Image/mask pairs; item i is (RGB image, (H, W) int64 label tensor) or a SkippedSample.

    Args:
        root: dataset folder; split: its sub-split ('training', 'val', ...) or None.
        classes: class names, or None for `root/classes.txt`.
        ignore_index: mask value that marks unlabelled pixels.
        reduce_zero_label: map 0 to the ignore index and k to k - 1 (ADE20K's raw masks).
        on_bad_image: 'error' raises naming the file; 'skip' returns a SkippedSample for it.
    """

    def __init__(self, root: str | os.PathLike, split: str | None = None, classes: tuple[str, ...] | None = None,
                 ignore_index: int = IGNORE_INDEX, reduce_zero_label: bool = False,
                 on_bad_image: str = "error") -> None:
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ConfigError(f"on_bad_image must be one of {', '.join(BAD_IMAGE_POLICIES)}, got {on_bad_image!r}")
        self.root = Path(root).expanduser()
        self.classes = tuple(classes) if classes is not None else read_class_names(self.root / "classes.txt")
        if ignore_index < len(self.classes) and ignore_index >= 0:
            raise ConfigError(f"ignore_index {ignore_index} is one of the {len(self.classes)} class indices")
        self.ignore_index = ignore_index
        self.reduce_zero_label = reduce_zero_label
        self.on_bad_image = on_bad_image
        self.pairs = find_pairs(self.root, split)

    def __len__(self) -> int:
        return len(self.pairs)

    def read_mask(self, index: int, image_size: tuple[int, int]) -> torch.Tensor:
        """The checked (H, W) int64 labels of pair `index`; `image_size` is the image's (width, height)."""
        image_path, mask_path = self.pairs[index]
        with Image.open(mask_path) as mask_image:
            if mask_image.size != image_size:
                raise ImageError(f"mask {mask_path} is {mask_image.size[0]}x{mask_image.size[1]} but its image "
                                 f"{image_path} is {image_size[0]}x{image_size[1]}")
            if mask_image.mode not in ("L", "P", "I", "I;16"):
                raise ImageError(f"mask {mask_path} has mode {mask_image.mode}; expected one label per pixel "
                                 f"(8-bit grayscale or palette PNG)")
            labels = torch.from_numpy(np.asarray(mask_image, dtype=np.int64).copy())  # (H, W)
        if self.reduce_zero_label:
            labels = torch.where((labels == 0) | (labels == self.ignore_index), self.ignore_index, labels - 1)
        bad = labels[(labels != self.ignore_index) & ((labels < 0) | (labels >= len(self.classes)))].unique()
        if bad.numel():
            shown = ", ".join(str(v) for v in bad[:10].tolist())
            raise ImageError(f"mask {mask_path} holds label(s) {shown} outside the {len(self.classes)} classes "
                             f"(0-{len(self.classes) - 1}) and the ignore index {self.ignore_index}")
        return labels

    def __getitem__(self, index: int) -> tuple[Image.Image, torch.Tensor] | SkippedSample:
        image_path, _ = self.pairs[index]
        try:
            image = load_image(image_path)
            return image, self.read_mask(index, image.size)
        except (ImageError, OSError) as error:
            if self.on_bad_image == "skip":
                return SkippedSample(index, image_path, str(error))
            raise ImageError(str(error) if isinstance(error, ImageError) else f"{image_path}: {error}") from None


def normalize(image: Image.Image, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """RGB image -> (3, H, W) float tensor, ImageNet-normalised."""
    tensor = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1) / 255.0  # (3, H, W)
    return (tensor - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


class TrainPairTransform:
    """Random rescale (shorter side `crop * U(scale)`), random `crop x crop` window (padded), horizontal flip.

    Padding is 0 for the image (after normalisation) and the ignore index for the mask.
    """

    def __init__(self, crop: int, scale: tuple[float, float] = (0.5, 2.0), hflip: float = 0.5,
                 ignore_index: int = IGNORE_INDEX) -> None:
        self.crop, self.scale, self.hflip, self.ignore_index = crop, tuple(scale), hflip, ignore_index

    def __call__(self, image: Image.Image, mask: torch.Tensor, generator: torch.Generator):
        factor = self.scale[0] + (self.scale[1] - self.scale[0]) * torch.rand((), generator=generator).item()
        ratio = self.crop * factor / min(image.size)
        size = (max(1, round(image.size[0] * ratio)), max(1, round(image.size[1] * ratio)))  # (W, H)
        pixels = normalize(image.resize(size, Image.Resampling.BILINEAR))  # (3, H, W)
        labels = F.interpolate(mask[None, None].float(), size=(size[1], size[0]), mode="nearest")[0, 0].long()
        pad_h, pad_w = max(0, self.crop - size[1]), max(0, self.crop - size[0])
        pixels = F.pad(pixels, (0, pad_w, 0, pad_h), value=0.0)
        labels = F.pad(labels, (0, pad_w, 0, pad_h), value=self.ignore_index)
        top = int(torch.randint(0, labels.shape[0] - self.crop + 1, (), generator=generator))
        left = int(torch.randint(0, labels.shape[1] - self.crop + 1, (), generator=generator))
        pixels = pixels[:, top:top + self.crop, left:left + self.crop]
        labels = labels[top:top + self.crop, left:left + self.crop]
        if torch.rand((), generator=generator).item() < self.hflip:
            pixels, labels = pixels.flip(-1), labels.flip(-1)
        return pixels.contiguous(), labels.contiguous()  # (3, crop, crop), (crop, crop)


def eval_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(W, H) with the shorter side near `short_side`, both multiples of 32 (the backbone's run-time rule)."""
    ratio = short_side / min(width, height)
    return max(32, round(width * ratio / 32) * 32), max(32, round(height * ratio / 32) * 32)


class EvalPairTransform:
    """Resize to `eval_size` for the model; the mask stays at its own resolution (metrics are computed there)."""

    def __init__(self, short_side: int) -> None:
        self.short_side = short_side

    def __call__(self, image: Image.Image, mask: torch.Tensor, generator: torch.Generator | None = None):
        size = eval_size(*image.size, self.short_side)
        return normalize(image.resize(size, Image.Resampling.BILINEAR)), mask


__all__ = ["EvalPairTransform", "IGNORE_INDEX", "MaskFolder", "TrainPairTransform", "eval_size", "normalize",
           "read_class_names"]
