"""The training step as an object: what one batch computes, apart from how the loop steps (timm's task/ seam).

    task = ClassificationTask(criterion)           # the default: one forward, criterion, one backward
    run_training(job, model=supernet, task=SandwichTask(...))   # search plugs in here; train never imports it

The loop (train/loop.py) owns everything around a step: moving the batch to the device, mixup,
the learning rate, zeroing gradients, gradient scaling (fp16), clipping, the optimiser step, EMA,
the non-finite-loss stop and logging. A task owns the forward and backward passes of one batch.

The contract of `TrainTask.step(model, inputs, targets, *, autocast, backward, info)`:

- It is called once per batch with `model` in training mode (the DDP wrapper under torchrun:
  call it, not `.module`, so gradients are all-reduced) and all gradients already zeroed.
- `inputs` (B, 3, H, W) are on the device and mixed; `targets` are class indices (B,) or, with
  mixup/cutmix, soft targets (B, classes). B >= 1 (a batch whose images were all skipped never
  reaches the task).
- Run every forward pass under `with autocast():` and call `backward(loss)` (never
  `loss.backward()`: under fp16 it applies the gradient scaler) once per loss. Several calls
  accumulate gradients (e.g. largest + smallest + random subnets), and the loop then takes one
  optimiser step. Under DDP every `backward` all-reduces; all ranks must make the same number of
  calls.
- Do not touch the optimiser, the learning rate or the gradients' zeroing; do not step EMA.
- Return TaskOutput(loss, logits): `loss` a Python float (the sum of what was back-propagated, as
  logged and checked: NaN/inf stops the run before the optimiser step), `logits` a detached
  (B, classes) tensor for metrics, or None.
- Draw randomness (e.g. which subnet) from `torch`'s global RNG, which resumable states save and
  restore, or from `data.seeding.sample_generator(seed, info.epoch, info.step, stream=...)`;
  never from an unseeded source, or a resumed run stops being bitwise equal to an uninterrupted one.

Optional attributes, read with getattr:

- `find_unused_parameters: bool` (default False): passed to DistributedDataParallel, for tasks
  whose passes leave some parameters without a gradient.
- `prepare_eval(model) -> None`: called on the bare model (and on the EMA copy) before each
  evaluation, e.g. to activate the largest subnet.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

import torch
from torch import nn


class TaskOutput(NamedTuple):
    """What a task's step returns: the loss as a float and the (detached) logits for metrics."""

    loss: float
    logits: torch.Tensor | None = None  # (B, classes)


@dataclass(frozen=True)
class StepInfo:
    """Where in the run a step is: batch `step` (0-based) of `epoch`, of `steps_per_epoch`."""

    epoch: int
    step: int
    steps_per_epoch: int


@runtime_checkable
class TrainTask(Protocol):
    """Forward and backward of one batch (module docstring for the full contract)."""

    def step(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
             autocast: Callable[[], AbstractContextManager], backward: Callable[[torch.Tensor], None],
             info: StepInfo) -> TaskOutput:
        """Run the passes of one batch, calling `backward(loss)` for each loss; return the loss and logits."""
        ...


class ClassificationTask:
    """The default step: `loss = criterion(inputs, model(inputs), targets)`, one backward.

    Args:
        criterion: called as `criterion(inputs, outputs, targets)`, e.g. train.losses.DistillationLoss
            (which needs the inputs for its teacher; mode 'none' is plain soft-target cross-entropy).
    """

    find_unused_parameters = False

    def __init__(self, criterion: nn.Module) -> None:
        self.criterion = criterion

    def step(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
             autocast: Callable[[], AbstractContextManager], backward: Callable[[torch.Tensor], None],
             info: StepInfo) -> TaskOutput:
        with autocast():
            outputs = model(inputs)  # (B, classes), or (class, distillation) logits when distilling
            loss = self.criterion(inputs, outputs, targets)
        value = loss.item()
        logits = (outputs[0] if isinstance(outputs, tuple) else outputs).detach()
        if not math.isfinite(value):  # the loop stops the run; no point in back-propagating it
            return TaskOutput(value, logits)
        backward(loss)
        return TaskOutput(value, logits)


__all__ = ["ClassificationTask", "StepInfo", "TaskOutput", "TrainTask"]
