"""`efficientformer convert SRC DST`: rewrite a checkpoint in another key layout, bit-exactly."""

from __future__ import annotations

import argparse

from efficientformer.cli import console
from efficientformer.factory import convert_checkpoint
from efficientformer.weights.checkpoint import read_checkpoint
from efficientformer.weights.convert import LAYOUTS

HELP = "Convert a checkpoint between the official, timm and our (safetensors + config) layouts."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SRC", help="checkpoint to read (official .pth, timm or ours)")
    parser.add_argument("destination", metavar="DST", help="file to write")
    parser.add_argument("--to", choices=LAYOUTS, default="ours",
                        help="layout to write: ours (safetensors + config), timm (safetensors), official (.pth)")
    parser.add_argument("--model", default=None,
                        help="architecture, when SRC has no config and matches no registered model")


def run(args: argparse.Namespace) -> int:
    source_layout, destination_layout = convert_checkpoint(args.source, args.destination, to=args.to, model=args.model)
    count = len(read_checkpoint(args.destination).state_dict)
    console.print(f"{args.source} ({source_layout} layout) -> {args.destination} ({destination_layout} layout): "
                  f"{count} tensors", highlight=False, soft_wrap=True)
    return 0
