"""torch's intra-op thread count for the length of a block (process-wide: measurements set it, then put it back)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from efficientformer.errors import ConfigError


@contextlib.contextmanager
def threads(count: int | None = None) -> Iterator[int]:
    """Run the block with `count` torch threads (None: the current count); the previous count is restored on exit.

        with threads(1):
            measure(...)        # one thread, whatever the caller had; also restored after an error

    The block may change the count itself (a benchmark going through several thread counts); the one
    in force before the block is restored all the same. Yields the count set.

    Raises:
        ValueError: `count` < 1.
    """
    previous = torch.get_num_threads()
    if count is not None:
        if count < 1:
            raise ConfigError(f"threads must be >= 1, got {count}")
        torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


__all__ = ["threads"]
