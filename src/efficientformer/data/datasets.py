"""The labelled images of a run: the embedded digits, or a user's folder / list file with a held-out split.

    data = run_datasets(None, img_size=64)                              # embedded digits (train/val)
    data = run_datasets("~/flowers", img_size=224)                      # 10% of each class held out
    data = run_datasets("train.csv", val_data="val/", img_size=224)     # a separate validation set

Held-out split (`val_split`, when no validation data is given): per class, the files are ordered by
the SHA-256 of "{SPLIT_SEED}:{path relative to the folder or list file}" and the first
round(fraction * count) are held out, at least one of every class that has two or more images and
never a class's last one. The split is a function of the file names alone: the same on every
machine, for every --seed and every number of processes; adding files moves only a few. Its digest
(`split_digest`) goes into job.json so that a resumed run can tell whether the data changed.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Subset

from efficientformer.data.embedded import DigitsDataset
from efficientformer.data.folder import BAD_IMAGE_POLICIES, ImageFolder, find_samples
from efficientformer.errors import BadFileError, ConfigError

SPLIT_SEED = 0
EVAL_CROP_PCT = 0.875  # validation centre crop for image folders; the embedded digits are used uncropped
DEFAULT_VAL_SPLIT = 0.1


@dataclass
class RunData:
    """The training and validation sets of a run, their class names, and how they were made.

    `describe` is what job.json records: sources, image counts, the split fraction and its digest.
    """

    train: Any
    val: Any
    classes: tuple[str, ...]
    eval_crop_pct: float | None  # None: the recipe's crop_pct (the embedded digits)
    describe: dict[str, Any] = field(default_factory=dict)


def _split_key(path: str, root: Path) -> str:
    relative = os.path.relpath(path, root).replace(os.sep, "/")
    return hashlib.sha256(f"{SPLIT_SEED}:{relative}".encode()).hexdigest()


def stratified_split(samples: list[tuple[str, int]], root: str | os.PathLike,
                     fraction: float) -> tuple[list[int], list[int]]:
    """(train indices, held-out indices) of `samples` (path, label), both sorted (module docstring).

    Args:
        root: the folder paths are made relative to before hashing (the data folder or the list
            file's folder), so the split does not depend on where the data lives.
        fraction: share of each class held out, in (0, 1).
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"val_split must be in (0, 1), got {fraction}")
    root = Path(root)
    by_class: dict[int, list[int]] = {}
    for index, (_, label) in enumerate(samples):
        by_class.setdefault(label, []).append(index)
    held_out: list[int] = []
    for members in by_class.values():
        if len(members) < 2:
            continue
        count = min(max(math.floor(fraction * len(members) + 0.5), 1), len(members) - 1)
        ordered = sorted(members, key=lambda index: _split_key(samples[index][0], root))
        held_out.extend(ordered[:count])
    held = set(held_out)
    return [i for i in range(len(samples)) if i not in held], sorted(held_out)


def split_digest(samples: list[tuple[str, int]], indices: list[int], root: str | os.PathLike) -> str:
    """A short digest of which files `indices` select (relative paths and labels)."""
    digest = hashlib.sha256()
    for index in indices:
        path, label = samples[index]
        digest.update(f"{os.path.relpath(path, root)}\t{label}\n".encode())
    return digest.hexdigest()[:16]


def _root_of(source: Path) -> Path:
    return source if source.is_dir() else source.parent


def run_datasets(data: str | os.PathLike | None, *, img_size: int, val_data: str | os.PathLike | None = None,
                 val_split: float = DEFAULT_VAL_SPLIT, on_bad_image: str = "error") -> RunData:
    """The training and validation sets of a run (module docstring); items are (PIL image, label).

    Args:
        data: a folder of class folders or a `path,label` list file; None = the embedded digits.
        img_size: the digits are upscaled to it (folder images are cropped by the transforms).
        val_data: validation images with the same classes (indexed by the training class names).
        val_split: share of each class held out when `val_data` is None.
        on_bad_image: 'error' or 'skip' (data.folder.ImageFolder).
    """
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise ConfigError(f"on_bad_image must be one of {', '.join(BAD_IMAGE_POLICIES)}, got {on_bad_image!r}")
    if data is None:
        if val_data is not None:
            raise ConfigError("val_data needs data: the embedded digits come with their own validation split")
        train, val = DigitsDataset("train", img_size), DigitsDataset("val", img_size)
        return RunData(train, val, DigitsDataset.classes, None,
                       {"train": "embedded digits (train split)", "val": "embedded digits (val split)",
                        "train_images": len(train), "val_images": len(val)})
    source = Path(data).expanduser()
    folder = ImageFolder(source, on_bad_image=on_bad_image)
    describe: dict[str, Any] = {"train": str(source), "classes": len(folder.classes)}
    if val_data is not None:
        val = ImageFolder(Path(val_data).expanduser(), classes=folder.classes, on_bad_image=on_bad_image)
        train = folder
        describe["val"] = str(val_data)
    else:
        train_idx, val_idx = stratified_split(folder.samples, _root_of(source), val_split)
        if not val_idx:
            raise BadFileError(f"{source}: no class has two or more images, so nothing can be held out for "
                               f"validation; give validation images (--val-data)")
        train, val = Subset(folder, train_idx), Subset(folder, val_idx)
        describe.update(val=f"held out from {source}", val_split=val_split, split_seed=SPLIT_SEED,
                        split_digest=split_digest(folder.samples, val_idx, _root_of(source)))
    describe.update(train_images=len(train), val_images=len(val))
    return RunData(train, val, folder.classes, EVAL_CROP_PCT, describe)


def eval_dataset(data: str | os.PathLike, classes: tuple[str, ...] | None, num_classes: int,
                 on_bad_image: str = "error", what: str = "the model") -> ImageFolder:
    """A labelled folder or list file to evaluate a model with `num_classes` outputs on.

    With the model's class names (`classes`, from its run), labels are matched by name: a class
    folder or label the model does not know is an error naming it. Without them, the data's own
    sorted classes are taken as the model's class indices, and only their count must match.
    """
    source = Path(data).expanduser()
    if classes is None:
        dataset = ImageFolder(source, on_bad_image=on_bad_image)
        if len(dataset.classes) != num_classes:
            raise ConfigError(f"{what} predicts {num_classes} classes but {source} has {len(dataset.classes)}")
        return dataset
    if len(classes) != num_classes:
        raise ConfigError(f"{what} predicts {num_classes} classes but its run names {len(classes)}")
    if source.is_dir():
        own, _ = find_samples(source)
        unknown = [name for name in own if name not in classes]
        if unknown:
            shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
            raise ConfigError(f"{source} has class folder(s) {', '.join(map(repr, unknown))} that {what} was not "
                              f"trained on (its classes: {shown})")
    return ImageFolder(source, classes=classes, on_bad_image=on_bad_image)


__all__ = ["DEFAULT_VAL_SPLIT", "EVAL_CROP_PCT", "RunData", "eval_dataset", "run_datasets", "stratified_split"]
