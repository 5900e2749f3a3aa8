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
