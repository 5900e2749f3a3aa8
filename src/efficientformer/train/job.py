"""A training run end to end: data, model, optimiser, resume, checkpoints, metrics, in one run directory.

    summary = run_training(TrainJob(output="runs/digits"))                    # the embedded default run
    summary = run_training(TrainJob(output="runs/flowers", data="~/flowers"))  # a folder of class folders

Everything a run writes goes under `TrainJob.output`: `job.json` (the resolved job and recipe, the
class names and how the data was split), `metrics.jsonl` (one line per epoch), `state_e*_s*.pt`
(last K resumable states), `best.safetensors` and `last.safetensors` (weights + model config +
class names, loadable with `load_model`), `skipped.txt` (unreadable images, with
on_bad_image='skip') and `tb/` (TensorBoard, when installed).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from efficientformer.data.folder import BAD_IMAGE_POLICIES, collate_skip_none
from efficientformer.data.mixup import Mixup
from efficientformer.data.preprocess import ImageError
from efficientformer.data.sampler import EpochSampler
from efficientformer.data.seeding import MIXUP_STREAM, sample_generator
from efficientformer.data.transforms import AugmentedDataset, EvalTransform, TrainTransform
from efficientformer.factory import create_model
from efficientformer.train.datasets import DEFAULT_VAL_SPLIT, EVAL_CROP_PCT, run_datasets
from efficientformer.train.distributed import (
    all_reduce_min,
    all_reduce_sum,
    barrier,
    cleanup,
    convert_sync_batchnorm,
    gather_strings,
    init_distributed,
)
from efficientformer.train.ema import ModelEma
from efficientformer.train.loop import EvalResult, StepContext, evaluate, train_steps
from efficientformer.train.losses import DistillationLoss, SoftTargetCrossEntropy
from efficientformer.train.optim import CosineSchedule, create_optimizer
from efficientformer.train.recipes import DEFAULT, TrainRecipe
from efficientformer.train.report import SKIPPED_FILE, write_run_reports, write_skipped
from efficientformer.train.state import (
    Position,
    check_run_dir,
    latest_state,
    load_state,
    prune_states,
    save_state,
)
from efficientformer.train.task import ClassificationTask, TrainTask
from efficientformer.train.teacher import load_teacher
from efficientformer.train.tensorboard import ScalarLog
from efficientformer.utils.io import atomic_write
from efficientformer.utils.progress import progress_bar
from efficientformer.weights.checkpoint import save_checkpoint

AMP = {"none": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainJob:
    """Where a run reads and writes, and how it is driven (the recipe holds the hyper-parameters).

    Args:
        output: the run directory (created; everything is written inside it).
        data: training images: a folder of class folders or a `path,label` list file
            (data/folder.py); None = the embedded digits dataset.
        val_data: validation images with the same classes (matched by name); None = hold out
            `val_split` of every class of `data` (train/datasets.py: fixed, by file name).
        val_split: share of each class held out when `val_data` is None, in (0, 1).
        on_bad_image: 'error' stops at the first unreadable image, naming it; 'skip' drops it,
            counts it and lists it in `skipped.txt` and metrics.jsonl (no other image replaces it).
        model: registry name, alias or ModelConfig JSON.
        pretrained: weight tag or checkpoint to start from (heads re-initialised if classes differ).
        teacher: distillation teacher file (our checkpoint, TorchScript or torch.export); needed
            when the recipe distils ('hard' in the paper's recipes).
        resume: None, 'auto' (newest state in `output`, if any) or a state file.
        device: 'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1', ...
        checkpoint_every: also save a resumable state every N optimiser steps (0 = only per epoch).
        keep_last: resumable states kept.
        max_steps: stop after this many optimiser steps in total (smoke tests); None = full recipe.
    """

    output: str = "runs/default"
    data: str | None = None
    val_data: str | None = None
    val_split: float = DEFAULT_VAL_SPLIT
    on_bad_image: str = "error"
    model: str = "efficientformerv2_s0"
    recipe: TrainRecipe = DEFAULT
    pretrained: str | None = None
    teacher: str | None = None
    resume: str | None = None
    device: str = "auto"
    num_workers: int = 0
    checkpoint_every: int = 0
    keep_last: int = 2
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.val_split < 1.0:
            raise ValueError(f"TrainJob.val_split must be in (0, 1), got {self.val_split!r}")
        if self.on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError(f"TrainJob.on_bad_image must be one of {', '.join(BAD_IMAGE_POLICIES)}, "
                             f"got {self.on_bad_image!r}")

    def to_dict(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "recipe"},
                "recipe": self.recipe.to_dict()}


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def run_training(job: TrainJob, *, model: nn.Module | None = None, task: TrainTask | None = None) -> dict[str, Any]:
    """Train as `job` says; returns the final summary (also the last line of metrics.jsonl).

    Under torchrun every process runs this; only rank 0 writes files.

    Args:
        model: the network to train instead of building `job.model` (e.g. a search supernet): an
            EfficientFormerV2 (or subclass) built for the run's class count and `recipe.img_size`,
            on any device (it is moved to the run's). Its `config` names the architecture in the
            saved weights. Not combinable with `job.pretrained` (load weights into it first).
        task: what each step computes (train/task.py TrainTask contract); default
            ClassificationTask over the recipe's criterion (label smoothing, distillation). A
            custom task owns its loss, so the recipe's distillation must be 'none'.
        Everything else (data, optimiser, schedule, DDP, checkpoints, exact resume, EMA,
        evaluation, reports) is the job's.

    Raises:
        ImageError: on_bad_image='error' and an image cannot be read (the message names it).
    """
    info, device = init_distributed(_device(job.device))
    try:
        return _run(job, info, device, model, task)
    except ImageError as error:
        raise ImageError(f"{_worker_message(error)} (--on-bad-image skip drops unreadable images; "
                         f"`efficientformer data check {job.data}` lists them all)") from None
    finally:
        cleanup(info)


def _worker_message(error: ImageError) -> str:
    """The original message of an ImageError, without the traceback a DataLoader worker wraps it in."""
    text = str(error)
    if "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        return last.split(": ", 1)[1] if last.startswith(("ImageError", "efficientformer")) else last
    return text


def _check_model(model: nn.Module, num_classes: int, img_size: int) -> None:
    """A caller-supplied model must fit the run's data."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "num_classes"):
        raise TypeError(f"run_training(model=...) needs an EfficientFormerV2 (or subclass), got {type(model).__name__}")
    if model.num_classes != num_classes:
        raise ValueError(f"the supplied model predicts {model.num_classes} classes but the training data has "
                         f"{num_classes}")
    if tuple(config.img_size) != (img_size, img_size):
        raise ValueError(f"the supplied model is built for img_size {tuple(config.img_size)} but the recipe trains "
                         f"at {img_size}")


def _previous_split(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "job.json").read_text(encoding="utf-8"))["data_split"].get("split_digest")
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def _run(job: TrainJob, info, device: torch.device, model: nn.Module | None,
         task: TrainTask | None) -> dict[str, Any]:
    recipe = job.recipe
    run_dir = Path(job.output)
    torch.manual_seed(recipe.seed)
    data = run_datasets(job.data, img_size=recipe.img_size, val_data=job.val_data, val_split=job.val_split,
                        on_bad_image=job.on_bad_image)
    classes = data.classes
    eval_crop = recipe.crop_pct if data.eval_crop_pct is None else data.eval_crop_pct
    if model is None:
        model = create_model(job.model, num_classes=len(classes), img_size=recipe.img_size,
                             pretrained=job.pretrained)
    else:
        if job.pretrained is not None:
            raise ValueError("run_training(model=...) with job.pretrained: load the weights into the model first")
        _check_model(model, len(classes), recipe.img_size)
    if task is not None and recipe.distillation != "none":
        raise ValueError(f"a custom training task ({type(task).__name__}) owns its loss: set the recipe's "
                         f"distillation to 'none' (--set distillation=none)")
    model = model.to(device)
    state_bytes = sum(p.numel() * p.element_size() for p in model.parameters()) * (4 + (recipe.ema is True))
    if info.is_main:
        check_run_dir(run_dir, needed_bytes=state_bytes * (job.keep_last + 2))
        if job.resume is None:  # a fresh run lists only its own skipped images
            (run_dir / SKIPPED_FILE).unlink(missing_ok=True)
        before = _previous_split(run_dir) if job.resume is not None else None
        if before is not None and before != data.describe.get("split_digest"):
            logger.warning("the held-out split of %s differs from the one this run started with (files were added, "
                           "removed or renamed); resuming is no longer exact", job.data)
        record = {**job.to_dict(), "world_size": info.world_size, "classes": list(classes), "data_split":
                  data.describe, "eval_crop_pct": eval_crop, "model_config": model.config.to_dict(),
                  "task": type(task).__name__ if task is not None else "ClassificationTask"}
        with atomic_write(run_dir / "job.json") as handle:
            handle.write(json.dumps(record, indent=2, default=str).encode())
    barrier(info)
    metadata = {"classes": json.dumps(list(classes)), "eval_crop_pct": str(eval_crop)}

    net = model
    if info.enabled:
        convert_sync_batchnorm(model)  # the paper trains with SyncBN: statistics over the global batch
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=getattr(task, "find_unused_parameters", False))
    global_batch = recipe.batch_size * info.world_size
    optimizer = create_optimizer(model, recipe.lr(global_batch), recipe.weight_decay, recipe.opt_eps, recipe.betas,
                                 layer_decay=recipe.layer_decay)
    schedule = CosineSchedule(recipe.lr(global_batch), recipe.epochs, recipe.warmup_epochs, recipe.warmup_lr,
                              recipe.min_lr, per_step=recipe.lr_per_step)
    ema = ModelEma(model, recipe.ema_decay) if recipe.ema else None
    amp_dtype = AMP[recipe.amp]
    scaler = torch.amp.GradScaler(device.type) if amp_dtype is torch.float16 else None
    teacher = None
    if recipe.distillation != "none":
        if job.teacher is None:
            raise ValueError(f"recipe {recipe.name!r} uses {recipe.distillation} distillation: pass a teacher file "
                             f"(--teacher) or turn it off (--set distillation=none)")
        if not model.config.distillation:
            raise ValueError(f"{model.config.name} has no distillation head; build it with distillation=True "
                             f"or turn distillation off")
        teacher = load_teacher(job.teacher, device)
        model.set_distilled_training(True)
    if task is None:
        task = ClassificationTask(DistillationLoss(SoftTargetCrossEntropy(recipe.smoothing), teacher,
                                                   mode=recipe.distillation, alpha=recipe.distillation_alpha,
                                                   tau=recipe.distillation_tau))
    agree = None
    if info.enabled and job.on_bad_image == "skip":  # every rank must skip an all-skipped batch together
        def agree(count: int) -> int:
            return int(all_reduce_min(torch.tensor([count], device=device), info).item())
    ctx = StepContext(model=net, task=task, optimizer=optimizer, schedule=schedule, device=device,
                      clip_mode=recipe.clip_mode, clip_grad=recipe.clip_grad, amp_dtype=amp_dtype, scaler=scaler,
                      ema=ema, agree_images=agree)

    train_data = AugmentedDataset(data.train, TrainTransform.from_recipe(recipe), seed=recipe.seed)
    val_data = AugmentedDataset(data.val, EvalTransform(recipe.img_size, eval_crop), seed=recipe.seed)
    mixup = Mixup.from_recipe(recipe, num_classes=len(classes))
    val_shard = Subset(val_data, range(info.rank, len(val_data), info.world_size))
    sampler = EpochSampler(len(train_data), shuffle=True, seed=recipe.seed, rank=info.rank,
                           world_size=info.world_size, repeats=recipe.repeated_aug, drop_last=True)
    steps_per_epoch = sampler.per_rank() // recipe.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"the training set has {len(train_data)} images, fewer than one global batch of "
                         f"{global_batch}")

    def reduce(tensor: torch.Tensor) -> torch.Tensor:
        return all_reduce_sum(tensor, info)

    def evaluate_all(module: nn.Module) -> EvalResult:
        prepare_eval = getattr(task, "prepare_eval", None)
        if prepare_eval is not None:
            prepare_eval(module)
        loader = DataLoader(val_shard, batch_size=recipe.batch_size, num_workers=job.num_workers,
                            collate_fn=collate_skip_none)
        return evaluate(module, loader, len(classes), device, reduce=reduce)

    skipped_total: set[str] = set()

    def report_skipped(paths: list[str], where: str) -> int:
        """Gather this epoch's skipped paths over ranks; rank 0 logs them and merges them into skipped.txt."""
        paths = sorted(set(gather_strings(paths, info)))
        skipped_total.update(paths)
        if paths and info.is_main:
            listed = write_skipped(run_dir, paths)
            shown = "\n  ".join(paths[:10]) + (f"\n  ... {len(paths) - 10} more" if len(paths) > 10 else "")
            logger.warning("skipped %d unreadable image(s) in %s (%d in all, listed in %s):\n  %s", len(paths), where,
                           len(listed), run_dir / SKIPPED_FILE, shown)
        return len(paths)

    position, best = Position(), {"top1": -1.0}
    resume_from = latest_state(run_dir) if job.resume == "auto" else job.resume
    if resume_from is not None:
        position, payload = load_state(resume_from)
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        if ema is not None:
            ema.module.load_state_dict(payload["ema"])
        if scaler is not None:
            scaler.load_state_dict(payload["scaler"])
        best = payload["best"]

    def save(pos: Position) -> None:
        if not info.is_main:
            return
        payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "best": best}
        if ema is not None:
            payload["ema"] = ema.module.state_dict()
        if scaler is not None:
            payload["scaler"] = scaler.state_dict()
        save_state(run_dir, pos, payload)
        prune_states(run_dir, job.keep_last)

    summary: dict[str, Any] = {}
    scalars = ScalarLog(run_dir, enabled=info.is_main)
    if scalars.message:
        logger.info(scalars.message)
    try:
        with progress_bar("count", disable=None if info.is_main else True) as bar:
            bar_task = bar.add_task("training", total=recipe.epochs * steps_per_epoch,
                                    completed=position.epoch * steps_per_epoch + position.step)
            while position.epoch < recipe.epochs:
                epoch = position.epoch
                sampler.set_epoch(epoch, start=position.step * recipe.batch_size)
                train_data.set_epoch(epoch)  # before the loader starts its workers
                # An explicit generator keeps the loader from drawing its worker base seed from the global RNG,
                # which drop path uses: a resumed run must see the same global RNG stream as an uninterrupted one.
                loader = DataLoader(train_data, batch_size=recipe.batch_size, sampler=sampler, drop_last=True,
                                    num_workers=job.num_workers, collate_fn=collate_skip_none,
                                    generator=torch.Generator().manual_seed(recipe.seed))
                if mixup.enabled:  # one generator per (epoch, step): resumable and independent of workers
                    ctx.mix = lambda x, y, step, epoch=epoch: mixup(
                        x, y, sample_generator(recipe.seed, epoch, step, stream=MIXUP_STREAM))
                remaining = None if job.max_steps is None else job.max_steps - position.global_step
                batches = _take(loader, remaining)

                epoch_start, seen = time.perf_counter(), [0]

                def on_step(step: int, loss: float, lr: float, images: int) -> None:
                    position.step, position.global_step = step + 1, position.global_step + 1
                    seen[0] += images * info.world_size
                    rate = seen[0] / max(time.perf_counter() - epoch_start, 1e-9)
                    bar.update(bar_task, advance=1, description=f"epoch {epoch + 1}/{recipe.epochs} loss {loss:.3f} "
                                                                f"lr {lr:.2e} {rate:.0f} img/s")
                    if job.checkpoint_every and position.global_step % job.checkpoint_every == 0:
                        save(position)

                result = train_steps(ctx, batches, epoch, position.step, steps_per_epoch, on_step)
                if position.step < steps_per_epoch:  # stopped by max_steps
                    report_skipped(result.skipped, f"epoch {epoch + 1} (stopped at step {position.step})")
                    save(position)
                    break
                metrics = evaluate_all(model)
                summary = {"epoch": epoch + 1, "train_loss": result.loss, "lr": result.lr, "val_loss": metrics.loss,
                           "top1": metrics.top1, "top5": metrics.top5,
                           "images_per_s": result.images / max(result.seconds, 1e-9)}
                if ema is not None:
                    summary["ema_top1"] = evaluate_all(ema.module).top1
                skipped = report_skipped(result.skipped + metrics.skipped, f"epoch {epoch + 1}")
                if job.on_bad_image == "skip":
                    summary["skipped"] = skipped
                if metrics.top1 > best["top1"]:
                    best = {"top1": metrics.top1, "epoch": epoch + 1}
                    if info.is_main:
                        save_checkpoint(model, run_dir / "best.safetensors", metadata)
                summary["best_top1"] = best["top1"]
                if info.is_main:
                    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
                        handle.write(json.dumps(summary) + "\n")
                    scalars.log_epoch(summary)
                position = Position(epoch=epoch + 1, step=0, global_step=position.global_step)
                save(position)
    finally:
        scalars.close()
    if info.is_main:
        save_checkpoint(model, run_dir / "last.safetensors", metadata)
        if summary:
            write_run_reports(run_dir, metrics.per_class_accuracy(), metrics.confusion, classes,
                              title=f"{model.config.name} ({recipe.name})")
    barrier(info)
    return {**summary, "run_dir": str(run_dir), "global_step": position.global_step, "is_main": info.is_main,
            "skipped_images": len(skipped_total), "classes": list(classes)}


def _take(iterable, limit: int | None):
    """The first `limit` items (all when None)."""
    for count, item in enumerate(iterable):
        if limit is not None and count >= limit:
            return
        yield item


__all__ = ["AMP", "EVAL_CROP_PCT", "TrainJob", "check_run_dir", "run_training"]
