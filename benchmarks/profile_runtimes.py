"""Where the time goes: S0 and MobileNetV2 side by side on onnxruntime, ExecuTorch and OpenVINO.

For each model the script exports the deployed (fused) graph the way `efficientformer export` does
and prints, per runtime:

- onnxruntime: the node types of the optimized graph at ORT_ENABLE_ALL (nchwc Conv, Reorder nodes,
  FusedMatMul, Gelu, Resize, ...) and the profiler's kernel time by op type and by block (the
  `name_scopes` the exporter writes into each node; nodes the runtime adds count as "(runtime)");
- ExecuTorch: the number of XNNPACK delegates, every op left outside one, and the time of each
  XNNPACK operator type from the runtime's event trace (ETDump);
- OpenVINO: the CPU plugin's per-layer counters (PERF_COUNT) by layer type and by kernel.

Per-op profilers slow a run down, so the shares matter, not the totals: latency belongs to
`efficientformer bench`. Run it on a quiet machine:

    python benchmarks/profile_runtimes.py                        # s0 vs mobilenetv2_100, 1 thread
    python benchmarks/profile_runtimes.py --models s1,mobilenetv2_140 --threads 2 --runtimes onnxruntime
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

import efficientformer
from efficientformer.export.onnx import export_onnx
from efficientformer.models.mobilenetv2 import create_mobilenetv2
from efficientformer.utils.machine import machine_line

RUNS = 50
IMG_SIZE = (224, 224)


def _block_of(scopes: list[str]) -> str:
    """'stages.2.blocks.4.token_mixer' -> 'stages.2.blocks.4'; 'stem.conv1' -> 'stem'."""
    names = [s for s in scopes if s]
    if not names:
        return "(graph)"
    deepest = names[-2] if len(names) > 1 else names[-1]
    parts = deepest.split(".")
    if parts[0] == "stages" and len(parts) >= 4:
        return ".".join(parts[:4])
    if parts[0] == "stages" and len(parts) >= 3:
        return ".".join(parts[:3])
    return parts[0]


def _table(title: str, counts: dict[str, dict[str, float]], unit: str) -> None:
    models = list(counts)
    keys = sorted({k for c in counts.values() for k in c}, key=lambda k: -max(c.get(k, 0) for c in counts.values()))
    totals = {m: sum(counts[m].values()) or 1.0 for m in models}
    print(f"\n{title}\n")
    print("| " + " | ".join(["what"] + [f"{m} {unit}" for m in models] + [f"{m} %" for m in models]) + " |")
    print("|" + "---|" * (1 + 2 * len(models)))
    for key in keys:
        values = [counts[m].get(key, 0.0) for m in models]
        print("| " + " | ".join([key] + [f"{v:.3g}" for v in values] +
                                [f"{100 * v / totals[m]:.1f}" for v, m in zip(values, models)]) + " |")
    print("| **total** | " + " | ".join(f"{totals[m]:.3g}" for m in models) + " | " + " | ".join("100" for _ in models)
          + " |")


def profile_onnxruntime(models: dict[str, torch.nn.Module], threads: int, workdir: Path) -> None:
    import onnx
    import onnxruntime as ort

    nodes: dict[str, dict[str, float]] = {}
    by_type: dict[str, dict[str, float]] = {}
    by_block: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        path = workdir / f"{name}.onnx"
        export_onnx(model, path, img_size=IMG_SIZE, dynamic_batch=False)
        scopes = {}  # node name and output names of the exported graph -> the module scopes of its node
        for node in onnx.load(str(path)).graph.node:
            meta = {p.key: p.value for p in node.metadata_props}
            scope = json.loads(meta.get("pkg.torch.onnx.name_scopes", "[]").replace("'", '"'))
            for key in (node.name, *node.output):
                scopes[key] = scope
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        options.optimized_model_filepath = str(workdir / f"{name}.opt.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath)
        nodes[name] = dict(collections.Counter(
            (f"{n.domain}." if n.domain else "") + n.op_type for n in optimized.graph.node))

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(workdir / f"{name}_profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(
            (1, 3, *IMG_SIZE), dtype=np.float32)}
        for _ in range(10):
            session.run(None, feed)
        profile = json.loads(Path(session.end_profiling()).read_text())
        types: dict[str, float] = collections.defaultdict(float)
        blocks: dict[str, float] = collections.defaultdict(float)
        # Time only the last RUNS runs: warm-up runs (allocations) sit at the start of the file.
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(RUNS):
            session.run(None, feed)
        profile = json.loads(Path(session.end_profiling()).read_text())
        for event in profile:
            if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
                continue
            node_name = event["name"][: -len("_kernel_time")]
            ms = event["dur"] / 1000.0 / RUNS
            types[event["args"].get("op_name", "?")] += ms
            # onnxruntime renames the nodes it replaces: "conv2d_3_nchwc" for the node writing "conv2d_3".
            candidates = (node_name, node_name.removesuffix("_nchwc"), node_name.split("/")[-1])
            scope = next((scopes[c] for c in candidates if c in scopes), None)
            blocks["(added by onnxruntime)" if scope is None else _block_of(scope)] += ms
        by_type[name], by_block[name] = dict(types), dict(blocks)
    _table("onnxruntime: nodes of the optimized graph (ORT_ENABLE_ALL)", nodes, "nodes")
    _table(f"onnxruntime: kernel time by op type, ms per run ({threads} threads, profiler on)", by_type, "ms")
    _table("onnxruntime: kernel time by block, ms per run", by_block, "ms")


def _xnnpack_op_times(program: bytes, threads: int, workdir: Path, name: str) -> dict[str, float]:
    """Median ms per run of every XNNPACK op type in `program`, from ExecuTorch's ETDump event trace.

    The pip wheel records one event per XNNPACK operator inside the delegate ("GELU (NC) #3"); the
    number is dropped to sum by type. The loaded program reads `program` in place: keep it referenced.
    """
    from executorch.devtools import Inspector
    from executorch.extension.pybindings import portable_lib

    portable_lib._unsafe_reset_threadpool(threads)
    module = portable_lib._load_for_executorch_from_buffer(program, enable_etdump=True, debug_buffer_size=0)
    x = torch.randn(1, 3, *IMG_SIZE)
    for _ in range(RUNS):
        module.forward([x])
    trace = workdir / f"{name}.etdp"
    module.write_etdump_result_to_file(str(trace))
    frame = Inspector(etdump_path=str(trace)).to_dataframe()
    times: dict[str, float] = collections.defaultdict(float)
    for event, p50 in zip(frame["event_name"], frame["p50 (ms)"]):
        if event in ("DELEGATE_CALL", "Method::execute", "Method::init", "Program::load_method"):
            continue  # wrappers around the ops, and load-time events
        times[re.sub(r" #\d+$", "", event)] += float(p50)
    return dict(times)


def profile_executorch(models: dict[str, torch.nn.Module], threads: int, workdir: Path) -> None:
    from executorch.devtools.backend_debug import get_delegation_info

    from efficientformer.export import executorch as et

    summary: dict[str, dict[str, float]] = {}
    op_times: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        edge = et.partition(et.capture(et.inference_module(model), IMG_SIZE))
        info = get_delegation_info(edge.exported_program().graph_module)
        outside = {f"outside: {op}": float(row.non_delegated)
                   for op, row in info.delegation_by_operator.items() if row.non_delegated}
        summary[name] = {"XNNPACK delegates": float(info.num_delegated_subgraphs),
                         "ops delegated": float(info.num_delegated_nodes),
                         "ops outside a delegate": float(info.num_non_delegated_nodes), **outside}
        with et.quiet_executorch():
            program = edge.to_executorch().buffer
            op_times[name] = _xnnpack_op_times(program, threads, workdir, name)
    _table("ExecuTorch: delegation (XNNPACK)", summary, "count")
    _table(f"ExecuTorch: time by XNNPACK op, ms per run (median of {RUNS}, {threads} threads, ETDump on)",
           op_times, "ms")


def profile_openvino(models: dict[str, torch.nn.Module], threads: int, workdir: Path) -> None:
    import openvino as ov

    from efficientformer.export.openvino import export_openvino
    from efficientformer.utils.signals import preserved_signal_stack

    by_type: dict[str, dict[str, float]] = {}
    by_kernel: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        path = export_openvino(model, workdir / f"{name}.xml", img_size=IMG_SIZE, dynamic_batch=False).path
        core = ov.Core()
        with preserved_signal_stack():
            compiled = core.compile_model(core.read_model(str(path)), "CPU", {
                "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                "PERF_COUNT": True})
            request = compiled.create_infer_request()
        x = np.random.default_rng(0).standard_normal((1, 3, *IMG_SIZE), dtype=np.float32)
        types: dict[str, float] = collections.defaultdict(float)
        kernels: dict[str, float] = collections.defaultdict(float)
        for _ in range(10):
            request.infer({0: x})
        for _ in range(RUNS):
            request.infer({0: x})
            for layer in request.profiling_info:
                ms = layer.real_time.total_seconds() * 1000.0 / RUNS
                types[layer.node_type] += ms
                kernels[layer.exec_type] += ms
        by_type[name], by_kernel[name] = dict(types), dict(kernels)
    _table(f"OpenVINO: time by layer type, ms per run ({threads} threads, PERF_COUNT on)", by_type, "ms")
    _table("OpenVINO: time by kernel", by_kernel, "ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="s0,mobilenetv2_100")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runtimes", default="onnxruntime,executorch,openvino")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = {name: create_mobilenetv2(name).eval() if name.startswith("mobilenetv2")
              else efficientformer.create_model(name).eval() for name in args.models.split(",")}
    print(f"# {machine_line()}")
    print(f"# python benchmarks/profile_runtimes.py --models {args.models} --threads {args.threads} "
          f"--runtimes {args.runtimes}")
    with tempfile.TemporaryDirectory(prefix="efficientformer-profile-") as directory:
        workdir = Path(directory)
        for runtime in args.runtimes.split(","):
            if runtime == "onnxruntime":
                profile_onnxruntime(models, args.threads, workdir)
            elif runtime == "executorch":
                profile_executorch(models, args.threads, workdir)
            elif runtime == "openvino":
                profile_openvino(models, args.threads, workdir)
            else:
                raise SystemExit(f"unknown runtime {runtime!r}: onnxruntime, executorch or openvino")


if __name__ == "__main__":
    main()
