"""`efficientformer eval`: accuracy of trained weights on a labelled dataset, with per-class results."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from efficientformer.data.datasets import eval_dataset
from efficientformer.data.embedded import DigitsDataset
from efficientformer.data.folder import collate_skip_none
from efficientformer.data.transforms import AugmentedDataset, EvalTransform
from efficientformer.errors import CheckpointError, ConfigError
from efficientformer.factory import classify_weights, create_model, data_config, load_model
from efficientformer.train.distributed import resolve_device
from efficientformer.train.loop import evaluate
from efficientformer.train.report import plot_confusion, write_per_class
from efficientformer.utils.io import atomic_write
from efficientformer.weights.metadata import read_metadata
from efficientformer.weights.zoo import WEIGHTS


def run_metadata(weights: str | os.PathLike) -> dict[str, Any]:
    """What a training run stored with its weights: 'classes' (names) and 'eval_crop_pct', when known.

    Read from the safetensors metadata of our checkpoints, else from a job.json next to the file;
    {} for other files and weight tags.
    """
    path = Path(weights)
    if not path.is_file():
        return {}
    found: dict[str, Any] = {}
    try:
        meta = read_metadata(path)
    except CheckpointError:  # a .pth or a file of another kind: nothing stored with it
        meta = None
    if meta is not None and meta.classes is not None:
        found["classes"] = meta.classes
    if meta is not None and meta.eval_crop_pct is not None:
        found["eval_crop_pct"] = meta.eval_crop_pct
    job_file = path.parent / "job.json"
    if "classes" not in found and job_file.is_file():
        try:
            job = json.loads(job_file.read_text(encoding="utf-8"))
            found.setdefault("classes", tuple(job["classes"]))
            found.setdefault("eval_crop_pct", float(job["eval_crop_pct"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return found


def run_eval(weights: str | os.PathLike, data: str | None = None, model: str | None = None, batch_size: int = 64,
             output: str | os.PathLike = "eval", device: str = "auto", num_workers: int = 0,
             on_bad_image: str = "error") -> dict[str, Any]:
    """Evaluate `weights` (a checkpoint file or weight tag) on `data` (None = the embedded digits split).

    `data` is a folder of class folders or a `path,label` list file. When the weights come from
    our training run (class names in the checkpoint or its job.json), the data's classes are
    matched to the model's by name; otherwise the data's sorted classes are taken in order and
    only their number must match. The centre crop is the run's, else the weight tag's
    (`data_config`: 0.95 for the zoo weights), else 0.875; filter, mean and std are the tag's.

    Writes `summary.json`, `per_class.csv` and (up to 100 classes, with matplotlib) `confusion.png`
    into `output`; returns the summary.
    """
    target = resolve_device(device)
    if classify_weights(weights) == "checkpoint":  # the one rule: factory.classify_argument
        net = load_model(weights, model=model, device=target)
    else:
        net = create_model(model or WEIGHTS[str(weights)].model, pretrained=str(weights), device=target).eval()
    stored = run_metadata(weights)
    preprocessing = data_config(net)
    what = f"the model ({weights})"
    if data is None:
        val_set, classes = DigitsDataset("val", net.config.img_size[0]), DigitsDataset.classes
        if len(classes) != net.num_classes:
            raise ConfigError(f"{what} predicts {net.num_classes} classes but the embedded dataset has {len(classes)}")
        crop = stored.get("eval_crop_pct", 1.0)
    else:
        val_set = eval_dataset(data, stored.get("classes"), net.num_classes, on_bad_image=on_bad_image, what=what)
        classes = val_set.classes
        crop = stored.get("eval_crop_pct", preprocessing.crop_pct)
    transform = EvalTransform(net.config.img_size, crop, preprocessing.interpolation, preprocessing.mean,
                              preprocessing.std)
    loader = DataLoader(AugmentedDataset(val_set, transform), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=collate_skip_none)
    result = evaluate(net, loader, len(classes), target)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"weights": str(weights), "data": data or "embedded digits (val split)", "images": result.images,
               "top1": result.top1, "top5": result.top5, "loss": result.loss, "crop_pct": crop,
               "skipped": sorted(result.skipped)}
    with atomic_write(out / "summary.json") as handle:
        handle.write(json.dumps(summary, indent=2).encode())
    write_per_class(result.per_class_accuracy(), result.confusion, classes, out / "per_class.csv")
    plot_confusion(result.confusion, classes, out / "confusion.png", f"{net.config.name} on {summary['data']}")
    return {**summary, "output": str(out)}


__all__ = ["run_eval", "run_metadata"]
