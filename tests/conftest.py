"""Shared fixtures: seeded RNG and the tiny test config."""

from __future__ import annotations

import pytest
import torch

import efficientformer
from efficientformer.models import get_config


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_config():
    """A few-thousand-parameter config with stride attention and the dual-path downsample."""
    return get_config("efficientformerv2_test")


@pytest.fixture
def tiny_model(tiny_config):
    from support import randomize_

    return randomize_(efficientformer.create_model(tiny_config)).eval()


def pytest_collection_modifyitems(config, items):
    """Run the multi-process (ddp) tests first and the export tests last.

    With onnxruntime, ExecuTorch, OpenVINO and coremltools loaded into the pytest process by the export
    tests, a later test that starts training subprocesses (torchrun, the kill -9 resume test) crashed the
    pytest process itself with SIGSEGV (no Python frame; faulthandler printed nothing), reproducibly in
    the full run and never in smaller subsets. Nothing but export tests runs after the runtimes are
    loaded; the cause is not found yet.
    """
    def group(item) -> int:
        if item.get_closest_marker("ddp") is not None:
            return 0
        return 2 if item.get_closest_marker("export") is not None else 1

    items.sort(key=group)  # stable: each group keeps its order
