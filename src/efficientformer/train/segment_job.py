"""`efficientformer segment train|eval|predict`: Semantic FPN training and evaluation on mask folders.

    summary = run_segment_training(SegmentJob(data="~/ade_subset", model="s0", img_size=512))

The run directory gets `job.json`, `metrics.jsonl` (one line per epoch), `state_e*_s*.pt` (resumable: model,
optimiser, best mIoU, RNG, position), `last.safetensors` and `best.safetensors` (highest mIoU; loadable with
`load_segmenter`, with the class names). Under torchrun the batch is sharded, BatchNorm is synchronised and
evaluation is split over the ranks. The recipe is the paper's ADE20K setting: AdamW (lr 2e-4, weight decay 1e-4),
poly decay (power 0.9), random rescale 0.5-2x + crop + flip.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from efficientformer.data.folder import SkippedSample
from efficientformer.data.masks import IGNORE_INDEX, MaskFolder, TrainPairTransform, read_class_names
from efficientformer.data.preprocess import load_image
from efficientformer.data.seeding import sample_generator
from efficientformer.errors import ConfigError
from efficientformer.factory import create_model, resolve_config
from efficientformer.layers.sync_batchnorm import convert_sync_batchnorm
from efficientformer.models.segmentation import Segmenter, SegmenterConfig
from efficientformer.train.distributed import (
    all_reduce_sum,
    barrier,
    cleanup,
    init_distributed,
    resolve_device,
)
from efficientformer.train.loop import StepContext, train_steps
from efficientformer.train.optim import PolySchedule, create_optimizer
from efficientformer.train.segmentation import (
    SegmentationTask,
    evaluate_segmentation,
    load_segmenter,
    overlay,
    per_class_rows,
    predict_mask,
    save_segmenter,
)
from efficientformer.train.state import Position, TrainingState, latest_state, prune_states
from efficientformer.utils.io import atomic_write
from efficientformer.utils.progress import progress_bar

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentJob:
    """A segmentation training run.

    Args:
        data: training folder (images/ + annotations/ or masks/, or VOC); train_split: its sub-split.
        val_data, val_split: the evaluation folder and split (default: `data` with `val_split`, or the
            training pairs themselves when neither is given).
        classes: class-name file (default `data/classes.txt`).
        model, pretrained: backbone architecture, and weights for it (tag, True or a checkpoint path).
        img_size: training crop and evaluation shorter side.
        epochs, max_steps: length (max_steps stops early, e.g. for tests); batch_size: per process.
        lr, weight_decay, warmup_epochs, power: AdamW and the poly schedule.
        fpn_channels, head_channels: the Semantic FPN widths.
        ignore_index, reduce_zero_label: mask conventions (ADE20K raw masks: reduce_zero_label=True).
        frozen_stages, norm_eval: backbone options.
        on_bad_image: 'error' or 'skip' (skipped files are logged and listed in skipped.txt).
        resume: 'auto' (latest state in `output`), a state file, or None.
    """

    data: str
    output: str = "runs/seg"
    train_split: str | None = None
    val_data: str | None = None
    val_split: str | None = None
    classes: str | None = None
    model: str = "efficientformerv2_s0"
    pretrained: str | None = None
    img_size: int = 512
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 8
    lr: float = 2e-4
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.0
    power: float = 0.9
    fpn_channels: int = 256
    head_channels: int = 128
    ignore_index: int = IGNORE_INDEX
    reduce_zero_label: bool = False
    frozen_stages: int = -1
    norm_eval: bool = False
    on_bad_image: str = "error"
    device: str = "auto"
    num_workers: int = 0
    seed: int = 0
    resume: str | None = None
    keep_last: int = 2

    def __post_init__(self) -> None:
        for name in ("img_size", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"SegmentJob.{name} must be positive, got {getattr(self, name)!r}")
        if self.img_size % 32:
            raise ConfigError(f"SegmentJob.img_size must be a multiple of 32, got {self.img_size}")


class _TrainPairs:
    """MaskFolder items through the seeded training transform (sample i of epoch e always gets the same crop)."""

    def __init__(self, dataset: MaskFolder, transform: TrainPairTransform, seed: int) -> None:
        self.dataset, self.transform, self.seed, self.epoch = dataset, transform, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        if isinstance(item, SkippedSample):
            return item
        return self.transform(*item, sample_generator(self.seed, self.epoch, index))


def _collate(items: list) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    kept = [item for item in items if not isinstance(item, SkippedSample)]
    skipped = [item.path for item in items if isinstance(item, SkippedSample)]
    if not kept:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    return torch.stack([i[0] for i in kept]), torch.stack([i[1] for i in kept]), skipped  # (B, 3, S, S), (B, S, S)


def _epoch_order(count: int, seed: int, epoch: int, rank: int, world: int) -> list[int]:
    """This rank's shard of the epoch's permutation (padded so that every rank takes as many steps)."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
    order += order[:(-len(order)) % world]
    return order[rank::world]


def build_segmenter(job: SegmentJob, num_classes: int) -> Segmenter:
    """The job's model: its backbone (with pretrained weights when given) and a fresh head."""
    backbone_config = resolve_config(job.model).replace(img_size=job.img_size)
    model = Segmenter(SegmenterConfig(backbone_config, num_classes, job.fpn_channels, job.head_channels),
                      frozen_stages=job.frozen_stages, norm_eval=job.norm_eval)
    if job.pretrained is not None:
        pretrained = True if job.pretrained == "default" else job.pretrained
        weights = create_model(backbone_config, pretrained=pretrained, features_only=True)
        model.backbone.load_state_dict(weights.state_dict())
    return model


def run_segment_training(job: SegmentJob) -> dict[str, Any]:
    """Train; returns {'best_miou', 'last', 'best', 'epochs', 'steps'}."""
    info, device = init_distributed(resolve_device(job.device))
    try:
        return _train(job, info, device)
    finally:
        cleanup(info)


def _train(job: SegmentJob, info, device: torch.device) -> dict[str, Any]:
    run_dir = Path(job.output)
    classes = read_class_names(job.classes or Path(job.data).expanduser() / "classes.txt")
    common = {"classes": classes, "ignore_index": job.ignore_index, "reduce_zero_label": job.reduce_zero_label,
              "on_bad_image": job.on_bad_image}
    train_set = MaskFolder(job.data, job.train_split, **common)
    val_set = (MaskFolder(job.val_data or job.data, job.val_split, **common)
               if job.val_data is not None or job.val_split is not None else train_set)
    torch.manual_seed(job.seed)
    model = build_segmenter(job, len(classes)).to(device)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        record = {**dataclasses.asdict(job), "classes": list(classes), "world_size": info.world_size,
                  "model_config": model.config.to_dict()}
        with atomic_write(run_dir / "job.json") as handle:
            handle.write(json.dumps(record, indent=2).encode())
    net: nn.Module = model
    if info.enabled:
        convert_sync_batchnorm(model)
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = create_optimizer(model, job.lr, job.weight_decay, betas=(0.9, 0.999))
    schedule = PolySchedule(job.lr, job.epochs, job.power, warmup_epochs=job.warmup_epochs)
    # The names are those state files have always had, so a run saved before TrainingState still resumes.
    state = TrainingState({"model": model, "optimizer": optimizer}, best_miou=-1.0)
    position = Position()
    state_file = latest_state(run_dir) if job.resume == "auto" else job.resume
    if state_file is not None:
        position = state.load(state_file)
        logger.info("resumed from %s (epoch %d, step %d)", state_file, position.epoch, position.step)
    pairs = _TrainPairs(train_set, TrainPairTransform(job.img_size, ignore_index=job.ignore_index), job.seed)
    ctx = StepContext(net, optimizer, schedule, device, task=SegmentationTask(job.ignore_index),
                      clip_mode="none")
    steps_per_epoch = -(-len(_epoch_order(len(train_set), 0, 0, info.rank, info.world_size)) // job.batch_size)
    skipped: set[str] = set()

    def reduce(tensor: torch.Tensor) -> torch.Tensor:
        return all_reduce_sum(tensor, info)

    for epoch in range(position.epoch, job.epochs):
        pairs.epoch = epoch
        order = _epoch_order(len(train_set), job.seed, epoch, info.rank, info.world_size)
        start = position.step if epoch == position.epoch else 0
        limit = steps_per_epoch if job.max_steps is None else min(steps_per_epoch,
                                                                  job.max_steps - position.global_step + start)
        if limit <= start:
            break
        # Its own generator keeps the loader from drawing a base seed from the global RNG, which dropout and
        # drop path use: a run resumed mid-epoch makes one loader more than an uninterrupted run.
        batches = DataLoader(torch.utils.data.Subset(pairs, order[start * job.batch_size:limit * job.batch_size]),
                             batch_size=job.batch_size, num_workers=job.num_workers, collate_fn=_collate,
                             generator=torch.Generator().manual_seed(job.seed))
        with progress_bar("count", disable=None if info.is_main else True) as bar:
            task = bar.add_task(f"epoch {epoch + 1}/{job.epochs}", total=limit, completed=start)

            def on_step(step: int, loss: float, lr: float, images: int) -> None:
                bar.update(task, advance=1, description=f"epoch {epoch + 1}/{job.epochs} loss {loss:.3f} lr {lr:.2e}")

            result = train_steps(ctx, batches, epoch, start, steps_per_epoch, on_step)
        skipped.update(result.skipped)
        position = Position(epoch + 1, 0, position.global_step + limit - start) if limit == steps_per_epoch else \
            Position(epoch, limit, position.global_step + limit - start)
        metrics = evaluate_segmentation(model, val_set, job.img_size, device,
                                        indices=range(info.rank, len(val_set), info.world_size), reduce=reduce)
        skipped.update(metrics.skipped)
        if info.is_main:
            line = {"epoch": epoch, "steps": position.global_step, "loss": result.loss, "lr": result.lr,
                    "miou": metrics.miou, "pixel_accuracy": metrics.pixel_accuracy}
            with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps(line) + "\n")
            logger.info("epoch %d: loss %.4f, mIoU %.2f%%, pixel accuracy %.2f%%", epoch, result.loss, metrics.miou,
                        metrics.pixel_accuracy)
            save_segmenter(model, run_dir / "last.safetensors", classes, job.ignore_index, job.reduce_zero_label,
                           job.img_size)
            if metrics.miou > state.values["best_miou"]:
                state.values["best_miou"] = metrics.miou
                save_segmenter(model, run_dir / "best.safetensors", classes, job.ignore_index,
                               job.reduce_zero_label, job.img_size)
            state.save(run_dir, position)
            prune_states(run_dir, job.keep_last)
        barrier(info)
        if job.max_steps is not None and position.global_step >= job.max_steps:
            break
    if skipped and info.is_main:
        (run_dir / "skipped.txt").write_text("".join(f"{p}\n" for p in sorted(skipped)))
        logger.warning("skipped %d unreadable image(s)/mask(s), listed in %s", len(skipped), run_dir / "skipped.txt")
    return {"best_miou": state.values["best_miou"], "last": str(run_dir / "last.safetensors"),
            "best": str(run_dir / "best.safetensors"), "epochs": position.epoch, "steps": position.global_step}


def run_segment_eval(weights: str | os.PathLike, data: str, split: str | None = None, output: str = "seg_eval",
                     device: str = "auto", on_bad_image: str = "error") -> dict[str, Any]:
    """mIoU and per-class IoU of a segmenter checkpoint on a mask folder; writes summary.json and per_class.csv."""
    target = resolve_device(device)
    model, meta = load_segmenter(weights, target)
    dataset = MaskFolder(data, split, classes=meta["classes"], ignore_index=meta["ignore_index"],
                         reduce_zero_label=meta["reduce_zero_label"], on_bad_image=on_bad_image)
    result = evaluate_segmentation(model, dataset, meta["img_size"], target)
    rows = per_class_rows(result, meta["classes"])
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"weights": str(weights), "data": str(data), "images": len(dataset) - len(result.skipped),
               "miou": result.miou, "pixel_accuracy": result.pixel_accuracy, "per_class": rows,
               "skipped": sorted(result.skipped)}
    with atomic_write(out / "summary.json") as handle:
        handle.write(json.dumps(summary, indent=2).encode())
    with open(out / "per_class.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["class", "iou", "pixels"])
        writer.writeheader()
        writer.writerows(rows)
    return {**summary, "output": str(out)}


def run_segment_predict(weights: str | os.PathLike, images: list[str], output: str = "seg_predict",
                        device: str = "auto", alpha: float = 0.5) -> list[dict[str, str]]:
    """For each image, `<stem>_overlay.png` (class colours over the image) and `<stem>_mask.png` (class indices)."""
    target = resolve_device(device)
    model, meta = load_segmenter(weights, target)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in images:
        image = load_image(path)
        labels = predict_mask(model, image, meta["img_size"])  # (H, W)
        stem = Path(path).stem
        overlay(image, labels, len(meta["classes"]), alpha).save(out / f"{stem}_overlay.png")
        Image.fromarray(labels.astype("uint8" if labels.max() < 256 else "int32")).save(out / f"{stem}_mask.png")
        written.append({"image": str(path), "overlay": str(out / f"{stem}_overlay.png"),
                        "mask": str(out / f"{stem}_mask.png")})
    return written


__all__ = ["SegmentJob", "build_segmenter", "run_segment_eval", "run_segment_predict", "run_segment_training"]
