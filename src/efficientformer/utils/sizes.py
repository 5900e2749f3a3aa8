"""Image sizes given as an int (a square) or a (height, width) pair."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from efficientformer.errors import ConfigError


def to_pair(size: int | Sequence[int], name: str = "img_size") -> tuple[int, int]:
    """(height, width) from an int (a square) or a pair of ints.

        to_pair(224) == (224, 224);  to_pair([256, 320]) == (256, 320)

    Raises:
        ValueError: `size` is neither (the message names it as `name`).
    """
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        return (int(size), int(size))
    try:
        height, width = size
        return (int(height), int(width))
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be an int or a (height, width) pair, got {size!r}") from None


__all__ = ["to_pair"]
