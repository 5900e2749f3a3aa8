"""EpochSampler: repeated augmentation (the paper's 3 copies), padding and sharding, and a mid-epoch restart."""

from __future__ import annotations

import pytest

from efficientformer.data.sampler import EpochSampler


def epoch(sampler: EpochSampler, number: int = 0, start: int = 0) -> list:
    sampler.set_epoch(number, start=start)
    return list(sampler)


def test_one_epoch_is_a_permutation_fixed_by_seed_and_epoch():
    first = epoch(EpochSampler(10, seed=3))
    assert sorted(first) == list(range(10)) and first != list(range(10))
    assert epoch(EpochSampler(10, seed=3)) == first  # a new process draws the same order
    assert epoch(EpochSampler(10, seed=3), 1) != first and epoch(EpochSampler(10, seed=4)) != first
    assert epoch(EpochSampler(10, shuffle=False)) == list(range(10))


def test_three_repeats_give_consecutive_copies_and_keep_the_epoch_length():
    keys = epoch(EpochSampler(12, seed=0, repeats=3))
    assert len(keys) == 12  # an epoch costs the same: 4 distinct images, 3 copies each
    images = [index for index, _ in keys]
    assert [copy for _, copy in keys] == [0, 1, 2] * 4
    assert images[0::3] == images[1::3] == images[2::3] and len(set(images)) == 4
    # The images are the first four of the epoch's permutation.
    assert images[0::3] == epoch(EpochSampler(12, seed=0))[:4]


def test_three_repeats_on_three_ranks_put_each_copy_on_another_rank():
    # DeiT's repeated augmentation: the copies of an image land in the same step on different ranks.
    shards = [epoch(EpochSampler(12, seed=0, rank=rank, world_size=3, repeats=3)) for rank in range(3)]
    assert [len(shard) for shard in shards] == [4, 4, 4]
    for rank, shard in enumerate(shards):
        assert [copy for _, copy in shard] == [rank] * 4
    assert [i for i, _ in shards[0]] == [i for i, _ in shards[1]] == [i for i, _ in shards[2]]


def test_padding_repeats_the_first_samples_so_every_rank_gets_the_same_count():
    order = epoch(EpochSampler(10, seed=1))
    shards = [epoch(EpochSampler(10, seed=1, rank=rank, world_size=3)) for rank in range(3)]
    assert [len(shard) for shard in shards] == [4, 4, 4]  # ceil(10 / 3)
    padded = order + order[:2]
    assert shards == [padded[0::3], padded[1::3], padded[2::3]]
    dropped = [epoch(EpochSampler(10, seed=1, rank=rank, world_size=3, drop_last=True)) for rank in range(3)]
    assert [len(shard) for shard in dropped] == [3, 3, 3]
    assert sorted(sum(dropped, [])) == sorted(order[:9])  # the tail is dropped, nothing is repeated


def test_restart_mid_epoch_continues_with_the_next_sample():
    sampler = EpochSampler(10, seed=2, rank=1, world_size=2, repeats=3)
    full = epoch(sampler, 4)
    assert len(sampler) == 5
    resumed = EpochSampler(10, seed=2, rank=1, world_size=2, repeats=3)
    rest = epoch(resumed, 4, start=3)
    assert rest == full[3:] and len(resumed) == 2
    assert epoch(resumed, 4, start=5) == [] and len(resumed) == 0
    resumed.set_epoch(5)  # the next epoch starts from its first sample again
    assert len(resumed) == 5 and list(resumed) == epoch(EpochSampler(10, seed=2, rank=1, world_size=2, repeats=3), 5)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="empty"):
        EpochSampler(0)
    with pytest.raises(ValueError, match="rank 2"):
        EpochSampler(10, rank=2, world_size=2)
