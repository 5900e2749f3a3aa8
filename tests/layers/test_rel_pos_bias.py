"""The relative-position index and the gathered bias, by hand on small grids."""

from __future__ import annotations

import torch

from efficientformer.layers import RelPosBias, relative_position_index


def test_index_on_a_2x3_grid():
    # Entry |row offset| * 3 + |column offset| for query (row, col) against the keys in row-major order.
    index = relative_position_index((2, 3))
    assert index.shape == (6, 6) and index.dtype == torch.int64
    assert index[0].tolist() == [0, 1, 2, 3, 4, 5]  # query (0, 0)
    assert index[1].tolist() == [1, 0, 1, 4, 3, 4]  # query (0, 1)
    assert index[5].tolist() == [5, 4, 3, 2, 1, 0]  # query (1, 2)
    assert torch.equal(index, index.T)


def test_index_with_strided_queries():
    # Keys on 3x3, queries on every other row and column: (0, 0), (0, 2), (2, 0), (2, 2).
    index = relative_position_index((3, 3), query_stride=2)
    assert index.shape == (4, 9)
    assert index[1].tolist() == [2, 1, 0, 5, 4, 3, 8, 7, 6]  # query (0, 2)
    assert index[3].tolist() == [8, 7, 6, 5, 4, 3, 2, 1, 0]  # query (2, 2)
    assert relative_position_index((3, 4), query_stride=2).shape == (2 * 2, 12)  # ceil(3/2) x ceil(4/2) queries


class _Toy(RelPosBias):
    def __init__(self) -> None:
        super().__init__()
        self.init_rel_pos_bias(num_heads=2, key_grid=(2, 3))


def test_gathered_bias_by_hand():
    toy = _Toy()
    assert toy.attention_biases.shape == (2, 6) and "attention_bias_idxs" not in toy.state_dict()
    with torch.no_grad():
        toy.attention_biases.copy_(torch.arange(12.0).view(2, 6))  # head 0: 0..5, head 1: 6..11
    bias = toy.get_attention_biases()
    assert bias.shape == (2, 6, 6)
    assert bias[0, 1].tolist() == [1.0, 0.0, 1.0, 4.0, 3.0, 4.0]
    assert bias[1, 5].tolist() == [11.0, 10.0, 9.0, 8.0, 7.0, 6.0]
