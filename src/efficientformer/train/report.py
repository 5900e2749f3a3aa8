"""Run reports: metrics CSV next to the JSONL, loss/accuracy curves and confusion-matrix PNGs.

matplotlib is optional (`pip install efficientformer[demo]`); without it the PNGs are skipped with
a logged message, never the training.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from efficientformer.utils.io import atomic_write, write_csv
from efficientformer.utils.plots import pyplot, save_png

MAX_CONFUSION_CLASSES = 100
SKIPPED_FILE = "skipped.txt"
logger = logging.getLogger(__name__)


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The epoch records of a metrics.jsonl file (a later record for the same epoch replaces an earlier one)."""
    by_epoch: dict[int, dict] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            by_epoch[record["epoch"]] = record
    return [by_epoch[e] for e in sorted(by_epoch)]


def plot_curves(records: Sequence[dict], path: str | os.PathLike, title: str = "") -> Path | None:
    """Loss (train and validation) and top-1/top-5 accuracy per epoch, side by side; None without matplotlib."""
    plt = pyplot()
    if plt is None or not records:
        return None
    epochs = [r["epoch"] for r in records]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(epochs, [r["train_loss"] for r in records], marker="o", label="train loss")
    left.plot(epochs, [r["val_loss"] for r in records], marker="o", label="validation loss")
    left.set_xlabel("epoch")
    left.set_ylabel("cross-entropy")
    left.set_title("loss")
    left.grid(alpha=0.3)
    left.legend()
    for key, label in (("top1", "top-1"), ("top5", "top-5"), ("ema_top1", "EMA top-1")):
        if all(key in r for r in records):
            right.plot(epochs, [r[key] for r in records], marker="o", label=label)
    right.set_xlabel("epoch")
    right.set_ylabel("accuracy (%)")
    right.set_title("validation accuracy")
    right.set_ylim(0, 100)
    right.grid(alpha=0.3)
    right.legend(loc="lower right")
    from matplotlib.ticker import MaxNLocator

    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        figure.suptitle(title)
    return save_png(figure, path)


def plot_confusion(confusion: torch.Tensor, classes: Sequence[str], path: str | os.PathLike,
                   title: str = "") -> Path | None:
    """Row-normalised confusion matrix (true class rows, predicted columns); None past 100 classes or without
    matplotlib."""
    plt = pyplot()
    count = len(classes)
    if plt is None or count > MAX_CONFUSION_CLASSES:
        return None
    rates = confusion.double() / confusion.sum(dim=1, keepdim=True).clamp(min=1)  # (classes, classes)
    size = min(4 + count * 0.25, 24)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    ticks = range(count)
    axis.set_xticks(ticks, labels=classes, rotation=90 if count > 10 else 0, fontsize=8 if count > 20 else 10)
    axis.set_yticks(ticks, labels=classes, fontsize=8 if count > 20 else 10)
    if count <= 20:
        for row in range(count):
            for col in range(count):
                if confusion[row, col]:
                    axis.text(col, row, int(confusion[row, col]), ha="center", va="center", fontsize=8,
                              color="white" if rates[row, col] > 0.5 else "black")
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the true class")
    axis.set_title(title or "confusion matrix")
    return save_png(figure, path)


def write_per_class(accuracies: Sequence[float], confusion: torch.Tensor, classes: Sequence[str],
                    path: str | os.PathLike) -> Path:
    """CSV of class, images, correct and accuracy (%)."""
    rows = [{"class": name, "images": int(confusion[i].sum()), "correct": int(confusion[i, i]),
             "accuracy": round(accuracies[i], 4)} for i, name in enumerate(classes)]
    return write_csv(rows, path)


def write_skipped(run_dir: str | os.PathLike, paths: Sequence[str]) -> list[str]:
    """Merge `paths` into the run's skipped.txt (one path a line, sorted, no repeats); returns all listed."""
    path = Path(run_dir) / SKIPPED_FILE
    listed = set(path.read_text(encoding="utf-8").splitlines()) if path.is_file() else set()
    merged = sorted((listed | set(paths)) - {""})
    with atomic_write(path) as handle:
        handle.write("".join(f"{item}\n" for item in merged).encode())
    return merged


def write_run_reports(run_dir: str | os.PathLike, per_class: Sequence[float], confusion: torch.Tensor,
                      classes: Sequence[str], title: str) -> None:
    """metrics.csv and curves.png from metrics.jsonl; per_class.csv and confusion.png of the final evaluation."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    write_csv(records, run_dir / "metrics.csv")
    write_per_class(per_class, confusion, classes, run_dir / "per_class.csv")
    if plot_curves(records, run_dir / "curves.png", title) is None:
        logger.info("matplotlib is not installed: no curves.png / confusion.png (pip install 'efficientformer[demo]')")
    plot_confusion(confusion, classes, run_dir / "confusion.png", f"{title}, epoch {records[-1]['epoch']}")


__all__ = ["SKIPPED_FILE", "plot_confusion", "plot_curves", "read_metrics", "write_per_class", "write_run_reports",
           "write_skipped"]
