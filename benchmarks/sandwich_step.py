"""Supernet training cost: one sandwich step against the same four subnets trained as plain models.

A sandwich step (search/sandwich.py) runs forward and backward for the largest, the smallest and two
random subnets of the supernet on one batch. The same four subnets extracted as plain
EfficientFormerV2 models do the same arithmetic; the difference is what elasticity costs (weight
slicing and its copies, sliced BN, full-size gradients of sliced weights). Both are timed in one
process, alternating round by round, on the same batch; then torch's profiler shows where the
sandwich step's time goes by op.

    python benchmarks/sandwich_step.py                              # paper space, 64 px, batch 32
    python benchmarks/sandwich_step.py --img-size 32 --batch 64 --rounds 5 --no-profile
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from efficientformer.search.sandwich import SandwichTask
from efficientformer.search.space import get_space
from efficientformer.search.supernet import Supernet
from efficientformer.train.task import StepInfo
from efficientformer.utils.machine import machine_line


def sandwich_step(task: SandwichTask, supernet: Supernet, inputs: torch.Tensor, targets: torch.Tensor) -> None:
    supernet.zero_grad(set_to_none=True)
    task.step(supernet, inputs, targets, autocast=contextlib.nullcontext, backward=lambda loss: loss.backward(),
              info=StepInfo(epoch=0, step=0, steps_per_epoch=1))


def plain_steps(task: SandwichTask, models: list[torch.nn.Module], inputs: torch.Tensor, targets: torch.Tensor
                ) -> None:
    """The same four forward/backward passes on plain models, with the task's own losses (labels for the
    largest, its detached softmax for the others)."""
    teacher = None
    for model in models:
        model.zero_grad(set_to_none=True)
        logits = model(inputs)
        if teacher is None:
            loss = task.label_loss(logits, targets)
            teacher = logits.detach().float().softmax(dim=-1)
        else:
            loss = task.soft_loss(logits, teacher)
        loss.backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="efficientformerv2")
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    space = get_space(args.space).replace_base(img_size=(args.img_size, args.img_size), num_classes=args.classes)
    supernet = Supernet(space).train()
    task = SandwichTask(num_random=2, seed=0, distill=True)
    configs = task.subnets(supernet, 0, 0)
    models = []
    for config in configs:
        supernet.set_active(config)
        models.append(supernet.extract().train())
    supernet.set_active(supernet.largest())
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(args.batch, 3, args.img_size, args.img_size, generator=generator)
    targets = torch.randint(0, args.classes, (args.batch,), generator=generator)
    print(f"# {machine_line()} | {time.strftime('%Y-%m-%d')} | {args.space} space, {args.img_size} px, batch "
          f"{args.batch}, {args.threads} thread(s), {args.rounds} rounds")
    print("# subnets: " + ", ".join(f"{sum(p.numel() for p in m.parameters()) / 1e6:.2f} M" for m in models))
    calls = {"sandwich step": lambda: sandwich_step(task, supernet, inputs, targets),
             "4 plain subnets": lambda: plain_steps(task, models, inputs, targets)}
    for call in calls.values():  # warm-up
        call()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            began = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - began)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    print("| what | median s | vs plain |")
    print("|---|---|---|")
    for name, value in medians.items():
        print(f"| {name} | {value:.3f} | {value / medians['4 plain subnets']:.2f}x |")
    if not args.no_profile:
        for name, call in calls.items():
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
                call()
            print(f"\n## {name}: top ops by self CPU time")
            print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
