"""matplotlib, optional: pyplot on a file-only backend, and figures written as PNG files atomically."""

from __future__ import annotations

import io
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from efficientformer.utils.io import atomic_write

PNG_DPI = 120


def pyplot() -> ModuleType | None:
    """`matplotlib.pyplot` on the non-interactive Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_png(figure: Any, path: str | os.PathLike, *, tight: bool = True) -> Path:
    """Write `figure` to `path` as a PNG at 120 dpi (cropped to its contents when `tight`), atomically; closes it."""
    import matplotlib.pyplot as plt

    try:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=PNG_DPI, bbox_inches="tight" if tight else None)
        with atomic_write(path) as handle:
            handle.write(buffer.getvalue())
    finally:
        plt.close(figure)
    return Path(path)


__all__ = ["PNG_DPI", "pyplot", "save_png"]
