"""to_pair: the one reading of an image size given as an int or a (height, width) pair."""

from __future__ import annotations

import numpy as np
import pytest

from efficientformer.utils.sizes import to_pair


def test_ints_are_squares_and_pairs_keep_their_order():
    assert to_pair(224) == (224, 224)
    assert to_pair(np.int64(64)) == (64, 64)
    assert to_pair([256, 320]) == (256, 320) and to_pair((320.0, 256)) == (320, 256)
    assert all(type(v) is int for v in to_pair(np.array([8, 16])))


@pytest.mark.parametrize("bad", [(1, 2, 3), (5,), "ab", None, True])
def test_anything_else_is_named_in_the_error(bad):
    with pytest.raises(ValueError, match="crop must be an int or a \\(height, width\\) pair"):
        to_pair(bad, name="crop")
