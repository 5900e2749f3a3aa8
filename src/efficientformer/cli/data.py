"""`efficientformer data check DIR_OR_LIST`: decode every image once, list the bad files (exit 1 if any)."""

from __future__ import annotations

import argparse
import os

from rich.markup import escape
from rich.table import Table

from efficientformer.cli import console, print_json
from efficientformer.data.verify import verify_images

HELP = "Inspect a data set: `data check DIR_OR_LIST` decodes every image and lists bad files."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", title="actions", required=True)
    check = actions.add_parser(
        "check", help="decode every image once; print classes, images per class and bad files with reasons",
        description="Decode every image of a folder of class folders (one subfolder per class) or a list "
                    "file of path,label lines, and list every file that does not decode, with the reason "
                    "(empty, missing, unreadable, truncated, corrupt, oversized). Exit code 1 when any file is bad.")
    check.add_argument("source", metavar="DIR_OR_LIST", help="image folder or path,label list file (.csv/.txt)")
    check.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                       help="decoding processes (default: CPU cores, at most 8; 0 = in this process)")
    check.add_argument("--json", action="store_true", help="print JSON instead of tables")
    check.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback on errors")
    check.set_defaults(action_run=_check)


def run(args: argparse.Namespace) -> int:
    return args.action_run(args)


def _check(args: argparse.Namespace) -> int:
    report = verify_images(args.source, workers=args.workers)
    if args.json:
        print_json(report.to_dict())
        return 0 if report.ok else 1
    console.print(f"[bold]{escape(report.source)}[/]: {report.num_images} images in {len(report.classes)} classes",
                  highlight=False, soft_wrap=True)
    classes = Table()
    classes.add_column("class")
    classes.add_column("images", justify="right")
    classes.add_column("bad", justify="right")
    for name, bad in report.bad_per_class().items():
        classes.add_row(escape(name), str(report.images_per_class[name]), str(bad) if bad else "")
    console.print(classes)
    if report.ok:
        console.print(f"[green]all {report.num_images} images decode[/]", highlight=False)
        return 0
    base = args.source if os.path.isdir(args.source) else os.path.dirname(args.source)
    plural = "s" if len(report.bad) != 1 else ""
    console.print(f"{len(report.bad)} bad file{plural} (paths relative to {escape(base or '.')}):", highlight=False,
                  soft_wrap=True)
    files = Table()
    files.add_column("file", overflow="fold")
    files.add_column("reason")
    files.add_column("detail", overflow="fold")
    for bad in report.bad:
        files.add_row(escape(_relative(bad.path, base)), bad.reason, escape(bad.detail))
    console.print(files)
    reasons = ", ".join(f"{count} {reason}" for reason, count in report.bad_per_reason().items())
    console.print(f"[red]{len(report.bad)} of {report.num_images} images are bad ({reasons})[/]", highlight=False)
    return 1


def _relative(path: str, base: str) -> str:
    """`path` relative to `base` when it lies inside it (shorter table rows), else unchanged."""
    relative = os.path.relpath(path, base or ".")
    return path if relative == os.pardir or relative.startswith(os.pardir + os.sep) else relative
