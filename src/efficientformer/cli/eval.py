"""`efficientformer eval`: top-1/top-5 of weights on a labelled dataset, per-class accuracy and confusion matrix."""

from __future__ import annotations

import argparse

from rich.markup import escape

from efficientformer.cli import console
from efficientformer.data.folder import BAD_IMAGE_POLICIES
from efficientformer.train.evaluate import run_eval

HELP = "Evaluate weights on a labelled dataset (default: the embedded digits validation split)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="checkpoint file (any layout) or weight tag")
    parser.add_argument("--data", default=None, help="labelled images: a folder of class folders or a path,label "
                                                     "list file; default: the embedded digits val split")
    parser.add_argument("--on-bad-image", choices=BAD_IMAGE_POLICIES, default="error",
                        help="stop at an unreadable image (error) or leave it out and list it (skip)")
    parser.add_argument("--model", default=None, help="architecture, when the checkpoint does not say")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", default="eval", help="folder for summary.json, per_class.csv, confusion.png")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    summary = run_eval(args.weights, data=args.data, model=args.model, batch_size=args.batch_size,
                       output=args.output, device=args.device, num_workers=args.workers,
                       on_bad_image=args.on_bad_image)
    console.print(f"top-1 {summary['top1']:.2f}%  top-5 {summary['top5']:.2f}%  on {summary['images']} images "
                  f"({summary['data']}); per-class results in {summary['output']}", highlight=False, soft_wrap=True)
    if summary["skipped"]:
        console.print(f"[yellow]left out {len(summary['skipped'])} unreadable image(s)[/]: "
                      + escape(", ".join(summary["skipped"][:10])) + (" ..." if len(summary["skipped"]) > 10 else ""),
                      highlight=False, soft_wrap=True)
    return 0
