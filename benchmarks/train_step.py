"""Training throughput: our loop (train/loop.py) vs a plain eager PyTorch loop, same model and data.

Both loops run in one process on the same in-memory batches, alternating round by round so machine
noise hits both alike. Then the same for channels-last, bf16 autocast and torch.compile variants of
our loop. Prints images/s and ratios against the plain loop.

    python benchmarks/train_step.py                        # S0 at 224 and 64 px, batch 64
    python benchmarks/train_step.py --sizes 64 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import efficientformer
from efficientformer.train.loop import StepContext, train_steps
from efficientformer.train.losses import DistillationLoss, SoftTargetCrossEntropy
from efficientformer.train.optim import CosineSchedule, create_optimizer
from efficientformer.utils.machine import machine_line


def plain_loop(model, optimizer, batches) -> None:
    """The reference: the shortest correct PyTorch training loop."""
    model.train()
    for inputs, targets in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()


def our_loop(model, optimizer, batches, amp_dtype=None) -> None:
    ctx = StepContext(model=model, criterion=DistillationLoss(SoftTargetCrossEntropy(), None, mode="none"),
                      optimizer=optimizer, schedule=CosineSchedule(1e-3, 100, warmup_epochs=0),
                      device=torch.device("cpu"), clip_mode="none", amp_dtype=amp_dtype)
    train_steps(ctx, batches, epoch=0, start_step=0, steps_per_epoch=len(batches))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientformerv2_s0")
    parser.add_argument("--sizes", default="224,64")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2, help="optimiser steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-bf16", action="store_true", help="skip bf16 autocast (very slow on CPUs without bf16)")
    args = parser.parse_args()
    print(f"# {machine_line()} | {args.model}, batch {args.batch}, {args.steps} steps x {args.rounds} rounds")
    print("| img size | variant | images/s | vs plain |")
    print("|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        generator = torch.Generator().manual_seed(0)
        batches = [(torch.randn(args.batch, 3, size, size, generator=generator),
                    torch.randint(0, 1000, (args.batch,), generator=generator)) for _ in range(args.steps)]
        cl_batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]

        def make(channels_last=False, compile_=False):
            model = efficientformer.create_model(args.model, img_size=size, distillation=False)
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            optimizer = create_optimizer(model, 1e-3, 0.025)
            return (torch.compile(model) if compile_ else model), optimizer

        variants = {
            "plain eager loop": (make(), lambda m, o: plain_loop(m, o, batches)),
            "our loop": (make(), lambda m, o: our_loop(m, o, batches)),
            "our loop, channels-last": (make(channels_last=True), lambda m, o: our_loop(m, o, cl_batches)),
        }
        if not args.no_bf16:
            variants["our loop, bf16 autocast"] = (make(), lambda m, o: our_loop(m, o, batches, torch.bfloat16))
        if not args.no_compile:
            variants["our loop, torch.compile"] = (make(compile_=True), lambda m, o: our_loop(m, o, batches))
        for (model, optimizer), run in variants.values():  # warm-up (and compilation)
            run(model, optimizer)
        seconds = {name: [] for name in variants}
        for index in range(args.rounds):
            names = list(variants)
            for name in names[index % len(names):] + names[:index % len(names)]:
                (model, optimizer), run = variants[name]
                start = time.perf_counter()
                run(model, optimizer)
                seconds[name].append(time.perf_counter() - start)
        images = args.batch * args.steps
        rate = {name: images / statistics.median(values) for name, values in seconds.items()}
        for name in variants:
            print(f"| {size} | {name} | {rate[name]:.1f} | {rate[name] / rate['plain eager loop']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
