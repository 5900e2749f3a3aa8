"""Inference latency of EfficientFormerV2: unfused eager vs fused vs fused channels-last vs torch.compile.

All models of a variant are timed in one process with interleaved repetitions (each round runs
every model once, in rotating order), so machine noise hits them alike. Prints median and p90
latency in ms and the speed-up of each over unfused eager.

    python benchmarks/inference.py                      # all variants, batch 1 and 32
    python benchmarks/inference.py --variants s0 --batches 1 --no-compile
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import efficientformer
from efficientformer.utils.machine import machine_line


def time_models(models: dict, inputs: dict, rounds: int, warmup: int) -> dict[str, list[float]]:
    """Interleaved timing: `rounds` rounds, each running every model once; returns ms per model."""
    times = {name: [] for name in models}
    names = list(models)
    with torch.inference_mode():
        for name in names:
            for _ in range(warmup):
                models[name](inputs[name])
        for index in range(rounds):
            order = names[index % len(names):] + names[:index % len(names)]
            for name in order:
                start = time.perf_counter()
                models[name](inputs[name])
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="s0,s1,s2,l")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds at batch 1 (fewer at larger batches)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to build)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {machine_line()}")
    print("| model | batch | eager ms | fused ms | fused+CL ms | compiled ms | fused x | fused+CL x | compiled x |")
    print("|---|---|---|---|---|---|---|---|---|")
    for variant in args.variants.split(","):
        model = efficientformer.create_model(variant).eval()
        for batch in (int(b) for b in args.batches.split(",")):
            x = torch.randn(batch, 3, *model.config.img_size)
            models = {"eager": model, "fused": efficientformer.fuse(model),
                      "fused_cl": efficientformer.fuse(model, channels_last=True)}
            inputs = {"eager": x, "fused": x, "fused_cl": x.contiguous(memory_format=torch.channels_last)}
            if not args.no_compile:
                models["compiled"] = efficientformer.fuse(model, channels_last=True, compile=True)
                inputs["compiled"] = inputs["fused_cl"]
            rounds = max(5, args.rounds // batch if batch > 1 else args.rounds)
            times = time_models(models, inputs, rounds=rounds, warmup=3)
            median = {name: statistics.median(values) for name, values in times.items()}
            cells = [f"{median[n]:.2f} (p90 {percentile(times[n], 0.9):.2f})" if n in median else "-"
                     for n in ("eager", "fused", "fused_cl", "compiled")]
            ratios = [f"{median['eager'] / median[n]:.2f}" if n in median else "-"
                      for n in ("fused", "fused_cl", "compiled")]
            print(f"| {model.config.name} | {batch} | " + " | ".join(cells + ratios) + " |", flush=True)


if __name__ == "__main__":
    main()
