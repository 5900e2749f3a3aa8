"""Atomic file writes: a reader sees either the old file or the complete new one, never a torn one.

    write_json(run_dir / "summary.json", summary)            # indented, with a final newline
    write_csv([{"epoch": 1, "top1": 50.0}], "metrics.csv")    # the union of the records' keys as columns
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from efficientformer.errors import MissingFileError, WriteError

# A write that fails for want of room (disk, quota, file size limit) or on a read-only file system.
_OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside `path` for binary writing; on success fsync it and rename it over `path`.

    If the body raises, the temporary file is removed and `path` is left untouched.

    Raises:
        MissingFileError: the directory does not exist.
        WriteError: the directory is not writable, or the disk (or quota) is full, also when a write
            in the body runs out of space; other errors of the body pass through unchanged.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise MissingFileError(f"cannot write {path}: directory {directory} does not exist")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as error:
        raise _write_error(path, error) from error
    try:
        with os.fdopen(fd, "wb") as handle:
            try:
                yield handle
            except OSError as error:
                if error.errno not in _OUT_OF_SPACE:
                    raise
                raise _write_error(path, error) from error
            try:
                handle.flush()
                os.fsync(handle.fileno())
                handle.close()
                os.replace(tmp_name, path)
            except OSError as error:
                raise _write_error(path, error) from error
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_directory(directory)


def _write_error(path: Path, error: OSError) -> WriteError:
    return WriteError(f"cannot write {path}: {error.strerror or error}")


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | os.PathLike, data: Any, *, indent: int | None = 2,
               default: Callable[[Any], Any] | None = None) -> Path:
    """`data` as JSON (UTF-8, a final newline), atomically; `default` converts what JSON cannot hold (e.g. str)."""
    with atomic_write(path) as handle:
        handle.write((json.dumps(data, indent=indent, default=default) + "\n").encode())
    return Path(path)


def write_csv(records: Sequence[dict], path: str | os.PathLike) -> Path:
    """Records as CSV with the union of their keys as columns (in order of first appearance), atomically."""
    columns = list(dict.fromkeys(key for record in records for key in record))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(records)
    with atomic_write(path) as handle:
        handle.write(text.getvalue().encode())
    return Path(path)


__all__ = ["atomic_write", "write_csv", "write_json"]
