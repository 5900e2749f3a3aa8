"""Labelled image files from a folder of class folders or from a `path,label` list file.

    dataset = ImageFolder("train/")                     # train/<class>/**/<image>, classes = sorted folder names
    dataset = ImageFolder("train.csv")                  # lines of path,label
    val = ImageFolder("val/", classes=dataset.classes)  # the same class indices for another split
    image, label = dataset[0]                           # a PIL RGB image, or transform(image) when given

Folders: every non-hidden subfolder of the root is a class; its index is its place in the sorted
(code-point order) folder names. Images are the files under a class folder, at any depth, whose
extension (case-insensitive) is in IMAGE_EXTENSIONS. Names starting with '.' (files and folders)
are ignored, as are files directly in the root, other extensions and links to folders.

List files: one `path,label` per line (CSV quoting allowed), relative paths taken from the list
file's folder. Blank lines and lines starting with '#' are skipped. The first other line is a
header, and skipped, when it names the columns (`path,label`, `filename,class`, ...: see
HEADER_PATHS and HEADER_LABELS). Without `classes`, labels that are all integers are class indices (classes "0" ...
"max"); otherwise every label is a class name, and the classes are the sorted names. With
`classes`, a label is one of those names or an index into them. Listed files are not checked
when the list is read: a missing file is a bad sample like an undecodable one.

Bad samples (`on_bad_image`): "error" raises ImageError naming the file. "skip" returns a
SkippedSample (index, path, error) in place of the item and records it in `dataset.skipped`;
nothing is substituted. DataLoader workers are separate processes whose `skipped` lists the main
process never sees, so the report travels with the batches: `collate_skip_none` drops the
markers and returns (images, labels, skipped_paths), which `train.loop` collects per epoch.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from efficientformer.data.preprocess import ImageError, load_image
from efficientformer.errors import BadFileError, ConfigError, MissingFileError

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
HEADER_PATHS = ("path", "file", "filename", "file_name", "filepath", "image", "image_path", "img")
HEADER_LABELS = ("label", "class", "class_name", "target", "category")
BAD_IMAGE_POLICIES = ("error", "skip")

Sample = tuple[str, int]  # (path, class index)


@dataclass(frozen=True)
class SkippedSample:
    """What a dataset with on_bad_image="skip" returns for a sample it cannot read."""

    index: int
    path: str
    error: str


def is_image_file(name: str) -> bool:
    """A non-hidden file name with one of IMAGE_EXTENSIONS (any case)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _raise(error: OSError) -> None:
    raise error


def _images_under(folder: Path) -> list[str]:
    """Image files under `folder` at any depth, skipping hidden names, in sorted order."""
    found = []
    for directory, subdirs, names in os.walk(folder, onerror=_raise):
        subdirs[:] = [name for name in subdirs if not name.startswith(".")]
        found.extend(os.path.join(directory, name) for name in names if is_image_file(name))
    return sorted(found)


def scan_folder(root: str | os.PathLike, classes: Sequence[str] | None = None) -> tuple[tuple[str, ...], list[Sample]]:
    """(classes, samples) of a folder with one subfolder per class.

    Args:
        classes: the class names to index against (another split's); by default the sorted folder
            names. Every folder must be one of them; a class may have no folder.

    Raises:
        FileNotFoundError: `root` does not exist.
        ValueError: no class folders, a class folder without images, or a folder not in `classes`.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"image folder {root} does not exist" if not root.exists()
                               else f"{root} is not a folder")
    with os.scandir(root) as entries:
        folders = sorted(entry.name for entry in entries if entry.is_dir() and not entry.name.startswith("."))
    if not folders:
        raise BadFileError(f"image folder {root} has no class folders (expected one subfolder of images per class)")
    classes = tuple(folders) if classes is None else tuple(classes)
    class_to_idx = {name: index for index, name in enumerate(classes)}
    unknown = [name for name in folders if name not in class_to_idx]
    if unknown:
        raise ConfigError(f"image folder {root}: class folder(s) {', '.join(map(repr, unknown))} are not among the "
                          f"{len(classes)} given classes")
    samples: list[Sample] = []
    for name in folders:
        paths = _images_under(root / name)
        if not paths:
            raise BadFileError(f"class folder {root / name} has no images (looked for {' '.join(IMAGE_EXTENSIONS)}, "
                               f"hidden files ignored)")
        samples.extend((path, class_to_idx[name]) for path in paths)
    return classes, samples


def _is_header(row: list[str]) -> bool:
    return len(row) == 2 and row[0].lower() in HEADER_PATHS and row[1].lower() in HEADER_LABELS


def read_list(path: str | os.PathLike, classes: Sequence[str] | None = None) -> tuple[tuple[str, ...], list[Sample]]:
    """(classes, samples) of a list file of `path,label` lines (see the module docstring for the rules).

    Raises:
        FileNotFoundError: the list file does not exist.
        ValueError: a malformed line or an unknown label (naming the line), or no lines at all.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"list file {path} does not exist")
    reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline=""), skipinitialspace=True)
    rows: list[tuple[int, str, str]] = []  # (line number, path, label)
    first = True
    for row in reader:
        fields = [field.strip() for field in row]
        if not any(fields) or fields[0].startswith("#"):
            continue
        if first and _is_header(fields):
            first = False
            continue
        first = False
        if len(fields) != 2 or not fields[0] or not fields[1]:
            raise BadFileError(f"{path}, line {reader.line_num}: expected 'path,label', got {','.join(row)!r}")
        rows.append((reader.line_num, fields[0], fields[1]))
    if not rows:
        raise BadFileError(f"list file {path} lists no images")
    labels = [label for _, _, label in rows]
    if classes is None:
        if all(re.fullmatch(r"\d+", label) for label in labels):
            classes = tuple(str(index) for index in range(max(int(label) for label in labels) + 1))
        else:
            classes = tuple(sorted(set(labels)))
    classes = tuple(classes)
    class_to_idx = {name: index for index, name in enumerate(classes)}
    samples: list[Sample] = []
    for line, file, label in rows:
        if label in class_to_idx:
            index = class_to_idx[label]
        elif re.fullmatch(r"\d+", label) and int(label) < len(classes):
            index = int(label)
        else:
            shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
            raise BadFileError(f"{path}, line {line}: unknown label {label!r} (classes: {shown})")
        samples.append((str(path.parent / file), index))  # an absolute `file` replaces the parent
    return classes, samples


def find_samples(source: str | os.PathLike,
                 classes: Sequence[str] | None = None) -> tuple[tuple[str, ...], list[Sample]]:
    """(classes, samples) of a folder of class folders or of a list file, whichever `source` is."""
    source = Path(source)
    if source.is_dir():
        return scan_folder(source, classes)
    if source.is_file():
        return read_list(source, classes)
    raise MissingFileError(f"image folder or list file {source} does not exist")


class ImageFolder(Dataset):
    """Labelled images from a folder of class folders or a `path,label` list file (module docstring).

    Args:
        source: the folder or the list file.
        transform: called on each PIL RGB image (e.g. EvalTransform); None returns the PIL image.
        classes: class names to index against (those of the training split); default: from `source`.
        on_bad_image: "error" raises ImageError for a file that cannot be read; "skip" returns a
            SkippedSample for it (drop those with `collate_skip_none`).
    """

    def __init__(self, source: str | os.PathLike, transform: Callable[[Image.Image], Any] | None = None, *,
                 classes: Sequence[str] | None = None, on_bad_image: str = "error") -> None:
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ConfigError(f"on_bad_image must be one of {', '.join(BAD_IMAGE_POLICIES)}, got {on_bad_image!r}")
        self.source = Path(source)
        self.transform = transform
        self.on_bad_image = on_bad_image
        self.classes, self.samples = find_samples(self.source, classes)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        self.skipped: list[SkippedSample] = []  # this process's skips only (see collate_skip_none)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> list[int]:
        """The class index of every sample, in order."""
        return [label for _, label in self.samples]

    def class_counts(self) -> dict[str, int]:
        """Number of samples per class name, in class order (classes without samples count 0)."""
        counts = dict.fromkeys(self.classes, 0)
        for _, label in self.samples:
            counts[self.classes[label]] += 1
        return counts

    def __getitem__(self, index: int) -> tuple[Any, int] | SkippedSample:
        index = range(len(self.samples))[index]  # IndexError when out of range; negative indices count back
        path, label = self.samples[index]
        try:
            image = load_image(path)
        except (ImageError, FileNotFoundError) as error:
            if self.on_bad_image == "error":
                if isinstance(error, ImageError):
                    raise
                raise ImageError(f"cannot read image {path}: {error}") from None
            skipped = SkippedSample(index, path, str(error))
            self.skipped.append(skipped)
            return skipped
        return (image if self.transform is None else self.transform(image)), label


def collate_skip_none(items: list[Any]) -> tuple[Any, torch.Tensor, list[str]]:
    """DataLoader collate that drops skipped samples: returns (images, labels, skipped_paths).

    SkippedSample markers give their path; bare None items (from other datasets) are dropped
    without one. The kept items are collated with torch's default_collate. A batch whose
    samples were all skipped gives an empty images tensor of shape (0,) and empty labels.
    """
    kept = [item for item in items if item is not None and not isinstance(item, SkippedSample)]
    skipped = [item.path for item in items if isinstance(item, SkippedSample)]
    if not kept:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    images, labels = default_collate(kept)
    return images, labels, skipped


__all__ = ["BAD_IMAGE_POLICIES", "IMAGE_EXTENSIONS", "ImageFolder", "Sample", "SkippedSample", "collate_skip_none",
           "find_samples", "is_image_file"]
