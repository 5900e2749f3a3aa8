"""A training run end to end: data, model, optimiser, resume, checkpoints, metrics, in one run directory.

    summary = run_training(TrainJob(output="runs/digits"))                    # the embedded default run
    summary = run_training(TrainJob(output="runs/flowers", data="~/flowers"))  # a folder of class folders

Everything a run writes goes under `TrainJob.output`: `job.json` (the resolved job and recipe, classes,
the split), `metrics.jsonl` (one line per epoch), `state_e*_s*.pt` (last K resumable states),
`best.safetensors` / `last.safetensors` (weights, config, class names: `load_model` reads them),
`skipped.txt` (unreadable images, with on_bad_image='skip') and `tb/` (TensorBoard, when installed).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from efficientformer.data.datasets import DEFAULT_VAL_SPLIT, EVAL_CROP_PCT, run_datasets
from efficientformer.data.folder import BAD_IMAGE_POLICIES, collate_skip_none
from efficientformer.data.mixup import Mixup
from efficientformer.data.sampler import EpochSampler
from efficientformer.data.seeding import MIXUP_STREAM, sample_generator
from efficientformer.data.transforms import AugmentedDataset, EvalTransform, TrainTransform
from efficientformer.errors import ConfigError, ImageError
from efficientformer.factory import build_model
from efficientformer.layers.sync_batchnorm import convert_sync_batchnorm
from efficientformer.train.distributed import (
    DistInfo,
    all_reduce_min,
    all_reduce_sum,
    barrier,
    cleanup,
    gather_strings,
    init_distributed,
    resolve_device,
)
from efficientformer.train.ema import ModelEma
from efficientformer.train.loop import EvalResult, StepContext, evaluate, train_steps
from efficientformer.train.losses import DistillationLoss, SoftTargetCrossEntropy
from efficientformer.train.optim import CosineSchedule, create_optimizer
from efficientformer.train.recipes import DEFAULT, TrainRecipe
from efficientformer.train.report import SKIPPED_FILE, write_run_reports, write_skipped
from efficientformer.train.state import Position, TrainingState, check_run_dir, latest_state, prune_states
from efficientformer.train.task import ClassificationTask, TrainTask
from efficientformer.train.teacher import recipe_teacher
from efficientformer.train.tensorboard import ScalarLog
from efficientformer.utils.io import write_json
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
            `val_split` of every class of `data` (data/datasets.py: fixed, by file name).
        val_split: share of each class held out when `val_data` is None, in (0, 1).
        on_bad_image: 'error' stops at the first unreadable image, naming it; 'skip' drops it,
            counts it and lists it in `skipped.txt` and metrics.jsonl (no other image replaces it).
        model: registry name, alias, ModelConfig JSON, or MobileNetV2 (mobilenetv2_100/_140 or its config JSON).
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
            raise ConfigError(f"TrainJob.val_split must be in (0, 1), got {self.val_split!r}")
        if self.on_bad_image not in BAD_IMAGE_POLICIES:
            raise ConfigError(f"TrainJob.on_bad_image must be one of {', '.join(BAD_IMAGE_POLICIES)}, "
                              f"got {self.on_bad_image!r}")

    def to_dict(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "recipe"},
                "recipe": self.recipe.to_dict()}


def run_training(job: TrainJob, *, model: nn.Module | None = None, task: TrainTask | None = None) -> dict[str, Any]:
    """Train as `job` says; returns the final summary (the last line of metrics.jsonl). Under torchrun
    every process runs this; only rank 0 writes files.

    Args:
        model: the network to train instead of building `job.model` (e.g. a search supernet): a network
            with a `config` (models/spec.py) built for the run's class count and `recipe.img_size`,
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
    info, device = init_distributed(resolve_device(job.device))
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


def _previous_split(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "job.json").read_text(encoding="utf-8"))["data_split"].get("split_digest")
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def _run(job: TrainJob, info: DistInfo, device: torch.device, model: nn.Module | None,
         task: TrainTask | None) -> dict[str, Any]:
    run = _TrainingRun(job, info, device, model, task)
    run.resume()
    scalars = ScalarLog(run.run_dir, enabled=info.is_main)
    if scalars.message:
        logger.info(scalars.message)
    try:
        with progress_bar("count", disable=None if info.is_main else True) as bar:
            bar_task = bar.add_task("training", total=job.recipe.epochs * run.steps_per_epoch,
                                    completed=run.position.epoch * run.steps_per_epoch + run.position.step)
            while run.position.epoch < job.recipe.epochs:
                if not run.epoch(lambda **changes: bar.update(bar_task, **changes), scalars):
                    break  # stopped by job.max_steps
    finally:
        scalars.close()
    return run.finish()


class _TrainingRun:
    """One `run_training` call in named phases: set-up (`__init__`), `resume`, one `epoch` at a time, `finish`.

    Everything a state file holds is in `self.state` (train/state.py TrainingState): the model, optimiser,
    EMA and gradient scaler, and the best top-1 so far (`self.state.values["best"]`).
    """

    def __init__(self, job: TrainJob, info: DistInfo, device: torch.device, model: nn.Module | None,
                 task: TrainTask | None) -> None:
        recipe = self.recipe = job.recipe
        self.job, self.info, self.device, self.run_dir = job, info, device, Path(job.output)
        torch.manual_seed(recipe.seed)
        data = run_datasets(job.data, img_size=recipe.img_size, val_data=job.val_data, val_split=job.val_split,
                            on_bad_image=job.on_bad_image)
        self.classes = classes = data.classes
        eval_crop = recipe.crop_pct if data.eval_crop_pct is None else data.eval_crop_pct
        self.model = model = self._build_model(model, task, len(classes))
        self._write_job_record(data, eval_crop, task)
        self.metadata = {"classes": json.dumps(list(classes)), "eval_crop_pct": str(eval_crop)}

        self.net = model
        if info.enabled:
            convert_sync_batchnorm(model)  # the paper trains with SyncBN: statistics over the global batch
            self.net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                               find_unused_parameters=getattr(task, "find_unused_parameters", False))
        global_batch = recipe.batch_size * info.world_size
        optimizer = create_optimizer(model, recipe.lr(global_batch), recipe.weight_decay, recipe.opt_eps,
                                     recipe.betas, layer_decay=recipe.layer_decay)
        schedule = CosineSchedule(recipe.lr(global_batch), recipe.epochs, recipe.warmup_epochs, recipe.warmup_lr,
                                  recipe.min_lr, per_step=recipe.lr_per_step)
        self.ema = ModelEma(model, recipe.ema_decay) if recipe.ema else None
        amp_dtype = AMP[recipe.amp]
        scaler = torch.amp.GradScaler(device.type) if amp_dtype is torch.float16 else None
        self.task = task if task is not None else self._default_task()
        agree = None
        if info.enabled and job.on_bad_image == "skip":  # every rank must skip an all-skipped batch together
            def agree(count: int) -> int:
                return int(all_reduce_min(torch.tensor([count], device=device), info).item())
        self.ctx = StepContext(model=self.net, task=self.task, optimizer=optimizer, schedule=schedule, device=device,
                               clip_mode=recipe.clip_mode, clip_grad=recipe.clip_grad, amp_dtype=amp_dtype,
                               scaler=scaler, ema=self.ema, agree_images=agree)
        self.state = TrainingState({"model": model, "optimizer": optimizer,
                                    "ema": None if self.ema is None else self.ema.module, "scaler": scaler},
                                   best={"top1": -1.0})

        self.train_data = AugmentedDataset(data.train, TrainTransform.from_recipe(recipe), seed=recipe.seed)
        val_data = AugmentedDataset(data.val, EvalTransform(recipe.img_size, eval_crop), seed=recipe.seed)
        self.mixup = Mixup.from_recipe(recipe, num_classes=len(classes))
        self.val_shard = Subset(val_data, range(info.rank, len(val_data), info.world_size))
        self.sampler = EpochSampler(len(self.train_data), shuffle=True, seed=recipe.seed, rank=info.rank,
                                    world_size=info.world_size, repeats=recipe.repeated_aug, drop_last=True)
        self.steps_per_epoch = self.sampler.per_rank() // recipe.batch_size
        if self.steps_per_epoch < 1:
            raise ConfigError(f"the training set has {len(self.train_data)} images, fewer than one global batch of "
                              f"{global_batch}")
        self.position = Position()
        self.summary: dict[str, Any] = {}
        self.last_eval: EvalResult | None = None
        self.skipped_total: set[str] = set()

    def _build_model(self, model: nn.Module | None, task: TrainTask | None, num_classes: int) -> nn.Module:
        """`job.model`, or the caller's model once it is checked to fit the run's data."""
        job, recipe, img_size = self.job, self.recipe, self.recipe.img_size
        if model is None:
            model = build_model(job.model, num_classes=num_classes, img_size=img_size, pretrained=job.pretrained)
        elif job.pretrained is not None:
            raise ConfigError("run_training(model=...) with job.pretrained: load the weights into the model first")
        elif getattr(model, "config", None) is None or not hasattr(model, "num_classes"):
            raise TypeError(f"run_training(model=...) needs a network with a config (EfficientFormerV2, MobileNetV2), "
                            f"got {type(model).__name__}")
        elif model.num_classes != num_classes:
            raise ConfigError(f"the supplied model predicts {model.num_classes} classes but the training data has "
                              f"{num_classes}")
        elif tuple(model.config.img_size) != (img_size, img_size):
            raise ConfigError(f"the supplied model is built for img_size {tuple(model.config.img_size)} but the "
                              f"recipe trains at {img_size}")
        if task is not None and recipe.distillation != "none":
            raise ConfigError(f"a custom training task ({type(task).__name__}) owns its loss: set the recipe's "
                              f"distillation to 'none' (--set distillation=none)")
        return model.to(self.device)

    def _write_job_record(self, data, eval_crop: float, task: TrainTask | None) -> None:
        """Rank 0 checks the run directory and writes job.json; every rank waits for it."""
        job, info, run_dir = self.job, self.info, self.run_dir
        if info.is_main:
            state_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
            check_run_dir(run_dir, needed_bytes=state_bytes * (4 + (self.recipe.ema is True)) * (job.keep_last + 2))
            if job.resume is None:  # a fresh run lists only its own skipped images
                (run_dir / SKIPPED_FILE).unlink(missing_ok=True)
            before = _previous_split(run_dir) if job.resume is not None else None
            if before is not None and before != data.describe.get("split_digest"):
                logger.warning("the held-out split of %s differs from the one this run started with (files were "
                               "added, removed or renamed); resuming is no longer exact", job.data)
            record = {**job.to_dict(), "world_size": info.world_size, "classes": list(self.classes), "data_split":
                      data.describe, "eval_crop_pct": eval_crop, "model_config": self.model.config.to_dict(),
                      "task": type(task).__name__ if task is not None else "ClassificationTask"}
            write_json(run_dir / "job.json", record, default=str)
        barrier(info)

    def _default_task(self) -> TrainTask:
        """Classification over the recipe's criterion: label smoothing, and distillation from the job's teacher."""
        recipe = self.recipe
        teacher = recipe_teacher(recipe, self.job.teacher, self.model, self.device)
        return ClassificationTask(DistillationLoss(SoftTargetCrossEntropy(recipe.smoothing), teacher,
                                                   mode=recipe.distillation, alpha=recipe.distillation_alpha,
                                                   tau=recipe.distillation_tau))

    def resume(self) -> None:
        """Continue from `job.resume` ('auto': the newest state in the run directory, if any)."""
        path = latest_state(self.run_dir) if self.job.resume == "auto" else self.job.resume
        if path is not None:
            self.position = self.state.load(path)

    def save(self) -> None:
        """A resumable state at the current position (rank 0), keeping the newest `job.keep_last`."""
        if self.info.is_main:
            self.state.save(self.run_dir, self.position)
            prune_states(self.run_dir, self.job.keep_last)

    def epoch(self, progress: Callable[..., None], scalars: ScalarLog) -> bool:
        """Train the rest of the current epoch, evaluate, report and save; False when `job.max_steps` stopped it.

        `progress(advance=, description=)` is called after each step.
        """
        job, recipe, info, position = self.job, self.recipe, self.info, self.position
        epoch = position.epoch
        self.sampler.set_epoch(epoch, start=position.step * recipe.batch_size)
        self.train_data.set_epoch(epoch)  # before the loader starts its workers
        # An explicit generator keeps the loader from drawing its worker base seed from the global RNG,
        # which drop path uses: a resumed run must see the same global RNG stream as an uninterrupted one.
        loader = DataLoader(self.train_data, batch_size=recipe.batch_size, sampler=self.sampler, drop_last=True,
                            num_workers=job.num_workers, collate_fn=collate_skip_none,
                            generator=torch.Generator().manual_seed(recipe.seed))
        if self.mixup.enabled:  # one generator per (epoch, step): resumable and independent of workers
            self.ctx.mix = lambda x, y, step: self.mixup(x, y, sample_generator(recipe.seed, epoch, step,
                                                                                stream=MIXUP_STREAM))
        remaining = None if job.max_steps is None else job.max_steps - position.global_step
        epoch_start, seen = time.perf_counter(), 0

        def on_step(step: int, loss: float, lr: float, images: int) -> None:
            nonlocal seen
            position.step, position.global_step = step + 1, position.global_step + 1
            seen += images * info.world_size
            rate = seen / max(time.perf_counter() - epoch_start, 1e-9)
            progress(advance=1, description=f"epoch {epoch + 1}/{recipe.epochs} loss {loss:.3f} lr {lr:.2e} "
                                            f"{rate:.0f} img/s")
            if job.checkpoint_every and position.global_step % job.checkpoint_every == 0:
                self.save()

        result = train_steps(self.ctx, _take(loader, remaining), epoch, position.step, self.steps_per_epoch, on_step)
        if position.step < self.steps_per_epoch:  # stopped by max_steps
            self.report_skipped(result.skipped, f"epoch {epoch + 1} (stopped at step {position.step})")
            self.save()
            return False
        metrics = self.last_eval = self.evaluate(self.model)
        summary = {"epoch": epoch + 1, "train_loss": result.loss, "lr": result.lr, "val_loss": metrics.loss,
                   "top1": metrics.top1, "top5": metrics.top5,
                   "images_per_s": result.images / max(result.seconds, 1e-9)}
        if self.ema is not None:
            summary["ema_top1"] = self.evaluate(self.ema.module).top1
        skipped = self.report_skipped(result.skipped + metrics.skipped, f"epoch {epoch + 1}")
        if job.on_bad_image == "skip":
            summary["skipped"] = skipped
        best = self.state.values["best"]
        if metrics.top1 > best["top1"]:
            best = self.state.values["best"] = {"top1": metrics.top1, "epoch": epoch + 1}
            if info.is_main:
                save_checkpoint(self.model, self.run_dir / "best.safetensors", self.metadata)
        summary["best_top1"] = best["top1"]
        if info.is_main:
            with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps(summary) + "\n")
            scalars.log_epoch(summary)
        self.summary = summary
        self.position = Position(epoch=epoch + 1, step=0, global_step=position.global_step)
        self.save()
        return True

    def evaluate(self, module: nn.Module) -> EvalResult:
        """Top-1/top-5 and the confusion matrix of `module` over the whole validation set (all ranks' shards)."""
        prepare_eval = getattr(self.task, "prepare_eval", None)
        if prepare_eval is not None:
            prepare_eval(module)
        loader = DataLoader(self.val_shard, batch_size=self.recipe.batch_size, num_workers=self.job.num_workers,
                            collate_fn=collate_skip_none)
        return evaluate(module, loader, len(self.classes), self.device,
                        reduce=lambda tensor: all_reduce_sum(tensor, self.info))

    def report_skipped(self, paths: list[str], where: str) -> int:
        """Gather this epoch's skipped paths over ranks; rank 0 logs them and merges them into skipped.txt."""
        paths = sorted(set(gather_strings(paths, self.info)))
        self.skipped_total.update(paths)
        if paths and self.info.is_main:
            listed = write_skipped(self.run_dir, paths)
            shown = "\n  ".join(paths[:10]) + (f"\n  ... {len(paths) - 10} more" if len(paths) > 10 else "")
            logger.warning("skipped %d unreadable image(s) in %s (%d in all, listed in %s):\n  %s", len(paths), where,
                           len(listed), self.run_dir / SKIPPED_FILE, shown)
        return len(paths)

    def finish(self) -> dict[str, Any]:
        """Rank 0 writes last.safetensors and, after a completed epoch, the reports; returns the summary."""
        if self.info.is_main:
            save_checkpoint(self.model, self.run_dir / "last.safetensors", self.metadata)
            if self.summary:
                write_run_reports(self.run_dir, self.last_eval.per_class_accuracy(), self.last_eval.confusion,
                                  self.classes, title=f"{self.model.config.name} ({self.recipe.name})")
        barrier(self.info)
        return {**self.summary, "run_dir": str(self.run_dir), "global_step": self.position.global_step,
                "is_main": self.info.is_main, "skipped_images": len(self.skipped_total),
                "classes": list(self.classes)}


def _take(iterable, limit: int | None):
    """The first `limit` items (all when None)."""
    for count, item in enumerate(iterable):
        if limit is not None and count >= limit:
            return
        yield item


__all__ = ["AMP", "EVAL_CROP_PCT", "TrainJob", "check_run_dir", "run_training"]
