"""`efficientformer train`: train a model; with no arguments, the embedded default run on the digits dataset."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping

from rich.markup import escape

from efficientformer.cli import console
from efficientformer.data.datasets import DEFAULT_VAL_SPLIT
from efficientformer.data.folder import BAD_IMAGE_POLICIES
from efficientformer.errors import ConfigError
from efficientformer.train.job import TrainJob, run_training
from efficientformer.train.recipes import RECIPES, TrainRecipe, get_recipe

HELP = "Train a model (no arguments: S0 on the embedded digits dataset, a few minutes on a CPU)."

# Recipe fields exposed as flags (--epochs, --batch-size, ...); any other goes through --set key=value.
_RECIPE_FLAGS = ("epochs", "batch_size", "lr_base", "weight_decay", "img_size", "warmup_epochs", "smoothing",
                 "seed", "amp", "clip_mode", "clip_grad")


def add_arguments(parser: argparse.ArgumentParser, help_overrides: Mapping[str, str] | None = None) -> None:
    """The train flags; `help_overrides` maps a flag's dest to its help text there (argparse.SUPPRESS hides it)."""
    overrides = dict(help_overrides or {})

    def add(*flags: str, **options) -> None:
        action = parser.add_argument(*flags, **options)
        action.help = overrides.pop(action.dest, action.help)

    add("--data", default=None, help="training images: a folder of class folders or a path,label "
                                     "list file; default: the embedded digits dataset")
    add("--val-data", default=None, help="validation images with the same classes (folder or list "
                                         "file); default: hold out --val-split of --data")
    add("--val-split", type=float, default=DEFAULT_VAL_SPLIT,
        help="share of each class of --data held out for validation when --val-data is not given "
             "(fixed by file name, the same for every seed; default %(default)s)")
    add("--on-bad-image", choices=BAD_IMAGE_POLICIES, default="error",
        help="an unreadable image stops the run naming it (error), or is dropped, counted and "
             "listed in skipped.txt (skip); default %(default)s")
    add("--model", default="efficientformerv2_s0", help="registry name, alias or config JSON")
    add("--recipe", default="default", choices=sorted(RECIPES), help="hyper-parameter recipe")
    add("--output", default="runs/default", help="run directory (everything is written there)")
    add("--pretrained", default=None, help="weight tag or checkpoint to start from")
    add("--teacher", default=None, help="distillation teacher: our checkpoint, TorchScript or "
                                        "torch.export file (paper recipes distil from RegNetY-16GF)")
    add("--resume", default=None, help="'auto' (newest state in --output) or a state file")
    add("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    add("--workers", type=int, default=0, help="data loading processes")
    add("--checkpoint-every", type=int, default=0, help="also save a state every N steps")
    add("--keep-last", type=int, default=2, help="resumable states to keep")
    add("--max-steps", type=int, default=None, help="stop after N optimiser steps (smoke runs)")
    fields = {f.name: f for f in dataclasses.fields(TrainRecipe)}
    for name in _RECIPE_FLAGS:
        kind = type(getattr(TrainRecipe(), name))
        add(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None,
            help=f"override the recipe's {fields[name].name}")
    add("--set", action="append", default=[], metavar="FIELD=VALUE",
        help="override any other recipe field (JSON value), e.g. --set mixup=0.2")
    if overrides:
        raise ValueError(f"help_overrides name no train flag: {', '.join(sorted(overrides))}")


def recipe_from_args(args: argparse.Namespace) -> TrainRecipe:
    """The --recipe with the recipe flags and every --set FIELD=VALUE applied (shared with `supernet train`)."""
    recipe = get_recipe(args.recipe)
    changes = _overrides(args)
    return recipe.replace(**changes) if changes else recipe


def _overrides(args: argparse.Namespace) -> dict:
    changes = {name: getattr(args, name) for name in _RECIPE_FLAGS if getattr(args, name) is not None}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects FIELD=VALUE, got {item!r}")
        try:
            changes[key] = json.loads(value)
        except json.JSONDecodeError:
            changes[key] = value
    return changes


def run(args: argparse.Namespace) -> int:
    recipe = recipe_from_args(args)
    job = TrainJob(output=args.output, data=args.data, val_data=args.val_data, val_split=args.val_split,
                   on_bad_image=args.on_bad_image, model=args.model, recipe=recipe, pretrained=args.pretrained,
                   teacher=args.teacher, resume=args.resume, device=args.device, num_workers=args.workers,
                   checkpoint_every=args.checkpoint_every, keep_last=args.keep_last, max_steps=args.max_steps)
    summary = run_training(job)
    if not summary["is_main"]:
        return 0
    if summary["skipped_images"]:
        console.print(f"[yellow]skipped {summary['skipped_images']} unreadable image(s)[/], listed in "
                      f"{escape(summary['run_dir'])}/skipped.txt", highlight=False, soft_wrap=True)
    if "top1" in summary:
        console.print(f"[bold]done[/]: epoch {summary['epoch']}, top-1 {summary['top1']:.2f}% "
                      f"(best {summary['best_top1']:.2f}%), top-5 {summary['top5']:.2f}% on the held-out split; "
                      f"run directory {summary['run_dir']}", highlight=False, soft_wrap=True)
    else:
        console.print(f"stopped after {summary['global_step']} steps; run directory {summary['run_dir']}",
                      highlight=False, soft_wrap=True)
    return 0
