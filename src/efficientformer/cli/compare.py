"""`efficientformer compare`: train several models with one recipe on one dataset, time them on one runtime."""

from __future__ import annotations

import argparse
import dataclasses

from rich.markup import escape

from efficientformer.bench.mes import PAPER_MES
from efficientformer.bench.run import REFERENCE_MODEL
from efficientformer.bench.runtimes import RUNTIMES
from efficientformer.cli import console, print_json, warn
from efficientformer.cli import train as train_cli
from efficientformer.cli.bench import comma_list
from efficientformer.compare.report import markdown_table, write_report
from efficientformer.compare.run import DEFAULT_MODELS, CompareConfig, run_compare
from efficientformer.errors import ConfigError

HELP = ("Train models with one recipe on one dataset (default: S0 vs MobileNetV2 on the embedded digits), time "
        "them on a runtime; writes compare.csv/json/png.")

# Train flags that mean nothing here: every model is built from --models and trains to the end.
_NOT_HERE = ("model", "max_steps")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=comma_list, default=DEFAULT_MODELS,
                        help=f"comma-separated registry names, aliases, config JSON files (e.g. a search's "
                             f"found.json) or mobilenetv2_100/_140 (default {','.join(DEFAULT_MODELS)})")
    train_cli.add_arguments(parser, help_overrides={
        **dict.fromkeys(_NOT_HERE, argparse.SUPPRESS),
        "output": "comparison directory: compare.csv/json/png and runs/<model>_seed<N>/ (default %(default)s)",
        "resume": "'auto': continue the comparison in --output (finished models are not retrained, a killed run "
                  "continues from its newest state)",
        "seed": "the first run's seed (default: the recipe's); --seeds N runs seed, seed+1, ...",
        "pretrained": "'all': every model starts from its published weights (the zoo's; a model without any stops "
                      "the comparison before training, naming it); 'available': those that have them, the others "
                      "from scratch (named, and in the table's start column); default: all from scratch",
    })
    parser.set_defaults(output="compare", model=None)
    parser.add_argument("--seeds", type=int, default=1,
                        help="runs per model with consecutive seeds; the table shows mean and min-max accuracy "
                             "(default %(default)s)")
    parser.add_argument("--runtime", default="auto", choices=("auto", *RUNTIMES),
                        help="where latency is measured (default auto: onnxruntime when installed, else "
                             "torch-fused)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads while timing (default 1)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per model first (default 3)")
    parser.add_argument("--repeats", type=int, default=20, help="timed interleaved rounds (default 20)")
    parser.add_argument("--reference", default=REFERENCE_MODEL,
                        help=f"model the relative MES is computed against, when compared (default {REFERENCE_MODEL})")
    parser.add_argument("--latency-unit-ms", type=float, default=PAPER_MES.latency_unit_ms,
                        help="MES latency unit (default 1 ms, the paper's)")
    parser.add_argument("--json", action="store_true", help="print the JSON instead of the table")


def run(args: argparse.Namespace) -> int:
    given = [f"--{name.replace('_', '-')}" for name in _NOT_HERE if getattr(args, name) is not None]
    if given:
        raise ConfigError(f"compare takes no {', '.join(given)}: the models come from --models and every run "
                          f"trains to the recipe's last epoch")
    config = CompareConfig(
        models=args.models, output=args.output, data=args.data, val_data=args.val_data, val_split=args.val_split,
        on_bad_image=args.on_bad_image, recipe=train_cli.recipe_from_args(args), pretrained=args.pretrained,
        seeds=args.seeds,
        runtime=args.runtime, threads=args.threads, warmup=args.warmup, repeats=args.repeats,
        mes=dataclasses.replace(PAPER_MES, latency_unit_ms=args.latency_unit_ms), reference=args.reference,
        resume=args.resume, device=args.device, num_workers=args.workers, teacher=args.teacher,
        checkpoint_every=args.checkpoint_every, keep_last=args.keep_last)
    result = run_compare(config)
    if not result.is_main:  # under torchrun rank 0 alone writes and prints
        return 0
    written = write_report(result, args.output)
    if args.json:
        print_json(result.to_dict())
    else:
        console.print(markdown_table(result), highlight=False, soft_wrap=True, markup=False)
        if "png" not in written:
            warn("matplotlib is not installed, or no model has both accuracy and latency: no compare.png "
                 "(pip install 'efficientformer[demo]')")
        console.print("wrote " + ", ".join(escape(str(path)) for path in written.values()), highlight=False,
                      soft_wrap=True)
    for row in result.rows:
        if row.error:
            warn(f"{row.model}: {row.error}")
    return 1 if any(row.error for row in result.rows) else 0
