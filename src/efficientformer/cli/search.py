"""`efficientformer search`: the fine-grained joint search; with no arguments, the embedded default end to end."""

from __future__ import annotations

import argparse
import re

from rich.table import Table

from efficientformer.bench.mes import PAPER_MES, MESConstants
from efficientformer.cli import console
from efficientformer.search.run import SearchJob, run_search
from efficientformer.search.runtimes import CLOCKS, RUNTIMES
from efficientformer.search.space import SPACES

HELP = ("Search an architecture for a latency/params budget (no arguments: a small supernet, LUT and search on "
        "the embedded digits, ~15 min on 2 CPU cores).")

_SUFFIXES = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_count(text: str) -> float:
    """'3.5M' -> 3.5e6, '800k' -> 8e5, '1200000' -> 1.2e6."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kKmMgG]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a count like 3.5M, 800k or 1200000, got {text!r}")
    return float(match.group(1)) * _SUFFIXES[match.group(2).lower()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    job = SearchJob()
    parser.add_argument("--supernet", default=None, help="supernet file (save_supernet); default: train one")
    parser.add_argument("--lut", default=None, help="latency table for the supernet's space; default: build one")
    parser.add_argument("--data", default=None, help="training images (BN recalibration; supernet training); "
                                                     "default: the embedded digits")
    parser.add_argument("--val-data", default=None, help="held-out images (default: the split held out of --data)")
    parser.add_argument("--target", default=None,
                        help="budget = this model's latency and params, measured on the LUT's runtime in this run: "
                             "mobilenetv2_100, mobilenetv2_140, s0, a config JSON or a checkpoint")
    parser.add_argument("--target-latency-ms", type=float, default=None, help="latency budget (ms, on the LUT)")
    parser.add_argument("--target-params", type=parse_count, default=None, help="parameter budget, e.g. 3.5M")
    parser.add_argument("--relative-latency", type=float, default=job.relative_latency,
                        help="without targets: this fraction of the largest subnet's latency")
    parser.add_argument("--relative-params", type=float, default=job.relative_params,
                        help="without targets: this fraction of the largest subnet's parameters")
    parser.add_argument("--output", default=job.output, help="run directory (resumed when it exists)")
    parser.add_argument("--space", default=job.space, help=f"space of a trained supernet: {', '.join(SPACES)} "
                                                            f"or a JSON file")
    parser.add_argument("--img-size", type=int, default=job.img_size,
                        help="deployment resolution: latency table, parameters, target and measurements (default: "
                             "the supernet's, 64 for a trained one)")
    parser.add_argument("--train-img-size", type=int, default=job.train_img_size,
                        help="supernet training and accuracy resolution (default: --img-size; at most 64 on the "
                             "embedded 8x8 digits)")
    parser.add_argument("--lazy", type=int, default=job.lazy, metavar="K",
                        help=f"per step, evaluate only new actions and the K best by their last accuracy drop "
                             f"(default {job.lazy}; 0: every action, the paper's rule)")
    parser.add_argument("--stride", type=float, default=job.stride,
                        help=f"while a target is more than 1.5x away, a step takes the best actions together until "
                             f"the latency falls by this fraction (default {job.stride}; 0: one action per step)")
    parser.add_argument("--epochs", type=int, default=job.supernet_epochs,
                        help="supernet training epochs (default 6; 3 for the paper space on the embedded digits)")
    parser.add_argument("--eval-images", type=int, default=job.eval_images, help="held-out images per accuracy")
    parser.add_argument("--calib-images", type=int, default=job.calib_images,
                        help="training images per BN recalibration")
    parser.add_argument("--runtime", default=job.runtime, choices=RUNTIMES, help="runtime of a built LUT")
    parser.add_argument("--threads", type=int, default=job.threads, help="threads of a built LUT")
    parser.add_argument("--clock", default=job.clock, choices=sorted(CLOCKS), help="clock of a built LUT")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after N slimming steps")
    parser.add_argument("--device", default=job.device, help="device for supernet training and evaluation")
    parser.add_argument("--mes-params-unit", type=parse_count, default=PAPER_MES.params_unit,
                        help="MES parameter unit (paper: 3M)")
    parser.add_argument("--mes-latency-unit-ms", type=float, default=PAPER_MES.latency_unit_ms,
                        help="MES latency unit in ms (paper: 1 ms on its phone)")
    parser.add_argument("--mes-params-alpha", type=float, default=PAPER_MES.params_alpha, help="MES params importance")
    parser.add_argument("--mes-latency-alpha", type=float, default=PAPER_MES.latency_alpha,
                        help="MES latency importance")
    parser.add_argument("--mes-relative", action="store_true",
                        help="MES units = the reference subnet's params and latency (it scores 100)")
    parser.add_argument("--seed", type=int, default=job.seed)


def run(args: argparse.Namespace) -> int:
    mes = MESConstants(params_unit=args.mes_params_unit, latency_unit_ms=args.mes_latency_unit_ms,
                       params_alpha=args.mes_params_alpha, latency_alpha=args.mes_latency_alpha)
    job = SearchJob(output=args.output, supernet=args.supernet, lut=args.lut, data=args.data, val_data=args.val_data,
                    space=args.space, img_size=args.img_size, train_img_size=args.train_img_size,
                    supernet_epochs=args.epochs, lazy=args.lazy, stride=args.stride,
                    target=args.target, target_latency_ms=args.target_latency_ms, target_params=args.target_params,
                    relative_latency=args.relative_latency, relative_params=args.relative_params, mes=mes,
                    mes_relative=args.mes_relative, eval_images=args.eval_images, calib_images=args.calib_images,
                    runtime=args.runtime, threads=args.threads, clock=args.clock, max_steps=args.max_steps,
                    device=args.device, seed=args.seed)
    summary = run_search(job)
    targets = summary["targets"]
    view = Table(title=f"search on the {summary['space']} space: {summary['steps']} steps, {summary['stop_reason']}",
                 title_justify="left")
    for column in ("network", "params", "predicted ms", "measured ms", "MES (predicted)", "MES (measured)",
                   "accuracy (%)"):
        view.add_column(column, justify="left" if column == "network" else "right")

    def cell(value, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for row in summary["rows"]:
        view.add_row(row["name"], f"{row['params']:,}", cell(row["latency_ms"], ".3f"), cell(row["measured_ms"], ".3f"),
                     cell(row["mes"], ".1f"), cell(row["measured_mes"], ".1f"), cell(row["accuracy"], ".2f"))
    console.print(view)
    latency = "-" if targets["latency_ms"] is None else f"{targets['latency_ms']:.3f} ms"
    params = "-" if targets["params"] is None else f"{targets['params']:,.0f}"
    console.print(f"targets: latency {latency}, params {params} -> {'met' if summary['targets_met'] else 'NOT met'}",
                  highlight=False)
    if summary.get("target"):
        target = summary["target"]
        console.print(f"measured on {summary['lut_runtime']}: found {target['found_measured_ms']:.3f} ms vs "
                      f"{target['model']} {target['target_measured_ms']:.3f} ms, params {target['params']:,} -> "
                      f"{'met' if target['measured_met'] else 'NOT met'}", highlight=False)
    console.print(f"found architecture: {summary['found']}\ntrajectory: {summary['trajectory']}\n"
                  f"pareto plot: {summary['pareto']}\ntrain it: efficientformer train --model {summary['found']}",
                  highlight=False, soft_wrap=True)
    return 0 if summary["targets_met"] else 1
