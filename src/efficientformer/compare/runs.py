"""One training run of a comparison: through the training job, resumable, timed across kills, a failure kept.

Each (model, seed) is an ordinary run directory of `efficientformer train` (job.json, metrics.jsonl,
states, last.safetensors, ...) under `<output>/runs/`, plus three files of the comparison:

- `compare_model.json`: the architecture the run was started for; a later `--resume auto` with another
  config under the same name is refused instead of mixing two architectures in one row.
- `compare_clock.json`: training wall time so far. A segment that was killed counts up to the newest
  state file it saved (what came after is trained again, and counted then).
- `compare_run.json`: written once the run has finished; with `--resume auto` its presence means "do
  not retrain". A run that failed has none, and `error.txt` holds its traceback.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from efficientformer.errors import BadFileError, ConfigError
from efficientformer.models.spec import ModelSpec
from efficientformer.train.job import TrainJob, run_training
from efficientformer.train.report import read_metrics
from efficientformer.train.state import latest_state
from efficientformer.utils.io import atomic_write, write_json

RESULT_FILE = "compare_run.json"
CLOCK_FILE = "compare_clock.json"
MODEL_FILE = "compare_model.json"
ERROR_FILE = "error.txt"
WEIGHTS_FILE = "last.safetensors"
TRAINED, KEPT, FAILED = "trained", "kept", "failed"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRecord:
    """The outcome of one (model, seed) run: held-out accuracy of its last epoch, training time, or the error.

    `status` is 'trained' (in this call), 'kept' (finished by an earlier call and not retrained) or 'failed'.
    """

    model: str
    seed: int
    run_dir: str
    status: str
    top1: float | None = None
    top5: float | None = None
    best_top1: float | None = None
    epochs: int | None = None
    training_s: float | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status != FAILED

    @property
    def weights(self) -> Path:
        """The trained weights (the last epoch's)."""
        return Path(self.run_dir) / WEIGHTS_FILE

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_dir_name(name: str, seed: int) -> str:
    """`<model>_seed<N>`, with anything but letters, digits and `._@-` replaced by '_'."""
    return f"{re.sub(r'[^A-Za-z0-9._@-]', '_', name)}_seed{seed}"


def check_run_model(run_dir: Path, spec: ModelSpec) -> None:
    """Refuse a run directory that was started for another architecture than `spec`.

    Raises:
        ConfigError: its compare_model.json holds another config.
    """
    path = run_dir / MODEL_FILE
    if not path.is_file():
        return
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise BadFileError(f"cannot read {path}: {error}") from None
    wanted = json.loads(json.dumps(spec.to_dict()))  # tuples as JSON lists, as stored
    if stored != wanted:
        changed = sorted(key for key in set(stored) | set(wanted) if stored.get(key) != wanted.get(key))
        raise ConfigError(f"{run_dir} was started for another {spec.name} (the config differs in "
                          f"{', '.join(changed)}; {path}): give it another name or choose another --output")


def finished_record(run_dir: Path) -> RunRecord | None:
    """The record of a run that finished in an earlier call, marked 'kept'; None when it has not finished."""
    path = run_dir / RESULT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        record = RunRecord(**{**data, "run_dir": str(run_dir)})
    except (ValueError, TypeError) as error:
        raise BadFileError(f"cannot read {path}: {error} (delete it to train that run again)") from None
    return dataclasses.replace(record, status=KEPT)


class TrainingClock:
    """Wall time a run has spent training, kept in its directory across kills and resumes (module docstring)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / CLOCK_FILE

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"seconds": 0.0, "started": None}

    def start(self) -> None:
        data = self._read()
        if data.get("started") is not None:  # the previous segment was killed
            newest = latest_state(self.run_dir)
            if newest is not None:
                data["seconds"] += max(0.0, newest.stat().st_mtime - data["started"])
        write_json(self.path, {"seconds": data["seconds"], "started": time.time()})

    def stop(self) -> float:
        """Add the current segment; returns the run's total seconds."""
        data = self._read()
        seconds = data["seconds"] + (time.time() - data["started"] if data.get("started") is not None else 0.0)
        write_json(self.path, {"seconds": seconds, "started": None})
        return seconds


def train_run(job: TrainJob, name: str, seed: int, spec: ModelSpec, *, writes: bool = True) -> RunRecord:
    """Train one (model, seed) as `job` says and record it; a failure is returned as a 'failed' record, not raised.

    With `job.resume == 'auto'` a finished run is not retrained (its record comes back as 'kept'), and
    a killed one continues from its newest state file.

    Args:
        writes: False on torchrun's ranks but 0: they train (the job is distributed) and write nothing of
            the comparison's (model, clock, result, error files); their record has no accuracy.
    """
    run_dir = Path(job.output)
    if job.resume is not None:
        kept = finished_record(run_dir)
        if kept is not None:
            return kept
    if not writes:
        return _train_quietly(job, name, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_run_model(run_dir, spec)
    write_json(run_dir / MODEL_FILE, spec.to_dict())
    clock = TrainingClock(run_dir)
    clock.start()
    try:
        run_training(job)
    except Exception as error:  # any failure of one model: report it and train the others
        seconds = clock.stop()
        with atomic_write(run_dir / ERROR_FILE) as handle:
            handle.write(traceback.format_exc().encode())
        message = f"{type(error).__name__}: {error}"
        logger.debug("%s seed %d failed:\n%s", name, seed, traceback.format_exc())
        return RunRecord(name, seed, str(run_dir), FAILED, training_s=seconds, error=message)
    seconds = clock.stop()
    # From the run's own log: a run resumed after its last epoch trains nothing and returns no metrics.
    last = read_metrics(run_dir / "metrics.jsonl")[-1]
    record = RunRecord(name, seed, str(run_dir), TRAINED, top1=last["top1"], top5=last["top5"],
                       best_top1=last.get("best_top1"), epochs=last["epoch"], training_s=seconds)
    write_json(run_dir / RESULT_FILE, record.to_dict())
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    return record


def _train_quietly(job: TrainJob, name: str, seed: int) -> RunRecord:
    """A rank's share of a distributed run: trained or failed, nothing written (rank 0 records the run)."""
    try:
        run_training(job)
    except Exception as error:  # the same failure reaches rank 0, which reports it
        return RunRecord(name, seed, job.output, FAILED, error=f"{type(error).__name__}: {error}")
    return RunRecord(name, seed, job.output, TRAINED)


__all__ = ["FAILED", "KEPT", "RESULT_FILE", "TRAINED", "RunRecord", "TrainingClock", "check_run_model",
           "finished_record", "run_dir_name", "train_run"]
