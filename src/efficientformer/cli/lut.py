"""`efficientformer lut`: measure the latency lookup table of a search space on this machine, optionally validated."""

from __future__ import annotations

import argparse

from rich.table import Table

from efficientformer.cli import console, err_console, print_json
from efficientformer.search.lut import build_lut
from efficientformer.search.lut_validate import (
    TOLERANCE,
    accuracy_report,
    calibrate,
    calibration_configs,
    calibration_line,
    share_line,
    summary_line,
    validate_lut,
    validation_configs,
)
from efficientformer.search.runtimes import CLOCKS, RUNTIMES
from efficientformer.search.space import SPACES, get_space

HELP = "Measure a per-block latency lookup table on this machine (resumable); --validate checks it end to end."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime", default="torch-fused", choices=RUNTIMES, help="runtime to measure on")
    parser.add_argument("--img-size", type=int, default=224, help="input resolution (square)")
    parser.add_argument("--space", default="efficientformerv2",
                        help=f"search space: {', '.join(SPACES)} or a SearchSpace JSON file")
    parser.add_argument("--num-classes", type=int, default=None, help="classes of the head entries "
                                                                      "(default: the space's)")
    parser.add_argument("--output", default=None, help="JSON file (default lut_<space>_<runtime>_<size>.json); "
                                                       "an existing partial file is resumed")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls per entry")
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per entry (median kept)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads")
    parser.add_argument("--clock", default="cpu", choices=sorted(CLOCKS),
                        help="cpu: calling thread's CPU time (robust under load, 1 thread); wall: perf_counter")
    parser.add_argument("--calibrate", type=int, default=20, metavar="N",
                        help="fit the prediction's terms (scale, cold weights per M params, per-network constant) on "
                             "N calibration subnets, never the validation ones (0: the plain sum)")
    parser.add_argument("--additivity", action="store_true",
                        help="in --validate, also re-time each network's entries in the networks' session")
    parser.add_argument("--validate", action="store_true",
                        help="measure S0/S1/S2/L (when in the space) and random subnets end to end")
    parser.add_argument("--random", type=int, default=4, metavar="N", help="random subnets in --validate")
    parser.add_argument("--worst", type=int, default=5, metavar="N",
                        help="in --validate, list the N networks with the largest |error|")
    parser.add_argument("--json", action="store_true", help="print the validation as JSON")


def run(args: argparse.Namespace) -> int:
    space = get_space(args.space).replace_base(img_size=(args.img_size, args.img_size))
    if args.num_classes is not None:
        space = space.replace_base(num_classes=args.num_classes)
    output = args.output or f"lut_{space.name}_{args.runtime}_{args.img_size}.json"
    table = build_lut(space, args.runtime, path=output, warmup=args.warmup, repeats=args.repeats,
                      threads=args.threads, clock=args.clock)
    say = err_console if args.json else console  # --json keeps stdout pure JSON
    say.print(f"{len(table.entries)} entries on {table.runtime} ({args.clock} clock, {args.threads} thread(s)) "
                  f"-> {output}", highlight=False)
    spent = table.header.get("build_s", {})
    if spent:
        say.print("build time (wall, all runs): " + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in
                                                              spent.items()), highlight=False)
    if args.calibrate and "calibration" not in table.header:
        terms = calibrate(table, calibration_configs(space, args.calibrate))
        table.save()
        say.print(f"calibrated on {args.calibrate} subnets: {calibration_line(terms)}", highlight=False)
    if not args.validate:
        return 0
    rows = validate_lut(table, validation_configs(space, args.random), with_entries=args.additivity)
    report = accuracy_report(rows, TOLERANCE, worst=args.worst)
    if args.json:
        print_json({"lut": output, "rows": [r.to_dict() for r in rows], "calibration": table.calibration,
                    "accuracy": report})
        return 0
    view = Table(title=f"{table.header['machine']} | {table.runtime} | {args.img_size} px | batch 1",
                 title_justify="left")
    columns = ["network", "sum of entries (ms)", "predicted (ms)", "measured median (ms)", "p90 (ms)", "error"]
    if args.additivity:
        columns += ["same-session sum (ms)", "additivity error"]
    for column in columns:
        view.add_column(column, justify="left" if column == "network" else "right")
    for row in rows:
        cells = [row.name, f"{row.sum_ms:.3f}", f"{row.predicted_ms:.3f}", f"{row.measured_ms:.3f}",
                 f"{row.measured_p90_ms:.3f}", f"{100 * row.error:+.1f}%"]
        if args.additivity:
            cells += [f"{row.session_sum_ms:.3f}", f"{100 * row.additivity_error:+.1f}%"]
        view.add_row(*cells)
    console.print(view)
    console.print(f"prediction: {summary_line(rows)}; {calibration_line(table.calibration)}", highlight=False)
    console.print(f"accuracy: {share_line(report)}", highlight=False)
    if report["worst"]:
        worst = Table(title=f"worst {len(report['worst'])} networks by |error|", title_justify="left")
        for column in ("network", "predicted (ms)", "measured (ms)", "error"):
            worst.add_column(column, justify="left" if column == "network" else "right")
        for item in report["worst"]:
            worst.add_row(item["name"], f"{item['predicted_ms']:.3f}", f"{item['measured_ms']:.3f}",
                          f"{100 * item['error']:+.1f}%")
        console.print(worst)
    if args.additivity:
        console.print(f"entries re-timed among the networks: {summary_line(rows, additivity=True)} (many interleaved "
                      f"callables evict each other's caches, which inflates short entries)", highlight=False)
    return 0
