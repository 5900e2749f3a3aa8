"""Inference latency of EfficientFormerV2: unfused eager vs fused vs fused channels-last vs torch.compile.

All models of a variant are timed in one process with interleaved repetitions (each round runs
every model once, in rotating order), so machine noise hits them alike. Prints median and p90
latency in ms and the speed-up of each over unfused eager.

    python benchmarks/inference.py                      # all variants, batch 1 and 32
    python benchmarks/inference.py --variants s0 --batches 1 --no-compile
"""

from __future__ import annotations

import argparse

import torch

import efficientformer
from efficientformer.bench.runtimes import torch_call
from efficientformer.bench.timing import time_interleaved
from efficientformer.utils.machine import machine_line


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
            timings = time_interleaved({name: torch_call(models[name], inputs[name]) for name in models},
                                       warmup=3, repeats=rounds, description=f"{variant} batch {batch}")
            median = {name: timing.median_ms for name, timing in timings.items()}
            cells = [f"{median[n]:.2f} (p90 {timings[n].p90_ms:.2f})" if n in median else "-"
                     for n in ("eager", "fused", "fused_cl", "compiled")]
            ratios = [f"{median['eager'] / median[n]:.2f}" if n in median else "-"
                      for n in ("fused", "fused_cl", "compiled")]
            print(f"| {model.config.name} | {batch} | " + " | ".join(cells + ratios) + " |", flush=True)


if __name__ == "__main__":
    main()
