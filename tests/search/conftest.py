"""Fixtures of the search tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Run a module on one intra-op thread: on a loaded 2-core machine the OpenMP threads of small convs
    spend more time waiting on each other than they save (tiny-model forwards went from ~10 ms to seconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
