"""`efficientformer eval`: accuracy of trained weights on a labelled dataset, with per-class results."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from efficientformer.factory import create_model, load_model
from efficientformer.data.transforms import AugmentedDataset, EvalTransform
from efficientformer.train.job import EVAL_CROP_PCT, _datasets_for, _device
from efficientformer.train.loop import evaluate
from efficientformer.train.report import plot_confusion, write_per_class
from efficientformer.utils.io import atomic_write
from efficientformer.weights.zoo import WEIGHTS


def run_eval(weights: str | os.PathLike, data: str | None = None, model: str | None = None, batch_size: int = 64,
             output: str | os.PathLike = "eval", device: str = "auto", num_workers: int = 0) -> dict[str, Any]:
    """Evaluate `weights` (a checkpoint file or weight tag) on `data` (None = the embedded digits split).

    Writes `summary.json`, `per_class.csv` and (up to 100 classes, with matplotlib) `confusion.png`
    into `output`; returns the summary.
    """
    target = _device(device)
    if Path(weights).is_file():
        net = load_model(weights, model=model, device=target)
    elif str(weights) in WEIGHTS:
        net = create_model(model or WEIGHTS[str(weights)].model, pretrained=str(weights), device=target).eval()
    else:
        raise FileNotFoundError(f"weights {weights} are neither a file nor a known weight tag")
    _, val_set, classes = _datasets_for(data, net.config.img_size[0], split_only="val")
    if len(classes) != net.num_classes:
        raise ValueError(f"the model predicts {net.num_classes} classes but {data or 'the embedded dataset'} has "
                         f"{len(classes)}")
    crop = 1.0 if data is None else EVAL_CROP_PCT
    loader = DataLoader(AugmentedDataset(val_set, EvalTransform(net.config.img_size, crop)), batch_size=batch_size,
                        num_workers=num_workers)
    result = evaluate(net, loader, len(classes), target)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"weights": str(weights), "data": data or "embedded digits (val split)", "images": result.images,
               "top1": result.top1, "top5": result.top5, "loss": result.loss}
    with atomic_write(out / "summary.json") as handle:
        handle.write(json.dumps(summary, indent=2).encode())
    write_per_class(result.per_class_accuracy(), result.confusion, classes, out / "per_class.csv")
    plot_confusion(result.confusion, classes, out / "confusion.png", f"{net.config.name} on {summary['data']}")
    return {**summary, "output": str(out)}


__all__ = ["run_eval"]
