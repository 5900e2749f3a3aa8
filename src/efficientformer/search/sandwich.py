"""Supernet training: the sandwich rule with in-place distillation, as a TrainTask of the training job (docs/search.md).

    summary = train_supernet(TrainJob(output="runs/supernet", recipe=DEFAULT), TINY_SPACE)
    supernet = load_supernet("runs/supernet/supernet.safetensors")

Each step (paper, Algorithm 1) trains, on the same batch, the largest subnet, the smallest and
`num_random` random ones (2 in the paper), accumulating their gradients for one optimiser step.
The random subnets are drawn from a generator seeded by (seed, epoch, step), so a resumed run trains
exactly the subnets an uninterrupted one would, on every process alike.

Choices (the paper leaves them open; docs/search.md, "Our choices", and the README):
- in-place distillation (BigNAS, OFA): the largest subnet learns the labels (with the recipe's label
  smoothing and mixup targets); every other subnet learns the largest's softmax output on the same
  batch, detached (soft-target cross-entropy, temperature 1). `distill=False` trains all on labels;
- the step's loss is the sum of the subnets' losses (gradients accumulate, as in OFA and BigNAS);
- only the largest subnet updates the BN running statistics (search/elastic.py): evaluation during
  training reports the largest subnet, and any other is recalibrated before it is evaluated.

Everything else (data, augmentation, DDP, optimiser, schedule, checkpoints, exact resume,
evaluation) is the training job's (train/job.py). The job's `last.safetensors`/`best.safetensors`
are the supernet's weights as a plain max-config model; `supernet.safetensors` adds the space.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from efficientformer.data.embedded import DigitsDataset
from efficientformer.data.folder import find_samples
from efficientformer.data.seeding import sample_generator
from efficientformer.errors import ConfigError
from efficientformer.models.config import ModelConfig
from efficientformer.search.space import SearchSpace
from efficientformer.search.supernet import Supernet, load_subnet_weights, save_supernet
from efficientformer.train.job import TrainJob, run_training
from efficientformer.train.losses import SoftTargetCrossEntropy
from efficientformer.train.task import StepInfo, TaskOutput

# Random stream of the subnet draws (data/seeding.py streams 0-2 are transforms, mixup, the sampler).
SUBNET_STREAM = 3
SUPERNET_FILE = "supernet.safetensors"


def _bare(model: nn.Module) -> Supernet:
    supernet = model.module if isinstance(model, DistributedDataParallel) else model
    if not isinstance(supernet, Supernet):
        raise TypeError(f"SandwichTask trains a search Supernet, got {type(supernet).__name__}")
    return supernet


class SandwichTask:
    """TrainTask: largest + smallest + `num_random` random subnets per batch, gradients accumulated.

    Args:
        num_random: random subnets per step besides the largest and the smallest (the paper: 2).
        seed: base seed of the per-step subnet draws (the recipe's seed).
        smoothing: label smoothing of the largest subnet's loss on class-index targets.
        distill: the other subnets learn the largest's soft outputs (in-place distillation); False: the labels.
    """

    find_unused_parameters = True  # a subnet leaves the weights of the blocks it drops without a gradient

    def __init__(self, num_random: int = 2, seed: int = 0, smoothing: float = 0.0, distill: bool = True) -> None:
        if num_random < 0:
            raise ConfigError(f"SandwichTask.num_random must be >= 0, got {num_random}")
        self.num_random = num_random
        self.seed = seed
        self.distill = distill
        self.label_loss = SoftTargetCrossEntropy(smoothing)
        self.soft_loss = SoftTargetCrossEntropy()

    def subnets(self, supernet: Supernet, epoch: int, step: int) -> list[ModelConfig]:
        """The subnets of one step: largest, smallest, then the random ones of (seed, epoch, step)."""
        generator = sample_generator(self.seed, epoch, step, stream=SUBNET_STREAM)
        return [supernet.largest(), supernet.smallest()] + [supernet.sample(generator) for _ in range(self.num_random)]

    def step(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
             autocast: Callable[[], AbstractContextManager], backward: Callable[[torch.Tensor], None],
             info: StepInfo) -> TaskOutput:
        supernet = _bare(model)
        total, largest_logits, teacher = 0.0, None, None
        for index, config in enumerate(self.subnets(supernet, info.epoch, info.step)):
            supernet.set_active(config)
            # Only the largest subnet's batches go into the BN running statistics (module docstring).
            with nullcontext() if index == 0 else supernet.keep_bn_statistics(), autocast():
                logits = model(inputs)  # (B, classes)
                if teacher is None:
                    loss = self.label_loss(logits, targets)
                else:
                    loss = self.soft_loss(logits, teacher)
            value = loss.item()
            total += value
            if index == 0:
                largest_logits = logits.detach()
                if self.distill:
                    teacher = largest_logits.float().softmax(dim=-1)  # (B, classes), no gradient
            if not math.isfinite(value):  # the loop stops the run before any optimiser step
                break
            backward(loss)
        supernet.set_active(supernet.largest())
        return TaskOutput(total, largest_logits)

    def prepare_eval(self, model: nn.Module) -> None:
        """Evaluate the largest subnet (whose BN statistics the supernet keeps)."""
        _bare(model).set_active(_bare(model).largest())


def num_classes_of(data: str | None) -> int:
    """Classes of a run's training data (None = the embedded digits)."""
    return len(DigitsDataset.classes) if data is None else len(find_samples(data)[0])


def train_supernet(job: TrainJob, space: SearchSpace, *, num_random: int = 2, distill: bool = True,
                   warm_start: str | None = None) -> dict[str, Any]:
    """Train a supernet of `space` with the sandwich rule through the training job; writes `supernet.safetensors`.

    The space's classes and resolution are set from the data and `job.recipe.img_size`. The
    recipe's teacher distillation is replaced by the in-place distillation (`distill`).

    Args:
        warm_start: a checkpoint of a subnet of the space (e.g. the released L for the paper space)
            loaded into the shared weights first (`load_subnet_weights`); ignored when resuming.

    Returns:
        the job's summary plus `supernet`: the path of the supernet file (on the main process).
    """
    if job.teacher is not None:
        raise ConfigError("supernet training distils in place from the largest subnet: an external teacher "
                          "(--teacher) is not supported")
    if job.pretrained is not None:
        raise ConfigError("for supernet training give the starting checkpoint as warm_start (--pretrained on the CLI)")
    recipe = job.recipe.replace(distillation="none")
    size = recipe.img_size
    space = space.replace_base(num_classes=num_classes_of(job.data), img_size=(size, size))
    torch.manual_seed(recipe.seed)  # the initial weights, like the job's own models
    supernet = Supernet(space)
    if warm_start is not None:
        load_subnet_weights(supernet, warm_start)
    job = dataclasses.replace(job, recipe=recipe, model=supernet.config.name)
    task = SandwichTask(num_random=num_random, seed=recipe.seed, smoothing=recipe.smoothing, distill=distill)
    summary = run_training(job, model=supernet, task=task)
    if summary["is_main"]:
        summary["supernet"] = str(save_supernet(supernet, Path(job.output) / SUPERNET_FILE))
    return summary


__all__ = ["SUPERNET_FILE", "SandwichTask", "train_supernet"]
