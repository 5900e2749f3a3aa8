"""The latency table and the model place every part alike: kind, channels, grid, FFN width and attention stride.

Both take the layouts from `ModelConfig` (models/config.py); these tests run the real network and
record what each part receives, so a table that re-derived a rule (stride attention in another
stage, the attention downsample elsewhere, a grid off by one stride) would disagree here.
"""

from __future__ import annotations

import pytest
import torch

from efficientformer.models import get_config
from efficientformer.models.blocks import Attention2d, Downsample, Mlp, Stem
from efficientformer.models.config import ModelConfig
from efficientformer.models.efficientformer_v2 import EfficientFormerV2
from efficientformer.search.lut import decompose, space_entries
from efficientformer.search.space import DEFAULT_SPACE, TINY_SPACE


def _grid(tensor: torch.Tensor) -> tuple[int, int]:
    return tuple(tensor.shape[-2:])


def run_parts(config: ModelConfig) -> list[tuple]:
    """(kind, in channels, out channels, input grid, FFN hidden, attention stride) of every part the network runs."""
    model = EfficientFormerV2(config).eval()
    parts: list[tuple] = []
    token_grids: dict[int, tuple[int, int]] = {}

    def record(module, inputs, output):
        (x,) = inputs
        if isinstance(module, Stem):
            parts.append(("stem", x.shape[1], output.shape[1], _grid(x), 0, 1))
        elif isinstance(module, Downsample):
            kind = "down_attn" if module.attn is not None else "down"
            parts.append((kind, x.shape[1], output.shape[1], _grid(x), 0, 1))
        elif isinstance(module, Attention2d):  # the stride is what the tokens' grid is to the input's
            stride = _grid(x)[0] // token_grids[id(module)][0]
            parts.append(("attn", x.shape[1], output.shape[1], _grid(x), 0, stride))
        elif isinstance(module, Mlp):
            parts.append(("ffn", x.shape[1], output.shape[1], _grid(x), module.hidden, 1))
        else:  # the final norm: the head's input
            parts.append(("head", x.shape[1], config.num_classes, _grid(x), 0, 1))

    for module in model.modules():
        if isinstance(module, (Stem, Downsample, Attention2d, Mlp)):
            module.register_forward_hook(record)
        if isinstance(module, Attention2d):
            module.q.register_forward_pre_hook(lambda m, inputs, a=module: token_grids.__setitem__(id(a),
                                                                                                 _grid(inputs[0])))
    model.norm.register_forward_hook(record)
    with torch.no_grad():
        model(torch.randn(1, config.in_chans, *config.img_size))
    return parts


def table_parts(config: ModelConfig) -> list[tuple]:
    return [(e.kind, e.in_dim, e.out_dim, e.grid, e.hidden, e.stride) for e in decompose(config)]


CONFIGS = {
    "s0": get_config("efficientformerv2_s0"),
    "s1": get_config("efficientformerv2_s1"),
    "s2": get_config("efficientformerv2_s2"),
    "l": get_config("efficientformerv2_l"),
    "tiny": get_config("efficientformerv2_test"),
    "tiny-96x64-plain-down": get_config("efficientformerv2_test").replace(img_size=(96, 64), down_attn=False),
    "tiny-max": TINY_SPACE.max_config(),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_model_and_table_agree_on_every_part(name, one_thread):
    config = CONFIGS[name]
    ran, table = run_parts(config), table_parts(config)
    assert ran == table
    kinds = [part[0] for part in ran]
    assert kinds.count("down_attn") == (1 if config.down_attn else 0)
    assert kinds.count("attn") == sum(stage.num_attn for stage in config.stages)
    assert {part[5] for part in ran if part[0] == "attn" and part[3] == config.stage_grids[2]} <= {2}


def test_every_published_part_is_an_entry_of_the_paper_space():
    known = {entry.key for entry in space_entries(DEFAULT_SPACE.replace_base(img_size=(224, 224)))}
    for name in ("s0", "s1", "s2", "l"):
        config = DEFAULT_SPACE.make_config(CONFIGS[name].stages, name=name)
        assert {entry.key for entry in decompose(config)} <= known, name
