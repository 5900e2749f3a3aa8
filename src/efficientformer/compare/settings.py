"""The comparison directory: its settings file and its runs folder, checked apart from written.

Under torchrun every process checks (reading only) and rank 0 alone writes, after all have checked:
a rank that checked after rank 0 had started writing would take the new runs folder for an old
comparison. A resume must match the stored settings; a fresh start needs a directory without runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from efficientformer.errors import ConfigError
from efficientformer.utils.io import write_json

RUNS_DIR = "runs"
SETTINGS_FILE = "compare_settings.json"


def check_output(output: Path, settings: dict[str, Any], resume: str | None) -> None:
    """Refuse `output` when a fresh start would mix two comparisons or a resume has other settings; writes nothing.

    Raises:
        ConfigError: names what differs, or says how to continue.
    """
    settings_path, runs = output / SETTINGS_FILE, output / RUNS_DIR
    if resume is None and runs.is_dir() and any(runs.iterdir()):
        raise ConfigError(f"{output} already holds a comparison: --resume auto continues it (finished models are not "
                          f"retrained), or choose another --output")
    if resume is not None and settings_path.is_file():
        changed = differences(json.loads(settings_path.read_text(encoding="utf-8")), _as_json(settings))
        if changed:
            raise ConfigError(f"{output} was started with other settings ({', '.join(changed)} differ, see "
                              f"{settings_path}); resume with the same ones or choose another --output")


def write_output(output: Path, settings: dict[str, Any]) -> None:
    """The runs folder and the settings file (rank 0 only, after `check_output` passed everywhere)."""
    (output / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    write_json(output / SETTINGS_FILE, _as_json(settings))


def differences(stored: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """The keys whose values differ, nested dicts key by key ('recipe.epochs')."""
    changed = []
    for key in sorted(set(stored) | set(now)):
        old, new = stored.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changed += differences(old, new, f"{prefix}{key}.")
        elif old != new:
            changed.append(f"{prefix}{key}")
    return changed


def _as_json(settings: dict[str, Any]) -> dict[str, Any]:
    """As JSON reads it back (tuples as lists), so that stored and current settings compare equal."""
    return json.loads(json.dumps(settings))


__all__ = ["RUNS_DIR", "SETTINGS_FILE", "check_output", "differences", "write_output"]
