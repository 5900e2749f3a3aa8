"""A synthetic clock for latency tables: every entry costs a known number of milliseconds, so sums are exact.

`build_lut(space, runner=clock.runner, timer=clock)` times each entry with a fake clock that the
entry's call advances by `synthetic_ms(module)`. The cost is read off the module that `build_entry`
built (its classes and sizes), not off the table key, so a table that puts a cost under the wrong
key, or a prediction that sums the wrong entries, misses the hand-computed totals of the tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch
from torch import nn

from efficientformer.models.blocks import Attention2d, Attention2dDownsample, Downsample, Mlp, Stem
from efficientformer.models.efficientformer_v2 import EfficientFormerV2

STEM_MS, DOWN_MS, DOWN_ATTN_MS, HEAD_MS = 1.0, 2.0, 4.0, 0.25
ATTN_MS = {1: 3.0, 2: 5.0}  # by attention stride (2 = stage-3 stride attention)
FFN_MS_PER_HIDDEN = 1 / 16
OUTLIER = 10.0  # the first timed call of every entry costs this many times more (the median ignores it)


def synthetic_ms(module: nn.Module) -> float:
    """The made-up cost (ms) of one LUT entry module."""
    found = {type(m): m for m in module.modules()}
    if EfficientFormerV2 in found:  # the head entry runs a small network's forward_head
        return HEAD_MS
    if Attention2dDownsample in found:
        return DOWN_ATTN_MS
    if Attention2d in found:
        return ATTN_MS[1 if found[Attention2d].stride_conv is None else 2]
    if Stem in found:
        return STEM_MS
    if Downsample in found:
        return DOWN_MS
    return found[Mlp].hidden * FFN_MS_PER_HIDDEN


class SyntheticClock:
    """A clock (seconds) that only the entry calls made by `runner` advance.

    Args:
        warmup: the untimed calls per entry; the call right after them is the outlier.
    """

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.now = 0.0
        self.calls: Counter[int] = Counter()
        self.built = 0

    def __call__(self) -> float:
        return self.now

    def runner(self, module: nn.Module, example: torch.Tensor) -> Callable[[], None]:
        cost_s = synthetic_ms(module) / 1e3
        ident = self.built
        self.built += 1

        def call() -> None:
            outlier = self.calls[ident] == self.warmup
            self.calls[ident] += 1
            self.now += cost_s * (OUTLIER if outlier else 1.0)

        return call
