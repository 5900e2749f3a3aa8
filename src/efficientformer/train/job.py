"""A training run end to end: data, model, optimiser, resume, checkpoints, metrics, in one run directory.

    summary = run_training(TrainJob(output="runs/digits"))    # the embedded default run

Everything a run writes goes under `TrainJob.output`: `job.json` (the resolved job and recipe),
`metrics.jsonl` (one line per epoch), `state_e*_s*.pt` (last K resumable states),
`best.safetensors` and `last.safetensors` (weights + model config, loadable with `load_model`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from efficientformer.data.embedded import DigitsDataset
from efficientformer.data.mixup import Mixup
from efficientformer.data.sampler import EpochSampler
from efficientformer.data.seeding import MIXUP_STREAM, sample_generator
from efficientformer.data.transforms import AugmentedDataset, EvalTransform, TrainTransform
from efficientformer.factory import create_model
from efficientformer.train.distributed import (
    all_reduce_sum,
    barrier,
    cleanup,
    convert_sync_batchnorm,
    init_distributed,
)
from efficientformer.train.ema import ModelEma
from efficientformer.train.loop import EvalResult, StepContext, evaluate, train_steps
from efficientformer.train.losses import DistillationLoss, SoftTargetCrossEntropy
from efficientformer.train.optim import CosineSchedule, create_optimizer
from efficientformer.train.recipes import DEFAULT, TrainRecipe
from efficientformer.train.report import plot_confusion, plot_curves, read_metrics, write_csv, write_per_class
from efficientformer.train.state import Position, latest_state, load_state, prune_states, save_state
from efficientformer.train.task import ClassificationTask, TrainTask
from efficientformer.train.teacher import load_teacher
from efficientformer.utils.io import atomic_write
from efficientformer.utils.progress import progress_bar
from efficientformer.weights.checkpoint import save_checkpoint

AMP = {"none": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
EVAL_CROP_PCT = 0.875  # for image folders; the embedded digits are used uncropped


@dataclass(frozen=True)
class TrainJob:
    """Where a run reads and writes, and how it is driven (the recipe holds the hyper-parameters).

    Args:
        output: the run directory (created; everything is written inside it).
        data: training images (folder of class folders); None = the embedded digits dataset.
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

    def to_dict(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "recipe"},
                "recipe": self.recipe.to_dict()}


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _datasets_for(data: str | None, size: int, split_only: str | None = None) -> tuple[Any, Any, tuple[str, ...]]:
    """(train, val, class names); None = the embedded digits at `size` pixels."""
    if data is None:
        train = None if split_only == "val" else DigitsDataset("train", size)
        return train, DigitsDataset("val", size), DigitsDataset.classes
    raise NotImplementedError("reading an image folder lands with the folder reader (data/folder.py); "
                              "for now only the embedded dataset is supported")


def check_run_dir(path: Path, needed_bytes: int) -> None:
    """Fail before training when the run directory cannot be written or the disk is nearly full."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        with atomic_write(probe) as handle:
            handle.write(b"ok")
        probe.unlink()
    except OSError as error:
        raise OSError(f"cannot write to the run directory {path}: {error}") from None
    free = shutil.disk_usage(path).free
    if free < needed_bytes:
        raise OSError(f"only {free / 2**20:.0f} MiB free under {path}; this run's checkpoints need about "
                      f"{needed_bytes / 2**20:.0f} MiB")


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
    """
    info, device = init_distributed(_device(job.device))
    try:
        return _run(job, info, device, model, task)
    finally:
        cleanup(info)


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


def _run(job: TrainJob, info, device: torch.device, model: nn.Module | None,
         task: TrainTask | None) -> dict[str, Any]:
    recipe = job.recipe
    run_dir = Path(job.output)
    torch.manual_seed(recipe.seed)
    train_set, val_set, classes = _datasets_for(job.data, recipe.img_size)
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
        with atomic_write(run_dir / "job.json") as handle:
            handle.write(json.dumps({**job.to_dict(), "world_size": info.world_size}, indent=2,
                                    default=str).encode())
    barrier(info)

    net = model
    if info.enabled:
        convert_sync_batchnorm(model)  # the paper trains with SyncBN: statistics over the global batch
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=getattr(task, "find_unused_parameters", False))
    global_batch = recipe.batch_size * info.world_size
    optimizer = create_optimizer(model, recipe.lr(global_batch), recipe.weight_decay, recipe.opt_eps, recipe.betas)
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
    ctx = StepContext(model=net, task=task, optimizer=optimizer, schedule=schedule, device=device,
                      clip_mode=recipe.clip_mode, clip_grad=recipe.clip_grad, amp_dtype=amp_dtype, scaler=scaler,
                      ema=ema)

    train_data = AugmentedDataset(train_set, TrainTransform.from_recipe(recipe), seed=recipe.seed)
    val_data = AugmentedDataset(val_set, EvalTransform(recipe.img_size, recipe.crop_pct), seed=recipe.seed)
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
    with progress_bar("count", disable=None if info.is_main else True) as bar:
        task = bar.add_task("training", total=recipe.epochs * steps_per_epoch,
                            completed=position.epoch * steps_per_epoch + position.step)
        while position.epoch < recipe.epochs:
            epoch = position.epoch
            sampler.set_epoch(epoch, start=position.step * recipe.batch_size)
            train_data.set_epoch(epoch)  # before the loader starts its workers
            # An explicit generator keeps the loader from drawing its worker base seed from the global RNG,
            # which drop path uses: a resumed run must see the same global RNG stream as an uninterrupted one.
            loader = DataLoader(train_data, batch_size=recipe.batch_size, sampler=sampler, drop_last=True,
                                num_workers=job.num_workers, generator=torch.Generator().manual_seed(recipe.seed))
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
                bar.update(task, advance=1, description=f"epoch {epoch + 1}/{recipe.epochs} loss {loss:.3f} "
                                                        f"lr {lr:.2e} {rate:.0f} img/s")
                if job.checkpoint_every and position.global_step % job.checkpoint_every == 0:
                    save(position)

            result = train_steps(ctx, batches, epoch, position.step, steps_per_epoch, on_step)
            if position.step < steps_per_epoch:  # stopped by max_steps
                save(position)
                break
            prepare_eval = getattr(task, "prepare_eval", None)
            for module in (model, None if ema is None else ema.module):
                if prepare_eval is not None and module is not None:
                    prepare_eval(module)
            metrics = evaluate(model, DataLoader(val_shard, batch_size=recipe.batch_size), len(classes), device,
                               reduce=reduce)
            summary = {"epoch": epoch + 1, "train_loss": result.loss, "lr": result.lr, "val_loss": metrics.loss,
                       "top1": metrics.top1, "top5": metrics.top5, "images_per_s": result.images / result.seconds}
            if ema is not None:
                summary["ema_top1"] = evaluate(ema.module, DataLoader(val_shard, batch_size=recipe.batch_size),
                                               len(classes), device, reduce=reduce).top1
            if metrics.top1 > best["top1"]:
                best = {"top1": metrics.top1, "epoch": epoch + 1}
                if info.is_main:
                    save_checkpoint(model, run_dir / "best.safetensors")
            summary["best_top1"] = best["top1"]
            if info.is_main:
                with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(summary) + "\n")
            position = Position(epoch=epoch + 1, step=0, global_step=position.global_step)
            save(position)
    if info.is_main:
        save_checkpoint(model, run_dir / "last.safetensors")
        if summary:
            _write_reports(run_dir, metrics, classes, title=f"{model.config.name} ({recipe.name})")
    barrier(info)
    return {**summary, "run_dir": str(run_dir), "global_step": position.global_step, "is_main": info.is_main}


def _write_reports(run_dir: Path, final: EvalResult, classes: tuple[str, ...], title: str) -> None:
    """metrics.csv and curves.png from metrics.jsonl; per_class.csv and confusion.png of the final evaluation."""
    records = read_metrics(run_dir / "metrics.jsonl")
    write_csv(records, run_dir / "metrics.csv")
    write_per_class(final.per_class_accuracy(), final.confusion, classes, run_dir / "per_class.csv")
    if plot_curves(records, run_dir / "curves.png", title) is None:
        print("matplotlib is not installed: no curves.png / confusion.png (pip install 'efficientformer[demo]')")
    plot_confusion(final.confusion, classes, run_dir / "confusion.png", f"{title}, epoch {records[-1]['epoch']}")


def _take(iterable, limit: int | None):
    """The first `limit` items (all when None)."""
    for count, item in enumerate(iterable):
        if limit is not None and count >= limit:
            return
        yield item


__all__ = ["TrainJob", "check_run_dir", "run_training"]
