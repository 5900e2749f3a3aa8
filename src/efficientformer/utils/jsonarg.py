"""The one rule for a JSON argument (a model config, a search space): JSON text, or the path of a JSON file.

Text whose first non-blank character is "{" is JSON text; anything else is a path. Model configs
(`models.config`, `models.spec`) and search spaces (`search.space`) read their JSON through here, so
the rule and its errors are the same for each; the full rule for a model argument (names, aliases,
checkpoints, weight tags) is `factory.classify_argument` (docs/architecture.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from efficientformer.errors import BadFileError, ConfigError, MissingFileError


def is_json_text(value: str | os.PathLike) -> bool:
    """JSON text (a "{...}" object), as opposed to a path or a name."""
    return str(value).lstrip().startswith("{")


def looks_like_path(value: str | os.PathLike, suffixes: tuple[str, ...] = ()) -> bool:
    """A value meant as a path, not a name: it ends in .json or one of `suffixes`, or has a directory part.

    Such a value must name an existing file; a bare value ("s0", "tiny") is tried as a name first.
    """
    text = str(value)
    return text.endswith((".json", *suffixes)) or "/" in text or os.sep in text


def read_json_argument(value: str | os.PathLike, what: str) -> tuple[Any, Path | None]:
    """(the parsed JSON, the file it came from or None for JSON text); errors name the file or quote the text.

    Invalid JSON text is a `ConfigError`; a file that cannot be read a `MissingFileError`, one that is
    not JSON a `BadFileError`. `what` names the thing in messages ("model config", "search space").
    """
    text = str(value)
    if is_json_text(text):
        try:
            return json.loads(text), None
        except ValueError as error:
            raise ConfigError(f"the {what} is not valid JSON ({error}): {text[:80]!r}") from None
    path = Path(value)
    try:
        return json.loads(path.read_text(encoding="utf-8")), path
    except OSError as error:
        raise MissingFileError(f"cannot read {what} {path}: {error}") from error
    except ValueError as error:
        raise BadFileError(f"invalid {what} in {path}: {error}") from error


__all__ = ["is_json_text", "looks_like_path", "read_json_argument"]
