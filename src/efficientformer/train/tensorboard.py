"""Per-epoch scalars to TensorBoard under `<run dir>/tb/`, when the optional `tensorboard` package is installed.

    pip install 'efficientformer[tensorboard]'
    tensorboard --logdir runs/flowers/tb
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

TB_DIR = "tb"


class ScalarLog:
    """Writes each numeric entry of an epoch summary as a scalar at step `epoch`; a no-op without tensorboard.

    Args:
        run_dir: the run directory; events go to `run_dir / "tb"`.
        enabled: False for processes that must not write (DDP ranks other than 0).
    """

    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True) -> None:
        self.writer = None
        self.message = ""
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.message = ("tensorboard is not installed: no TensorBoard logs (pip install "
                            "'efficientformer[tensorboard]'); metrics.jsonl and metrics.csv have the same numbers")
            return
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TB_DIR))

    def log_epoch(self, summary: dict[str, Any]) -> None:
        """One point per numeric field of `summary` (except 'epoch', the step), e.g. top1, train_loss, lr."""
        if self.writer is None:
            return
        epoch = int(summary["epoch"])
        for key, value in summary.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and math.isfinite(value):
                self.writer.add_scalar(key, value, global_step=epoch)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


__all__ = ["TB_DIR", "ScalarLog"]
