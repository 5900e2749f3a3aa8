"""`efficientformer bench`: latency, throughput, params, MACs and MES of our models and MobileNetV2, per runtime."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from efficientformer.bench.mes import PAPER_MES
from efficientformer.bench.report import bench_table, markdown_table, write_report
from efficientformer.bench.run import DEFAULT_MODELS, REFERENCE_MODEL, BenchConfig, run_bench
from efficientformer.bench.runtimes import DEFAULT_RUNTIMES, RUNTIMES
from efficientformer.cli import console, print_json, warn
from efficientformer.cli.info import image_size
from efficientformer.models.fuse import APPROXIMATIONS

HELP = ("Time models on runtimes (torch, onnxruntime, executorch, openvino): params, MACs, latency, "
        "throughput, MES vs MobileNetV2, logit error vs eager; writes bench.csv/json/png.")


def comma_list(text: str) -> tuple[str, ...]:
    """A comma-separated list of names (empty parts dropped); argparse `type=` of --models, --runtime, ..."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return names


def _batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LATENCY[,THROUGHPUT] batch sizes, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected one or two positive batch sizes, got {text!r}")
    return values


def _thread_counts(text: str) -> tuple[int, ...]:
    counts = []
    for part in text.split(","):
        part = part.strip()
        try:
            counts.append(os.cpu_count() or 1 if part == "all" else int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected thread counts like 1,2 or 'all', got {text!r}") from None
    if min(counts) < 1:
        raise argparse.ArgumentTypeError(f"thread counts must be >= 1, got {text!r}")
    return tuple(counts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=comma_list, default=DEFAULT_MODELS,
                        help=f"comma-separated registry names, aliases, config JSON files or "
                             f"mobilenetv2_100/_140 (default {','.join(DEFAULT_MODELS)})")
    parser.add_argument("--runtime", "--runtimes", dest="runtimes", type=comma_list, default=None,
                        help=f"comma-separated, from {','.join(RUNTIMES)} (default "
                             f"{','.join(DEFAULT_RUNTIMES)}, those installed)")
    parser.add_argument("--batch", type=_batches, default=(1, 16),
                        help="latency batch and optional throughput batch, LATENCY[,THROUGHPUT] (default 1,16)")
    parser.add_argument("--img-size", type=image_size, default=(224, 224), help="input size N or HxW (default 224)")
    parser.add_argument("--threads", type=_thread_counts, default=None,
                        help="intra-op threads: N, a list N,M or 'all' (default 1,all: each runtime at 1 thread "
                             "and at every core, the faster marked *)")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                        help="measure each runtime and thread count in a fresh subprocess (default on)")
    parser.add_argument("--approximate", type=comma_list, default=(),
                        help=f"opt-in approximations of the fused models, comma-separated from "
                             f"{','.join(APPROXIMATIONS)} (default none: exact)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per model first (default 3)")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds at the latency batch (default 20)")
    parser.add_argument("--throughput-repeats", type=int, default=None,
                        help="timed rounds at the throughput batch (default max(3, repeats/4))")
    parser.add_argument("--reference", default=REFERENCE_MODEL,
                        help=f"model the relative MES is computed against (default {REFERENCE_MODEL})")
    parser.add_argument("--latency-unit-ms", type=float, default=PAPER_MES.latency_unit_ms,
                        help="MES latency unit (default 1 ms, the paper's)")
    parser.add_argument("--params-unit", type=float, default=PAPER_MES.params_unit,
                        help="MES parameter unit (default 3e6, the paper's)")
    parser.add_argument("--output", type=Path, default=Path("bench"),
                        help="directory for bench.csv, bench.json, bench.png (default ./bench)")
    parser.add_argument("--keep-exports", action="store_true", help="keep exported files in OUTPUT/exports")
    parser.add_argument("--markdown", action="store_true", help="also print the table as markdown")
    parser.add_argument("--json", action="store_true", help="print the JSON instead of the table")


def run(args: argparse.Namespace) -> int:
    config = BenchConfig(
        models=args.models, runtimes=args.runtimes, batch=args.batch[0],
        throughput_batch=args.batch[-1] if len(args.batch) > 1 else None, img_size=args.img_size,
        threads=args.threads, isolate=args.isolate, approximate=args.approximate, warmup=args.warmup,
        repeats=args.repeats, throughput_repeats=args.throughput_repeats,
        reference=args.reference,
        mes=dataclasses.replace(PAPER_MES, latency_unit_ms=args.latency_unit_ms, params_unit=args.params_unit),
        workdir=args.output / "exports" if args.keep_exports else None)
    # A full run takes many minutes: keep the files of the runtimes done so far up to date.
    result = run_bench(config, on_runtime_done=lambda partial: write_report(partial, args.output))
    for runtime, reason in result.skipped.items():
        warn(f"skipped {runtime}: {reason}")
    written = write_report(result, args.output)
    if args.json:
        print_json(result.to_dict())
        return 0
    console.print(bench_table(result))
    if args.markdown:
        console.print(markdown_table(result), highlight=False, soft_wrap=True, markup=False)
    if "png" not in written:
        warn("matplotlib is not installed: no bench.png (pip install 'efficientformer[demo]')")
    console.print("wrote " + ", ".join(str(path) for path in written.values()), highlight=False, soft_wrap=True)
    failed = [row for row in result.rows if row.error is not None]
    for row in failed:
        warn(f"{row.model} on {row.runtime} failed: {row.error}")
    return 1 if failed else 0
