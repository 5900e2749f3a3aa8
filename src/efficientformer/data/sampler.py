"""A resumable, shardable epoch sampler: the order is a pure function of (seed, epoch).

Each epoch draws one permutation (optionally repeated `repeats` times for DeiT's repeated
augmentation, yielding (index, copy) keys so every copy gets its own augmentation from
`AugmentedDataset`), pads it to a multiple of the world size, and gives rank r every world_size-th key.
`start` skips the samples this rank already consumed, so a run killed mid-epoch resumes on exactly
the next batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from efficientformer.data.seeding import SAMPLER_STREAM, sample_generator
from efficientformer.errors import ConfigError


class EpochSampler(Sampler):
    """Indices of one rank for one epoch; call `set_epoch(epoch, start)` before iterating.

    Args:
        length: dataset size.
        shuffle: permute (training) or keep the order (evaluation).
        seed: base seed shared by all ranks.
        rank, world_size: this process's shard.
        repeats: each index appears `repeats` times per epoch (DeiT repeated augmentation), and the
            epoch is cut back to `length` samples in total so an epoch costs the same.
        drop_last: drop the tail instead of padding so every rank gets the same count.
    """

    def __init__(self, length: int, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1,
                 repeats: int = 1, drop_last: bool = False) -> None:
        if length < 1:
            raise ConfigError("the dataset is empty")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.length = length
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.repeats = repeats
        self.drop_last = drop_last
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch, and skip the first `start` samples of this rank (resume mid-epoch)."""
        self.epoch = epoch
        self.start = start

    def per_rank(self) -> int:
        """Samples each rank gets per epoch."""
        if self.drop_last:
            return self.length // self.world_size
        return -(-self.length // self.world_size)

    def _indices(self) -> list:
        if self.shuffle:
            generator = sample_generator(self.seed, self.epoch, 0, stream=SAMPLER_STREAM)
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        if self.repeats > 1:
            order = [(index, copy) for index in order for copy in range(self.repeats)][:self.length]
        total = self.per_rank() * self.world_size
        if total > len(order):
            order += order[: total - len(order)]
        return order[:total][self.rank::self.world_size]

    def __iter__(self) -> Iterator:
        return iter(self._indices()[self.start:])

    def __len__(self) -> int:
        return max(0, self.per_rank() - self.start)


__all__ = ["EpochSampler"]
