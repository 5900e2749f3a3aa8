"""One training epoch and one evaluation pass; no argument parsing, no file layout (see train/job.py)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from efficientformer.errors import UserError
from efficientformer.train.ema import ModelEma
from efficientformer.train.optim import CosineSchedule, clip_gradients_
from efficientformer.train.task import StepInfo, TrainTask


class NonFiniteLossError(UserError, RuntimeError):
    """The loss became NaN or infinite; the run stops and the last good checkpoint is kept.

    A UserError: the message says which settings to change (learning rate, clipping).
    """


@dataclass
class StepContext:
    """What a training step needs besides the batch; built once per run.

    Args:
        task: what a step computes (forward + backward, train/task.py), e.g. ClassificationTask(criterion).
        agree_images: under DDP with skipped images, maps this rank's image count to the smallest
            count over all ranks, so that every rank skips an all-skipped batch together.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: CosineSchedule
    device: torch.device
    task: TrainTask
    clip_mode: str = "none"
    clip_grad: float = 0.0
    amp_dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None
    ema: ModelEma | None = None
    mix: Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]] | None = None
    agree_images: Callable[[int], int] | None = None

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate `loss`, scaled when training in fp16 (the `backward` a task gets)."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def autocast(self):
        """The autocast context of the run's AMP dtype (a no-op in fp32)."""
        return _autocast(self.device, self.amp_dtype)


@dataclass
class EpochResult:
    loss: float
    images: int
    seconds: float
    lr: float
    skipped: list[str] = field(default_factory=list)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None)


def train_steps(ctx: StepContext, batches: Iterable, epoch: int, start_step: int, steps_per_epoch: int,
                on_step: Callable[[int, float, float, int], None] | None = None) -> EpochResult:
    """Run the optimiser over `batches` (the rest of `epoch` from `start_step`).

    A batch is (images, labels) or (images, labels, skipped_paths) (data.folder.collate_skip_none);
    a batch may hold fewer images than the batch size. One whose images were all skipped is a step
    without an update: nothing is computed or stepped, and `on_step` gets loss NaN and 0 images.
    `on_step(step, loss, lr, images)` is called after each step (logging, progress, step checkpoints).

    Raises:
        NonFiniteLossError: the loss is NaN or infinite (nothing is stepped for that batch).
    """
    ctx.model.train()
    total_loss, images, skipped = 0.0, 0, []
    lr = ctx.schedule.lr_at(epoch, start_step, steps_per_epoch)
    begin = time.perf_counter()
    for step, batch in enumerate(batches, start=start_step):
        inputs, targets = batch[0], batch[1]
        if len(batch) > 2:
            skipped.extend(batch[2])
        lr = ctx.schedule.apply(ctx.optimizer, epoch, step, steps_per_epoch)
        count = int(targets.shape[0])
        if ctx.agree_images is not None:
            count = ctx.agree_images(count)
        if count == 0:
            if on_step is not None:
                on_step(step, math.nan, lr, 0)
            continue
        inputs = inputs.to(ctx.device, non_blocking=True)
        targets = targets.to(ctx.device, non_blocking=True)
        if ctx.mix is not None:
            inputs, targets = ctx.mix(inputs, targets, step)
        ctx.optimizer.zero_grad(set_to_none=True)
        output = ctx.task.step(ctx.model, inputs, targets, autocast=ctx.autocast, backward=ctx.backward,
                               info=StepInfo(epoch, step, steps_per_epoch))
        value = float(output.loss)
        if not math.isfinite(value):
            raise NonFiniteLossError(f"the loss is {value} at epoch {epoch}, step {step} (lr {lr:.3g}); stopping. "
                                     f"Lower the learning rate or enable gradient clipping; the last checkpoint "
                                     f"is intact")
        if ctx.scaler is not None:
            ctx.scaler.unscale_(ctx.optimizer)
            clip_gradients_(ctx.model.parameters(), ctx.clip_mode, ctx.clip_grad)
            ctx.scaler.step(ctx.optimizer)  # skipped by the scaler when fp16 gradients overflowed
            ctx.scaler.update()
        else:
            clip_gradients_(ctx.model.parameters(), ctx.clip_mode, ctx.clip_grad)
            ctx.optimizer.step()
        if ctx.ema is not None:
            ctx.ema.update(ctx.model)
        total_loss += value * inputs.shape[0]
        images += inputs.shape[0]
        if on_step is not None:
            on_step(step, value, lr, inputs.shape[0])
    return EpochResult(loss=total_loss / max(images, 1), images=images, seconds=time.perf_counter() - begin,
                       lr=lr, skipped=skipped)


@dataclass
class EvalResult:
    loss: float
    top1: float
    top5: float
    images: int
    confusion: torch.Tensor  # (classes, classes): rows = true class, columns = predicted
    skipped: list[str] = field(default_factory=list)  # unreadable images left out (this process's)

    def per_class_accuracy(self) -> list[float]:
        totals = self.confusion.sum(dim=1).clamp(min=1)
        return (self.confusion.diagonal() / totals * 100).tolist()


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, num_classes: int, device: torch.device,
             amp_dtype: torch.dtype | None = None,
             reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> EvalResult:
    """Top-1/top-5 accuracy (%), mean cross-entropy and the confusion matrix over `batches`.

    Batches are (images, labels) or (images, labels, skipped_paths) as in `train_steps`.

    Args:
        reduce: sums a tensor over processes (DDP), so every rank gets the metrics of all shards.
    """
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    total_loss, correct5, images, skipped = 0.0, 0, 0, []
    try:
        for batch in batches:
            if len(batch) > 2:
                skipped.extend(batch[2])
            if batch[1].shape[0] == 0:  # every image of the batch was skipped
                continue
            inputs = batch[0].to(device)
            targets = batch[1].to(device)
            with _autocast(device, amp_dtype):
                logits = model(inputs).float()  # (B, classes)
            total_loss += nn.functional.cross_entropy(logits, targets, reduction="sum").item()
            top = logits.topk(min(5, num_classes), dim=-1).indices  # (B, 5)
            correct5 += (top == targets[:, None]).any(dim=1).sum().item()
            pairs = targets.cpu() * num_classes + top[:, 0].cpu()
            confusion += torch.bincount(pairs, minlength=num_classes ** 2).view(num_classes, num_classes)
            images += inputs.shape[0]
    finally:
        model.train(was_training)
    if reduce is not None:
        totals = reduce(torch.tensor([total_loss, correct5, images], dtype=torch.float64, device=device)).cpu()
        total_loss, correct5, images = totals[0].item(), int(totals[1].item()), int(totals[2].item())
        confusion = reduce(confusion.to(device)).cpu()
    top1 = confusion.diagonal().sum().item() / max(images, 1) * 100
    return EvalResult(loss=total_loss / max(images, 1), top1=top1, top5=correct5 / max(images, 1) * 100,
                      images=images, confusion=confusion, skipped=skipped)


__all__ = ["EpochResult", "EvalResult", "NonFiniteLossError", "StepContext", "evaluate", "train_steps"]
