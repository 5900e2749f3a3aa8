"""Training checkpoints that resume bit-exactly: model, optimiser, scaler, EMA, RNG states, position.

A state file is a plain dict of tensors and Python scalars written with `torch.save` through
`atomic_write` and read back with `weights_only=True`. Files are `state_e{epoch}_s{step}.pt` in the
run directory; `latest_state` finds the newest complete one, `prune_states` keeps the last K.
`TrainingState` names what a run saves, once, so that what is written and what is restored cannot
drift apart.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from efficientformer.errors import CheckpointError, WriteError
from efficientformer.utils.io import atomic_write

STATE_PATTERN = re.compile(r"^state_e(\d+)_s(\d+)\.pt$")


@dataclass
class Position:
    """Where a run is: `step` batches of `epoch` are done; `global_step` counts all optimiser steps."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0


def rng_state() -> dict[str, Any]:
    """Every RNG a training step may draw from (Python, NumPy, torch CPU and CUDA)."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    numpy_state = np.random.get_state()
    state["numpy"] = (numpy_state[0], torch.from_numpy(numpy_state[1].copy()), *numpy_state[2:])
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def check_run_dir(path: Path, needed_bytes: int) -> None:
    """Fail before training when the run directory cannot be written or the disk is nearly full."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        with atomic_write(probe) as handle:
            handle.write(b"ok")
        probe.unlink()
    except OSError as error:
        raise WriteError(f"cannot write to the run directory {path}: {error}") from None
    free = shutil.disk_usage(path).free
    if free < needed_bytes:
        raise WriteError(f"only {free / 2**20:.0f} MiB free under {path}; this run's checkpoints need about "
                         f"{needed_bytes / 2**20:.0f} MiB")


def state_path(run_dir: str | os.PathLike, position: Position) -> Path:
    return Path(run_dir) / f"state_e{position.epoch:04d}_s{position.step:06d}.pt"


def save_state(run_dir: str | os.PathLike, position: Position, payload: dict[str, Any]) -> Path:
    """Write `payload` (state dicts, metrics, ...) plus the RNG states and position, atomically."""
    path = state_path(run_dir, position)
    data = {**payload, "rng": rng_state(), "position": vars(position).copy()}
    with atomic_write(path) as handle:
        torch.save(data, handle)
    return path


def load_state(path: str | os.PathLike) -> tuple[Position, dict[str, Any]]:
    """Read a state file (safe: weights_only) and restore the RNG states; returns (position, payload)."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 (any unpickling failure means an unusable file)
        raise CheckpointError(f"cannot read training state {path}: {error}") from None
    set_rng_state(data.pop("rng"))
    return Position(**data.pop("position")), data


class Stateful(Protocol):
    """Anything with torch's state-dict pair: modules, optimisers, gradient scalers."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any], /) -> Any: ...


class TrainingState:
    """The resumable part of a run: the state dicts of its stateful parts plus a few plain values.

        state = TrainingState({"model": model, "optimizer": optimizer, "ema": None}, best={"top1": -1.0})
        position = state.load(path)        # restores every part, the values and the RNG states
        state.values["best"] = {...}       # plain values are read and updated through `values`
        state.save(run_dir, position)      # writes the same names back

    Args:
        parts: name -> object with `state_dict` / `load_state_dict`; None entries (a run without EMA
            or without a gradient scaler) are left out of the file and not expected in it.
        values: name -> initial value of a plain entry (tensors, numbers, strings, lists and dicts of them).
    """

    def __init__(self, parts: dict[str, Stateful | None], **values: Any) -> None:
        self.parts = {name: part for name, part in parts.items() if part is not None}
        self.values = values

    def payload(self) -> dict[str, Any]:
        """What a state file holds besides the RNG states and the position."""
        return {**{name: part.state_dict() for name, part in self.parts.items()}, **self.values}

    def restore(self, payload: dict[str, Any], source: str | os.PathLike = "the training state") -> None:
        """Load every part and value from `payload` (as `load_state` returns it)."""
        missing = [name for name in (*self.parts, *self.values) if name not in payload]
        if missing:
            raise CheckpointError(f"{source} has no {', '.join(map(repr, missing))} entry: it was saved by a run "
                                  f"configured differently (e.g. without EMA or fp16), so it cannot resume this one")
        for name, part in self.parts.items():
            part.load_state_dict(payload[name])
        for name in self.values:
            self.values[name] = payload[name]

    def save(self, run_dir: str | os.PathLike, position: Position) -> Path:
        return save_state(run_dir, position, self.payload())

    def load(self, path: str | os.PathLike) -> Position:
        """Restore the parts, the values and the RNG states from a state file; returns its position."""
        position, payload = load_state(path)
        self.restore(payload, source=path)
        return position


def list_states(run_dir: str | os.PathLike) -> list[Path]:
    """State files of a run, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(tuple(map(int, m.groups())), p) for p in run_dir.iterdir() if (m := STATE_PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_state(run_dir: str | os.PathLike) -> Path | None:
    states = list_states(run_dir)
    return states[-1] if states else None


def prune_states(run_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest `keep` state files."""
    for path in list_states(run_dir)[:-keep] if keep > 0 else []:
        path.unlink(missing_ok=True)


__all__ = ["Position", "Stateful", "TrainingState", "check_run_dir", "latest_state", "load_state", "prune_states",
           "save_state"]
