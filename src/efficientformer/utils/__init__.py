"""Small helpers every other layer may use: atomic file writes (JSON, CSV), progress bars, optional imports, threads."""

from efficientformer.utils.io import atomic_write, write_csv, write_json
from efficientformer.utils.optional import require
from efficientformer.utils.progress import progress_bar
from efficientformer.utils.threads import threads

__all__ = ["atomic_write", "progress_bar", "require", "threads", "write_csv", "write_json"]
