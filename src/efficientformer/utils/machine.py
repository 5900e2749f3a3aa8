"""What machine a measurement ran on, for the header line of every benchmark table."""

from __future__ import annotations

import os
import platform
import time

import torch


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """'YYYY-MM-DD | CPU (N cores) | T threads | torch X | python Y'."""
    return (f"{time.strftime('%Y-%m-%d')} | {cpu_name()} ({os.cpu_count()} cores) | {torch.get_num_threads()} "
            f"threads | torch {torch.__version__} | python {platform.python_version()}")


__all__ = ["cpu_name", "machine_line"]
