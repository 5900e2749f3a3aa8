"""The errors that mean "what you gave is wrong or missing", as opposed to a bug in this package.

Every one derives from `UserError`; the command line prints a `UserError` as one red line and
exits 2, and anything else as a bug, with its traceback, exit 1. Each subclass also derives from the
builtin exception it replaced, so code written against the builtins keeps working:

    try:
        model = create_model(name)
    except ValueError:          # still catches the ConfigError and the UnknownNameError
        ...

This module imports nothing from the package, so every layer may raise these.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment (a name, value, file, installed package), not a bug.

    The message says what is wrong and names the bad value or file; it is the whole report.
    """

    def __str__(self) -> str:
        # One argument is the message as written (KeyError would otherwise show it in quotes).
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class ConfigError(UserError, ValueError):
    """A bad value: a config field, a command-line option, an argument out of range, JSON that is not a config."""


class UnknownNameError(ConfigError, KeyError):
    """A name not in its table (model, alias, weight tag, recipe, runtime, search space); the message lists them."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder that does not exist (an input, or the directory an output goes into)."""


class BadFileError(UserError, ValueError):
    """A file that exists but cannot be read as what it should be: corrupt, truncated, another format, bad content."""


class CheckpointError(BadFileError):
    """A checkpoint that cannot be read, is not ours to load, or does not fit the model it is loaded into."""


class ImageError(BadFileError):
    """An image that cannot be decoded or converted (unreadable, truncated, too large), or a mask that does not fit."""


class WriteError(UserError, OSError):
    """An output that cannot be written: the directory is read-only, or the disk is full."""


class MissingDependencyError(UserError, ImportError):
    """An optional package that is not installed; the message says which extra installs it."""


class UnavailableError(UserError, RuntimeError):
    """What was asked cannot run on this machine: a runtime of another platform, a backend the installed build lacks."""


class DownloadError(UserError, RuntimeError):
    """Weights could not be downloaded or verified: network or HTTP failure, a web page, a wrong sha256."""


__all__ = ["BadFileError", "CheckpointError", "ConfigError", "DownloadError", "ImageError", "MissingDependencyError",
           "MissingFileError", "UnavailableError", "UnknownNameError", "UserError", "WriteError"]
