"""`efficientformer list`: registered models and known pretrained weights."""

from __future__ import annotations

import argparse
import dataclasses
import urllib.parse

from rich.table import Table

from efficientformer.cli import console, print_json
from efficientformer.models import get_config, list_models
from efficientformer.models.summary import param_count
from efficientformer.weights.download import cache_dir, weights_path
from efficientformer.weights.zoo import list_weights

HELP = "List the models (with parameter counts) and the known pretrained weight tags."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def _weights_rows() -> list[dict]:
    return [{**dataclasses.asdict(entry), "cached": weights_path(entry).is_file()} for entry in list_weights()]


def run(args: argparse.Namespace) -> int:
    models = []
    for name in list_models():
        config = get_config(name)
        models.append({"name": name, "alias": name.removeprefix("efficientformerv2_"),
                       "params": param_count(config), "img_size": list(config.img_size),
                       "num_classes": config.num_classes})
    weights = _weights_rows()
    if args.json:
        print_json({"models": models, "weights": weights})
        return 0
    table = Table(title="Models (params with both heads, 1000 classes)")
    for column in ("name", "alias", "params", "img size"):
        table.add_column(column, justify="right" if column == "params" else "left")
    for row in models:
        table.add_row(row["name"], row["alias"], f"{row['params']:,}", "x".join(map(str, row["img_size"])))
    console.print(table)
    table = Table(title="Weights (use the tag with --weights or create_model(..., pretrained=TAG))")
    table.add_column("tag", no_wrap=True)
    table.add_column("layout", no_wrap=True)
    table.add_column("top1", justify="right", no_wrap=True)
    table.add_column("cached", no_wrap=True)
    table.add_column("host", no_wrap=True)
    for row in weights:
        top1 = row["top1"]
        table.add_row(row["tag"], row["layout"], "" if top1 is None else f"{top1:.2f}", "yes" if row["cached"] else "",
                      (urllib.parse.urlsplit(row["url"]).hostname or "").removeprefix("drive.usercontent."))
    console.print(table)
    console.print(f"Downloads are cached in {cache_dir() / 'weights'}; full URLs with --json.", style="dim",
                  highlight=False, soft_wrap=True)
    return 0
