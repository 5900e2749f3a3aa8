"""The `efficientformer` command line: a table of commands, each a thin module over a library call.

A command module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`; add it
to COMMANDS and it appears in `efficientformer -h`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import sys
import traceback
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.markup import escape

from efficientformer.errors import UserError

COMMANDS: dict[str, str] = {
    "list": "efficientformer.cli.list_models",
    "info": "efficientformer.cli.info",
    "convert": "efficientformer.cli.convert",
    "predict": "efficientformer.cli.predict",
    "train": "efficientformer.cli.train",
    "eval": "efficientformer.cli.eval",
    "segment": "efficientformer.cli.segment",
    "data": "efficientformer.cli.data",
    "export": "efficientformer.cli.export",
    "lut": "efficientformer.cli.lut",
    "search": "efficientformer.cli.search",
    "supernet": "efficientformer.cli.supernet",
    "bench": "efficientformer.cli.bench",
    "compare": "efficientformer.cli.compare",
}

# Exit codes: 0 done; 1 a command's negative result (parity failed, targets missed) or a bug; 2 bad usage or input.
EXIT_USER_ERROR = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130

# Piped output is read by people too (logs, CI): give tables room instead of the 80-column default.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)


def print_json(data: Any) -> None:
    """Write `data` to stdout as plain JSON (no colours or wrapping, safe to pipe)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def warn(message: str) -> None:
    """A yellow warning line on stderr."""
    err_console.print(f"[bold yellow]warning:[/] {escape(message)}", soft_wrap=True)


class ConsoleLogHandler(logging.Handler):
    """The library's log records as the CLI's own lines on stdout; warnings start with a yellow 'warning:'."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = escape(self.format(record))
            if record.levelno >= logging.WARNING:
                message = f"[bold yellow]warning:[/] {message}"
            console.print(message, soft_wrap=True, highlight=False)
        except Exception:  # noqa: BLE001 (logging's contract: a failing handler reports, never raises)
            self.handleError(record)


@contextlib.contextmanager
def library_logging(level: int = logging.INFO) -> Iterator[None]:
    """Show the `efficientformer` loggers' records from `level` up on the console while a command runs.

    The library itself only logs (it never prints), so a program that embeds it decides where the
    records go; the CLI is such a program, and removes its handler again when the command returns.
    """
    logger = logging.getLogger("efficientformer")
    handler, previous = ConsoleLogHandler(), logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per entry of COMMANDS."""
    from efficientformer import __version__

    parser = argparse.ArgumentParser(prog="efficientformer",
                                     description="EfficientFormerV2: model zoo, checkpoint conversion, inference.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = commands.add_parser(name, help=module.HELP, description=module.HELP, parents=[common])
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def report_bug(error: BaseException) -> None:
    """The traceback of an unexpected exception on stderr, and a line saying that it is a bug to report."""
    from efficientformer import __version__

    traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    err_console.print(f"[bold red]bug:[/] [red]{escape(type(error).__name__)} is not an error in what you gave: it "
                      f"is a bug in efficientformer {__version__}. Please report it to the project's issue tracker "
                      f"with the command line and the traceback above.[/]", soft_wrap=True, highlight=False)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the process exit code (see EXIT_*).

    A `UserError` (efficientformer.errors) is printed as one red line, exit code 2; any other
    exception is a bug: its traceback and a line asking for a report, exit code 1. `--debug`
    lets every exception propagate with its traceback.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USER_ERROR
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    try:
        with library_logging():
            return int(args.run(args) or 0)
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/]")
        return EXIT_INTERRUPTED
    except UserError as error:
        if args.debug:
            raise
        err_console.print(f"[bold red]error:[/] [red]{escape(str(error) or type(error).__name__)}[/]", soft_wrap=True)
        return EXIT_USER_ERROR
    except Exception as error:  # noqa: BLE001 (anything else is a bug: shown in full, never as a one-liner)
        if args.debug:
            raise
        report_bug(error)
        return EXIT_BUG


# What a program uses: `main(argv)` and its exit codes. The console helpers (console, err_console, warn,
# print_json, library_logging) are for the command modules.
__all__ = ["COMMANDS", "EXIT_BUG", "EXIT_INTERRUPTED", "EXIT_USER_ERROR", "build_parser", "main"]
