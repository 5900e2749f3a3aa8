"""The CLI shows the library's log records on stdout while a command runs, and only then."""

from __future__ import annotations

import logging

from efficientformer.cli import library_logging


def test_records_print_as_plain_lines_while_a_command_runs(capsys):
    package = logging.getLogger("efficientformer")
    before = (list(package.handlers), package.level)
    child = logging.getLogger("efficientformer.train.job")
    with library_logging():
        child.info("matplotlib is not installed: no curves.png")
        child.warning("skipped 1 unreadable image(s) in [red]epoch 1[/]")  # markup in a path is shown as it is
        child.debug("not shown")
    child.info("after the command: not on the CLI's console")
    out = capsys.readouterr().out
    assert out.splitlines() == ["matplotlib is not installed: no curves.png",
                                "warning: skipped 1 unreadable image(s) in [red]epoch 1[/]"]
    assert (list(package.handlers), package.level) == before


def test_long_lines_are_not_wrapped(capsys):
    path = "/a/very/long/path/" + "x" * 300 + ".png"
    with library_logging():
        logging.getLogger("efficientformer.train.job").warning("skipped 1 unreadable image(s):\n  %s", path)
    assert capsys.readouterr().out.splitlines() == ["warning: skipped 1 unreadable image(s):", f"  {path}"]
