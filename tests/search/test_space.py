"""The search space: the published variants are points of it, sampling stays inside, JSON round-trips."""

from __future__ import annotations

import pytest
import torch

from efficientformer.errors import MissingFileError
from efficientformer.models import get_config
from efficientformer.models.summary import param_count
from efficientformer.search.space import DEFAULT_SPACE, TINY_SPACE, SearchSpace, StageSpace, get_space, signature

PUBLISHED_PARAMS = {"s0": 3_600_256, "s1": 6_185_560, "s2": 12_710_112, "l": 26_322_288}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_published_variants_are_subnets_with_exact_params(name):
    published = get_config(name)
    assert DEFAULT_SPACE.contains(published), DEFAULT_SPACE.violations(published)
    subnet = DEFAULT_SPACE.make_config(published.stages, name=f"{name}-as-subnet")
    assert param_count(subnet) == PUBLISHED_PARAMS[name]


def test_max_config_is_l_and_min_is_smaller():
    largest = DEFAULT_SPACE.max_config()
    l_config = get_config("l")
    assert largest.depths == l_config.depths and largest.widths == l_config.widths
    assert [s.num_attn for s in largest.stages] == [0, 0, 6, 6]
    # L's ratios are 3 or 4, the max subnet's all 4: the max contains L block for block.
    assert param_count(largest) > param_count(l_config) > param_count(DEFAULT_SPACE.min_config())


def test_violations_name_the_field():
    s0 = get_config("s0")
    bad = s0.replace(stages=(s0.stages[0].__class__(depth=2, width=36, mlp_ratios=(4, 5)), *s0.stages[1:]))
    problems = DEFAULT_SPACE.violations(bad)
    assert any("stages[0].width 36" in p for p in problems) and any("stages[0].mlp_ratios [5]" in p for p in problems)
    with pytest.raises(ValueError, match=r"stages\[0\]\.width 36"):
        DEFAULT_SPACE.validate(bad)
    assert "attn_heads" in " ".join(DEFAULT_SPACE.violations(s0.replace(attn_heads=4)))


@pytest.mark.parametrize("space", [TINY_SPACE, DEFAULT_SPACE], ids=["tiny", "default"])
def test_samples_are_inside_and_vary(space):
    generator = torch.Generator().manual_seed(0)
    samples = [space.sample(generator) for _ in range(20)]
    assert all(space.contains(config) for config in samples)
    assert len({signature(config) for config in samples}) > 10
    again = torch.Generator().manual_seed(0)
    assert signature(space.sample(again)) == signature(samples[0])  # seeded


def test_block_map_keeps_attention_blocks_at_the_back():
    # Stage 3 of the default space has 15 supernet blocks; S0's stage 3 has 6 blocks, the last 2 attention.
    assert DEFAULT_SPACE.block_map(2, depth=6, num_attn=2) == (0, 1, 2, 3, 13, 14)
    assert DEFAULT_SPACE.block_map(2, depth=15, num_attn=6) == tuple(range(15))
    assert DEFAULT_SPACE.block_map(0, depth=3, num_attn=0) == (0, 1, 2)
    # Dropping an FFN-only block keeps the attention blocks on the same supernet blocks.
    assert DEFAULT_SPACE.block_map(2, 5, 2)[-2:] == DEFAULT_SPACE.block_map(2, 6, 2)[-2:]


def test_json_round_trip_and_lookup(tmp_path):
    space = TINY_SPACE.replace_base(num_classes=3)
    path = tmp_path / "space.json"
    path.write_text(space.to_json())
    again = get_space(path)
    assert again == space
    assert get_space("tiny") is TINY_SPACE
    with pytest.raises(KeyError, match="unknown search space"):
        get_space("nope")
    # A value that looks like a path (the same rule as for a model argument) must exist; named in the error.
    missing = tmp_path / "spaces" / "mine"
    with pytest.raises(MissingFileError, match="mine does not exist"):
        get_space(missing)
    with pytest.raises(MissingFileError, match="other.json does not exist"):
        get_space("other.json")
    path.write_text("{\"name\": 1}")
    with pytest.raises(ValueError, match=str(path)):
        SearchSpace.from_json(path)


def test_stage_space_checks():
    with pytest.raises(ValueError, match="ascending"):
        StageSpace(widths=(16, 8), ratios=(2,), min_depth=1, max_depth=2)
    with pytest.raises(ValueError, match="max_attn"):
        StageSpace(widths=(8,), ratios=(2,), min_depth=1, max_depth=2, max_attn=3)
