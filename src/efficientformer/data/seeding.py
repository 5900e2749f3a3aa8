"""Per-sample random streams: every augmentation draw is a pure function of (seed, epoch, index).

A training sample's augmentation must not depend on which DataLoader worker decodes it, how many
workers there are or the order they finish in, so nothing here touches a global RNG. Each sample
gets its own `torch.Generator`, seeded from a hash of the integers that name it:

    seed = SeedSequence(words(seed, epoch, index, repeat, stream)).generate_state(1, uint64)[0]

where `words` writes each integer as two little-endian 32-bit words (so (2**32, 0) and (0, 1)
cannot collide) and SeedSequence is NumPy's documented, version-stable entropy mixer. `repeat`
tells the copies of one index apart under repeated augmentation; `stream` separates unrelated
consumers (per-sample transforms, per-step mixup) that share the other numbers.
"""

from __future__ import annotations

import numpy as np
import torch

TRANSFORM_STREAM = 0
MIXUP_STREAM = 1
SAMPLER_STREAM = 2  # the epoch's permutation (index 0)

_WORD_MASK = 0xFFFF_FFFF


def sample_seed(seed: int, epoch: int, index: int, repeat: int = 0, stream: int = TRANSFORM_STREAM) -> int:
    """A 64-bit seed mixed from (seed, epoch, index, repeat, stream), each an integer in [0, 2**64).

    Args:
        seed: the run's base seed.
        epoch: the epoch the sample is drawn in.
        index: the sample's dataset index (or the step, for per-batch draws).
        repeat: which copy of `index` this is within the epoch (repeated augmentation).
        stream: which consumer draws (TRANSFORM_STREAM, MIXUP_STREAM).
    """
    words = []
    for name, value in (("seed", seed), ("epoch", epoch), ("index", index), ("repeat", repeat), ("stream", stream)):
        value = int(value)
        if not 0 <= value < 2 ** 64:
            raise ValueError(f"{name} must be an integer in [0, 2**64) to seed a sample, got {value}")
        words += [value & _WORD_MASK, value >> 32]
    entropy = np.array(words, dtype=np.uint32)  # (10,): fixed length, so no two tuples share a word sequence
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])


def sample_generator(seed: int, epoch: int, index: int, repeat: int = 0,
                     stream: int = TRANSFORM_STREAM) -> torch.Generator:
    """A CPU torch.Generator seeded with `sample_seed(seed, epoch, index, repeat, stream)`."""
    generator = torch.Generator()
    generator.manual_seed(sample_seed(seed, epoch, index, repeat, stream))
    return generator


def uniform(generator: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    """One float64 draw from U[low, high)."""
    return low + (high - low) * float(torch.rand((), dtype=torch.float64, generator=generator))


def randint(generator: torch.Generator, low: int, high: int) -> int:
    """One integer drawn uniformly from [low, high] (both ends included, as `random.randint`)."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def normal(generator: torch.Generator, mean: float = 0.0, std: float = 1.0) -> float:
    """One float64 draw from N(mean, std**2)."""
    return mean + std * float(torch.randn((), dtype=torch.float64, generator=generator))


__all__ = ["MIXUP_STREAM", "SAMPLER_STREAM", "TRANSFORM_STREAM", "normal", "randint", "sample_generator", "sample_seed",
           "uniform"]
