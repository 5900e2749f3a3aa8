"""The verify pass: decode every image of a data set once and report each bad file with its reason.

    report = verify_images("train/")        # or a path,label list file; see data/folder.py
    report.ok                               # False when any file is bad
    report.images_per_class                 # {"cat": 1300, ...}
    for bad in report.bad:                  # in sample order
        print(bad.path, bad.reason, bad.detail)

Each file goes through `load_image`, the same decoder training uses, so a file that passes here
reads during training. Pillow's decompression-bomb limit is `PIL.Image.MAX_IMAGE_PIXELS` at the
time of the call (worker processes get the caller's value). Workers are processes, not threads:
`load_image` turns the decompression-bomb warning into an error with `warnings.catch_warnings`,
which is not thread-safe.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError
from rich.progress import Progress, TaskID

from efficientformer.data.folder import Sample, find_samples
from efficientformer.data.preprocess import ImageError, load_image
from efficientformer.errors import ConfigError
from efficientformer.utils.progress import progress_bar

BAD_IMAGE_REASONS = {
    "empty": "the file has 0 bytes",
    "missing": "a listed file does not exist",
    "unreadable": "cannot be opened, or is not an image format Pillow recognises",
    "truncated": "the image data ends early",
    "corrupt": "decoding failed on broken data",
    "oversized": "more pixels than Pillow's decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS)",
}


@dataclass(frozen=True)
class BadFile:
    """One file that does not decode: its path, class, reason (a key of BAD_IMAGE_REASONS) and details."""

    path: str
    label: str
    reason: str
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    """Result of `verify_images`: files per class and every bad file, in sample order."""

    source: str
    classes: tuple[str, ...]
    images_per_class: dict[str, int]
    bad: tuple[BadFile, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when every file decodes."""
        return not self.bad

    @property
    def num_images(self) -> int:
        """Files checked, good and bad."""
        return sum(self.images_per_class.values())

    def bad_per_class(self) -> dict[str, int]:
        """Bad files per class name, in class order."""
        counts = dict.fromkeys(self.classes, 0)
        for bad in self.bad:
            counts[bad.label] += 1
        return counts

    def bad_per_reason(self) -> dict[str, int]:
        """Bad files per reason, for the reasons that occur, in BAD_IMAGE_REASONS order."""
        counts = {reason: sum(bad.reason == reason for bad in self.bad) for reason in BAD_IMAGE_REASONS}
        return {reason: count for reason, count in counts.items() if count}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {"source": self.source, "ok": self.ok, "num_images": self.num_images, "num_bad": len(self.bad),
                "classes": [{"name": name, "images": self.images_per_class[name], "bad": bad}
                            for name, bad in self.bad_per_class().items()],
                "bad_per_reason": self.bad_per_reason(),
                "bad": [{"path": bad.path, "class": bad.label, "reason": bad.reason, "detail": bad.detail}
                        for bad in self.bad]}


def classify(error: ImageError) -> str:
    """The reason (a key of BAD_IMAGE_REASONS) for an ImageError raised by `load_image`.

    `load_image` raises `from None`, which hides the original exception from tracebacks but keeps
    it as `__context__`; its type (and Pillow's "truncated" wording) gives the reason.
    """
    cause = error.__context__
    if isinstance(cause, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "oversized"
    if isinstance(cause, (UnidentifiedImageError, PermissionError)):
        return "unreadable"
    if isinstance(cause, EOFError) or "truncated" in str(cause if cause is not None else error).lower():
        return "truncated"
    return "corrupt"


def check_image(path: str | os.PathLike) -> tuple[str, str] | None:
    """None when `path` decodes to an RGB image, else (reason, detail)."""
    path = str(path)
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return "missing", "does not exist"
    except OSError as error:
        return "unreadable", error.strerror or str(error)
    if size == 0:
        return "empty", "0 bytes"
    try:
        load_image(path)
    except FileNotFoundError as error:  # a folder with an image's name, or deleted since the stat
        return "unreadable", str(error)
    except ImageError as error:
        reason, detail = classify(error), str(error).removeprefix(f"cannot read image {path}: ")
        if detail.startswith("corrupt or truncated file (") and detail.endswith(")"):
            detail = detail[len("corrupt or truncated file ("):-1]  # the reason says which; keep Pillow's words
        size_match = re.search(r"\((\d+) pixels\)", detail)
        if reason == "oversized" and size_match:  # Pillow quotes 2x the limit when it raises instead of warning
            detail = f"{int(size_match[1]):,} pixels, over the limit of {Image.MAX_IMAGE_PIXELS:,} " \
                     f"(PIL.Image.MAX_IMAGE_PIXELS)"
        return reason, detail
    return None


def _init_worker(max_image_pixels: int | None) -> None:
    Image.MAX_IMAGE_PIXELS = max_image_pixels  # the caller's limit, also under the spawn start method


def verify_images(source: str | os.PathLike, *, classes: Sequence[str] | None = None, workers: int = 0,
                  progress: bool | None = None) -> VerifyReport:
    """Decode every image of a folder of class folders or a list file once; report the bad ones.

    Args:
        source: the folder or list file, read as `ImageFolder` reads it (same files, same order).
        classes: class names to index against, as for ImageFolder.
        workers: decode in this many processes; 0 or 1 decodes in this process.
        progress: show a progress bar; None shows it when stderr is a terminal.

    Raises:
        FileNotFoundError, ValueError: the folder or list file itself is unusable (see `find_samples`).
    """
    if workers < 0:
        raise ConfigError(f"workers must be 0 or more, got {workers}")
    classes, samples = find_samples(source, classes)
    images_per_class = dict.fromkeys(classes, 0)
    for _, label in samples:
        images_per_class[classes[label]] += 1
    paths = [path for path, _ in samples]
    with progress_bar("count", disable=None if progress is None else not progress) as bar:
        task = bar.add_task("verifying images", total=len(paths))
        if workers > 1:
            chunk = max(1, min(64, len(paths) // (workers * 8)))
            with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(Image.MAX_IMAGE_PIXELS,)) as pool:
                bad = _collect(pool.map(check_image, paths, chunksize=chunk), samples, classes, bar, task)
        else:
            bad = _collect(map(check_image, paths), samples, classes, bar, task)
    return VerifyReport(str(source), classes, images_per_class, tuple(bad))


def _collect(results: Iterable[tuple[str, str] | None], samples: list[Sample], classes: tuple[str, ...],
             bar: Progress, task: TaskID) -> list[BadFile]:
    bad = []
    for (path, label), result in zip(samples, results):
        if result is not None:
            bad.append(BadFile(path, classes[label], *result))
        bar.advance(task)
    return bad


__all__ = ["BAD_IMAGE_REASONS", "BadFile", "VerifyReport", "verify_images"]
