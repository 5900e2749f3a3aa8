"""The one progress-bar style of the project (rich), quiet when output is not a terminal and CI is set."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

_console = Console(stderr=True)


def progress_bar(kind: str = "count", *, disable: bool | None = None) -> Progress:
    """A rich Progress for counting items (`kind="count"`) or bytes (`kind="bytes"`).

    Args:
        kind: "count" shows done/total; "bytes" shows size and transfer speed.
        disable: force the bar off/on; by default it is off when stderr is not a terminal.
    """
    if disable is None:
        disable = not sys.stderr.isatty() or bool(os.environ.get("EFFICIENTFORMER_NO_PROGRESS"))
    if kind == "bytes":
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), TimeRemainingColumn())
    elif kind == "count":
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    else:
        raise ValueError(f"progress_bar kind must be 'count' or 'bytes', got {kind!r}")
    return Progress(*columns, console=_console, disable=disable, transient=False)
