"""What a search writes besides its state: trajectory.csv and the found architecture as ModelConfig JSON."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from pathlib import Path
from typing import Any

from efficientformer.search.slimming import CSV_FIELDS, Step
from efficientformer.search.space import signature
from efficientformer.utils.io import atomic_write


def write_trajectory_csv(steps: list[Step], path: str | os.PathLike) -> Path:
    """trajectory.csv: one row per step (CSV_FIELDS), written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for step in steps:
        writer.writerow(step.row())
    with atomic_write(Path(path)) as handle:
        handle.write(buffer.getvalue().encode())
    return Path(path)


def found_name(space_name: str, step: Step) -> str:
    """HAT-style, filesystem-safe: '<space>_d<depths>-w<widths>-a<attn>-<hash>@<latency>ms_mes@<MES>'."""
    config = step.config
    short = "-".join(["d" + ".".join(map(str, config.depths)), "w" + ".".join(map(str, config.widths)),
                      "a" + ".".join(str(s.num_attn) for s in config.stages),
                      hashlib.sha1(signature(config).encode()).hexdigest()[:6]])
    name = f"{space_name}_{short}@{step.latency_ms:.3g}ms_mes@{step.mes:.4g}"
    return re.sub(r"[^A-Za-z0-9._@-]", "_", name)


def write_found(space_name: str, step: Step, directory: str | os.PathLike, extra: dict[str, Any] | None = None
                ) -> Path:
    """The found architecture as ModelConfig JSON named by `found_name`; `create_model(path)` builds it."""
    name = found_name(space_name, step)
    search = {"latency_ms": step.latency_ms, "params": step.params, "mes": step.mes,
              "supernet_accuracy": step.accuracy, "signature": signature(step.config), **(extra or {})}
    config = step.config.replace(name=name, extra={**step.config.extra, "search": search})
    path = Path(directory) / f"{name}.json"
    with atomic_write(path) as handle:
        handle.write(config.to_json().encode())
    return path


__all__ = ["found_name", "write_found", "write_trajectory_csv"]
