"""`efficientformer supernet train|extract`: train a search supernet (sandwich rule), or extract a subnet's weights."""

from __future__ import annotations

import argparse
import dataclasses

from rich.markup import escape

from efficientformer.cli import console
from efficientformer.cli import train as train_cli
from efficientformer.errors import ConfigError
from efficientformer.factory import resolve_config
from efficientformer.search.sandwich import SUPERNET_FILE, train_supernet
from efficientformer.search.space import SPACES, get_space
from efficientformer.search.supernet import load_supernet
from efficientformer.train.job import TrainJob
from efficientformer.weights.checkpoint import save_checkpoint

HELP = "Train a search supernet (sandwich rule, in-place distillation) or extract a subnet from one."

# TrainJob fields whose command-line name differs (the train command's flags are reused as they are).
_ARG_NAMES = {"num_workers": "workers"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    train = actions.add_parser("train", help="train a supernet; no arguments: the tiny space on the embedded "
                                             "digits", description="Train a supernet with the sandwich rule "
                                             "through the training job (data, DDP, resume, checkpoints).")
    train_cli.add_arguments(train, help_overrides={  # the train command's flags, as they read for a supernet
        "model": argparse.SUPPRESS, "teacher": argparse.SUPPRESS,
        "pretrained": "warm start: a checkpoint of a subnet of the space (e.g. the released L weights)",
        "output": "run directory (default %(default)s; the supernet is written to supernet.safetensors)"})
    train.set_defaults(output="runs/supernet", model=None, run_action=_train)
    train.add_argument("--space", default="tiny",
                       help=f"search space: {', '.join(SPACES)} or a SearchSpace JSON file (default %(default)s)")
    train.add_argument("--num-random", type=int, default=2,
                       help="random subnets per step besides the largest and smallest (default %(default)s)")
    train.add_argument("--no-distill", dest="distill", action="store_false",
                       help="train every subnet on the labels instead of the largest's soft outputs")

    extract = actions.add_parser("extract", help="write one subnet of a supernet as a plain model checkpoint")
    extract.add_argument("supernet", help=f"a supernet file ({SUPERNET_FILE} of a supernet run)")
    extract.add_argument("--model", required=True, help="the subnet: a ModelConfig JSON file or a registry name "
                                                        "(its classes and resolution follow the supernet)")
    extract.add_argument("--output", required=True, help="checkpoint to write (.safetensors)")
    extract.set_defaults(run_action=_extract)


def run(args: argparse.Namespace) -> int:
    return args.run_action(args)


def _train(args: argparse.Namespace) -> int:
    if args.model is not None:
        raise ConfigError("supernet train takes the architecture from --space, not --model")
    recipe = train_cli.recipe_from_args(args)
    fields = {f.name for f in dataclasses.fields(TrainJob)} - {"recipe", "model", "pretrained"}
    values = {name: getattr(args, _ARG_NAMES.get(name, name)) for name in fields
              if hasattr(args, _ARG_NAMES.get(name, name))}
    job = TrainJob(recipe=recipe, **values)
    summary = train_supernet(job, get_space(args.space), num_random=args.num_random, distill=args.distill,
                             warm_start=args.pretrained)
    if not summary["is_main"]:
        return 0
    where = escape(summary["supernet"])
    if "top1" in summary:
        console.print(f"[bold]done[/]: epoch {summary['epoch']}, largest subnet top-1 {summary['top1']:.2f}% on the "
                      f"held-out split; supernet {where}", highlight=False, soft_wrap=True)
    else:
        console.print(f"stopped after {summary['global_step']} steps; supernet {where}", highlight=False,
                      soft_wrap=True)
    return 0


def _extract(args: argparse.Namespace) -> int:
    supernet = load_supernet(args.supernet)
    config = supernet.adapt(resolve_config(args.model))
    model = supernet.extract(config)
    save_checkpoint(model, args.output)
    console.print(f"wrote {escape(str(args.output))}: {config.name}, "
                  f"{sum(p.numel() for p in model.parameters()):,} parameters (BN statistics: the supernet's; "
                  f"recalibrate or fine-tune before measuring accuracy)", highlight=False, soft_wrap=True)
    return 0
