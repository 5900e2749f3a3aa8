"""S0 vs MobileNetV2 x1.0 in int8 on ExecuTorch (PT2E, XNNPACK) and onnxruntime (static QDQ), interleaved.

Both models are quantized the same way and calibrated on the same images (the built-in parity
images unless `--calib DIR`); each runtime's two int8 files are timed in one interleaved call.

    python benchmarks/int8_ratio.py --threads 1
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import torch

import efficientformer
from efficientformer.bench.timing import time_interleaved
from efficientformer.export import CalibrationWarning, quantize_executorch, quantize_onnx
from efficientformer.export.executorch import load_runner
from efficientformer.export.onnx import onnxruntime_session
from efficientformer.models.mobilenetv2 import create_mobilenetv2
from efficientformer.utils.machine import machine_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calib", default=None, help="calibration images (default: the built-in parity images)")
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {machine_line()}")
    models = {"S0": efficientformer.create_model("s0").eval(), "MNv2-1.0": create_mobilenetv2("mobilenetv2_100").eval()}
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)).numpy()
    calls: dict[str, dict[str, object]] = {"executorch": {}, "onnxruntime": {}}
    with tempfile.TemporaryDirectory() as directory, warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        for name, model in models.items():
            pte = quantize_executorch(model, Path(directory) / f"{name}.pte", img_size=224, calib=args.calib,
                                      check=False)
            run = load_runner(pte.path, num_threads=args.threads)
            calls["executorch"][name] = lambda run=run: run(x)
            onnx = quantize_onnx(model, Path(directory) / f"{name}.onnx", img_size=224, calib=args.calib, check=False)
            session = onnxruntime_session(onnx.path, num_threads=args.threads)
            feed = {session.get_inputs()[0].name: x}
            calls["onnxruntime"][name] = lambda session=session, feed=feed: session.run(None, feed)
        print("| runtime | threads | S0 int8 ms | MNv2-1.0 int8 ms | S0 / MNv2 |")
        print("|---|---|---|---|---|")
        for runtime, fns in calls.items():
            timings = time_interleaved(fns, warmup=5, repeats=args.repeats, progress=False)
            s0, mnv2 = timings["S0"].median_ms, timings["MNv2-1.0"].median_ms
            print(f"| {runtime} int8 | {args.threads} | {s0:.2f} | {mnv2:.2f} | {s0 / mnv2:.2f} |")


if __name__ == "__main__":
    main()
