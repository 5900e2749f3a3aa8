"""threads(n): torch's thread count inside a block, the caller's count afterwards, also after an error."""

from __future__ import annotations

import pytest
import torch

from efficientformer.utils import threads


def test_the_count_is_set_inside_and_restored_after_even_on_error():
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with threads(target) as count:
        assert count == target == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with pytest.raises(KeyError), threads(target):
        raise KeyError("boom")
    assert torch.get_num_threads() == before


def test_none_keeps_the_count_and_restores_what_the_block_changed():
    before = torch.get_num_threads()
    with threads() as count:
        assert count == before
        torch.set_num_threads(1 if before != 1 else 2)  # e.g. a benchmark going through thread counts
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be >= 1"):
        with threads(0):
            pass
    assert torch.get_num_threads() == before
