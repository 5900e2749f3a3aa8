"""Small helpers every other layer may use: atomic file writes, progress bars."""

from efficientformer.utils.io import atomic_write
from efficientformer.utils.progress import progress_bar

__all__ = ["atomic_write", "progress_bar"]
