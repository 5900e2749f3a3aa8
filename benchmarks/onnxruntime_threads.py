"""Bare onnxruntime sessions (no other runtime loaded, torch idle): S0 and MobileNetV2 at 1 and 2 threads.

Each setting times both models interleaved; with 2 threads also with the pool's spinning turned off
(`session.intra_op.allow_spinning=0`), which decides whether the worker busy-waits between ops.

    python benchmarks/onnxruntime_threads.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnxruntime as ort
import torch

import efficientformer
from efficientformer.bench.timing import time_interleaved
from efficientformer.export.onnx import export_onnx
from efficientformer.models.mobilenetv2 import create_mobilenetv2
from efficientformer.utils.machine import machine_line

SETTINGS = ((1, "1"), (2, "1"), (2, "0"))  # (intra-op threads, allow_spinning)


def session_call(path: Path, image, threads: int, spinning: str):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: image}
    return lambda: session.run(None, feed)


def main() -> None:
    print(f"# {machine_line()}")
    image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)).numpy()
    with tempfile.TemporaryDirectory() as directory:
        models = {"S0": efficientformer.create_model("s0").eval(), "MNv2": create_mobilenetv2("mobilenetv2_100").eval()}
        paths = {name: export_onnx(model, Path(directory) / f"{name}.onnx", img_size=224, dynamic_batch=False).path
                 for name, model in models.items()}
        print("| threads | spinning | S0 ms | MNv2 ms | S0 / MNv2 |")
        print("|---|---|---|---|---|")
        for threads, spinning in SETTINGS:
            calls = {name: session_call(path, image, threads, spinning) for name, path in paths.items()}
            timings = time_interleaved(calls, warmup=10, repeats=100, progress=False)
            s0, mnv2 = timings["S0"].median_ms, timings["MNv2"].median_ms
            print(f"| {threads} | {spinning} | {s0:.2f} | {mnv2:.2f} | {s0 / mnv2:.2f} |")


if __name__ == "__main__":
    main()
