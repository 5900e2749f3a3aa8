"""DropPath: identity when off, whole samples dropped and the rest rescaled when training."""

from __future__ import annotations

import pytest
import torch

from efficientformer.layers import DropPath


def test_identity_in_eval_mode_and_at_zero():
    x = torch.randn(4, 3, 2, 2)
    assert DropPath(0.5).eval()(x) is x
    assert DropPath(0.0).train()(x) is x


def test_training_drops_whole_samples_and_rescales_the_kept_ones():
    torch.manual_seed(0)
    x = torch.randn(256, 3, 2, 2)
    out = DropPath(0.25).train()(x)
    dropped = (out == 0).flatten(1).all(dim=1)
    kept = ~dropped
    torch.testing.assert_close(out[kept], x[kept] / 0.75)  # each kept sample is scaled by 1 / keep
    assert 32 <= int(dropped.sum()) <= 96  # about a quarter of 256 (64); a per-element mask fails the line above


def test_probability_must_be_below_one():
    with pytest.raises(ValueError, match="drop_prob"):
        DropPath(1.0)
    assert "drop_prob=0.1" in repr(DropPath(0.1))
