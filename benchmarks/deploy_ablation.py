"""Ablation of the deployed-graph rewrites: S0 (each variant) and MobileNetV2 x1.0, per runtime, interleaved.

Each runtime's variants and the reference model are timed in one `time_interleaved` call, so noise
hits them alike; the last column is S0 / MobileNetV2 on the same runtime, threads and batch 1.

Variants:
- onnxruntime: `rewrite=False` (the graph as torch exports it) vs the exact rewrites of
  export/onnx_rewrites.py (default), and the opt-in tanh-GELU approximation;
- executorch: the channels-last copies in front of the stride-attention upsample left in the
  exported graph (before; they split the graph into 3 XNNPACK delegates) vs the default (1 delegate);
- openvino: the default graph, and the opt-in tanh-GELU approximation.

`--clock cpu` times with the process's CPU time, which leaves out time other processes hold the
cores (valid at `--threads 1` only, where no runtime has spinning helper threads); the default is
wall time. Run it on a quiet machine:

    python benchmarks/deploy_ablation.py --threads 1
    python benchmarks/deploy_ablation.py --threads 2 --runtimes onnxruntime,executorch
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

import efficientformer
from efficientformer.bench.timing import time_interleaved
from efficientformer.models.mobilenetv2 import create_mobilenetv2
from efficientformer.utils.machine import machine_line

IMG = (224, 224)


def _images() -> np.ndarray:
    return torch.randn(1, 3, *IMG, generator=torch.Generator().manual_seed(0)).numpy()


def onnxruntime_variants(s0, mnv2, threads: int, workdir: Path) -> dict[str, object]:
    from efficientformer.export.onnx import export_onnx, onnxruntime_session

    def runner(model, name, **options):
        path = export_onnx(model, workdir / f"{name}.onnx", img_size=IMG, dynamic_batch=False, **options).path
        session = onnxruntime_session(path, num_threads=threads)
        feed = {session.get_inputs()[0].name: _images()}
        return lambda: session.run(None, feed)

    return {"S0 as exported (rewrite=False)": runner(s0, "s0_plain", rewrite=False),
            "S0 exact rewrites (default)": runner(s0, "s0"),
            "S0 + tanh-GELU (approximate)": runner(s0, "s0_tanh", approximate=("gelu-tanh",)),
            "MobileNetV2 x1.0": runner(mnv2, "mnv2")}


def executorch_variants(s0, mnv2, threads: int, workdir: Path) -> dict[str, object]:
    from efficientformer.export.executorch import export_executorch, load_runner

    def runner(model, name):
        export = export_executorch(model, workdir / f"{name}.pte", img_size=IMG)
        run = load_runner(export.path, num_threads=threads)
        x = _images()
        print(f"  {name}: {export.num_delegates} XNNPACK delegate(s)")
        return lambda: run(x)

    with mock.patch("torch.compiler.is_exporting", return_value=False):  # the channels-last copies stay in
        before = runner(s0, "s0_channels_last_copies")
    return {"S0 channels-last copies kept (before)": before, "S0 default": runner(s0, "s0"),
            "MobileNetV2 x1.0": runner(mnv2, "mnv2")}


def openvino_variants(s0, mnv2, threads: int, workdir: Path) -> dict[str, object]:
    from efficientformer.export.openvino import export_openvino, load_runner

    def runner(model, name, **options):
        export = export_openvino(model, workdir / f"{name}.xml", img_size=IMG, dynamic_batch=False, **options)
        run = load_runner(export.path, num_threads=threads)
        x = _images()
        return lambda: run(x)

    return {"S0 default": runner(s0, "s0"), "S0 + tanh-GELU (approximate)": runner(s0, "s0_tanh",
                                                                                 approximate=("gelu-tanh",)),
            "MobileNetV2 x1.0": runner(mnv2, "mnv2")}


VARIANTS = {"onnxruntime": onnxruntime_variants, "executorch": executorch_variants, "openvino": openvino_variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runtimes", default=",".join(VARIANTS))
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args()
    if args.clock == "cpu" and args.threads != 1:
        raise SystemExit("--clock cpu needs --threads 1")
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    s0 = efficientformer.create_model("s0").eval()
    mnv2 = create_mobilenetv2("mobilenetv2_100").eval()
    print(f"# {machine_line()}")
    print(f"# python benchmarks/deploy_ablation.py --threads {args.threads} --runtimes {args.runtimes} "
          f"--repeats {args.repeats} --clock {args.clock}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="efficientformer-ablation-") as directory:
        for runtime in args.runtimes.split(","):
            calls = VARIANTS[runtime](s0, mnv2, args.threads, Path(directory))
            timings = time_interleaved(calls, warmup=5, repeats=args.repeats, clock=clock, description=runtime)
            reference = timings["MobileNetV2 x1.0"].median_ms
            for name, timing in timings.items():
                rows.append((runtime, name, timing.median_ms, timing.p90_ms, timing.median_ms / reference))
    print("\n| runtime | variant | median ms | p90 ms | / MobileNetV2 x1.0 |")
    print("|---|---|---|---|---|")
    for runtime, name, median, p90, ratio in rows:
        print(f"| {runtime} | {name} | {median:.2f} | {p90:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
