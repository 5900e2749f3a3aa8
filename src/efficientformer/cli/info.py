"""`efficientformer info MODEL`: parameters, MACs and the per-stage layout of an architecture."""

from __future__ import annotations

import argparse

from rich.table import Table

from efficientformer.cli import console, print_json
from efficientformer.factory import resolve_config
from efficientformer.models.summary import HEAD_PART, model_summary

HELP = "Show a model's parameters, MACs and per-stage shapes (registry name, alias like s0, or config JSON)."


def image_size(text: str) -> tuple[int, int]:
    """'224' -> (224, 224); '256x192' -> (256, 192) (height x width)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW with positive sizes, got {text!r}")
    return (parts[0], parts[-1])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="registry name (efficientformerv2_s0), alias (s0) or a ModelConfig JSON file")
    parser.add_argument("--img-size", type=image_size, default=None, help="input size N or HxW (default: the config's)")
    parser.add_argument("--num-classes", type=int, default=None, help="classifier outputs (0 = no head)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    config = resolve_config(args.model)
    overrides = {}
    if args.img_size is not None:
        overrides["img_size"] = args.img_size
    if args.num_classes is not None:
        overrides["num_classes"] = args.num_classes
    summary = model_summary(config.replace(**overrides) if overrides else config)
    if args.json:
        print_json(summary.to_dict())
        return 0
    height, width = summary.img_size
    console.print(f"[bold]{summary.name}[/]  input {height}x{width}, {summary.num_classes} classes"
                  f"{', distillation head' if summary.distillation else ''}")
    console.print(f"params {summary.params:,} ({summary.mparams:.2f} M)   MACs {summary.macs:,} "
                  f"({summary.gmacs:.3f} G)")
    table = Table()
    for column in ("part", "depth", "width", "attn", "output", "params", "MMACs"):
        table.add_column(column, justify="left" if column in ("part", "output") else "right")
    table.add_row("stem", "", "", "", "", f"{summary.params_by_part['stem']:,}",
                  f"{summary.macs_by_part['stem'] / 1e6:.1f}")
    for stage in summary.stages:
        attn = str(stage.num_attn) + (" +down" if stage.down_attn else "")
        table.add_row(f"stage {stage.index + 1}", str(stage.depth), str(stage.width), attn,
                      "x".join(map(str, stage.output_shape[1:])), f"{stage.params:,}", f"{stage.macs / 1e6:.1f}")
    if HEAD_PART in summary.params_by_part or HEAD_PART in summary.macs_by_part:
        table.add_row("head", "", "", "", str(summary.num_classes), f"{summary.params_by_part.get(HEAD_PART, 0):,}",
                      f"{summary.macs_by_part.get(HEAD_PART, 0) / 1e6:.1f}")
    table.add_row("total", "", "", "", "", f"{summary.params:,}", f"{summary.macs / 1e6:.1f}", style="bold")
    console.print(table)
    console.print("MACs count convolutions, linears and matmuls (attention included); "
                  "BN, GELU, softmax and adds are not counted.", style="dim")
    return 0
