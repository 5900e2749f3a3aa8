"""`search --target` of either family: the target network is built through the spec (models/spec.py) at the
space's class count and resolution, then measured on the table's runtime."""

from __future__ import annotations

import json

import pytest

from efficientformer.models.mobilenetv2 import MOBILENETV2_CONFIGS
from efficientformer.search.lut import LatencyTable
from efficientformer.search.run import target_budget
from efficientformer.search.space import TINY_SPACE

MOBILENETV2_100_IMAGENET = 3_504_872  # the standard count, 1000 classes
HEAD_INPUTS = 1280 + 1  # the classifier's features and its bias


@pytest.fixture
def table() -> LatencyTable:
    """A table with no entries: target_budget only needs where and how it times (one untimed call, three rounds)."""
    header = {"runtime": "torch-fused", "threads": 1, "clock": "cpu", "warmup": 1, "repeats": 3}
    return LatencyTable(header=header, entries={})


def test_a_mobilenetv2_target_has_the_spaces_classes(table):
    label, latency, params = target_budget("mobilenetv2_100", table, TINY_SPACE)
    classes = TINY_SPACE.base.num_classes
    assert label == "mobilenetv2_100" and latency > 0
    assert params == MOBILENETV2_100_IMAGENET - HEAD_INPUTS * (1000 - classes)


def test_a_mobilenetv2_config_json_is_a_target_too(table, tmp_path):
    narrow = MOBILENETV2_CONFIGS["mobilenetv2_100"].replace(name="narrow", width_mult=0.5)
    path = tmp_path / "narrow.json"
    path.write_text(json.dumps(narrow.to_dict()))
    label, latency, params = target_budget(str(path), table, TINY_SPACE)
    _, _, full = target_budget("mobilenetv2_100", table, TINY_SPACE)
    assert label == "narrow" and latency > 0 and params < full


def test_the_paper_space_on_the_embedded_digits_trains_briefly_by_default():
    from efficientformer.search.run import SearchJob, _supernet_epochs

    assert _supernet_epochs(SearchJob()) == 6  # the tiny space
    assert _supernet_epochs(SearchJob(space="efficientformerv2")) == 3  # keeps the default command within 30 min
    assert _supernet_epochs(SearchJob(space="efficientformerv2", data="~/flowers")) == 6
    assert _supernet_epochs(SearchJob(space="efficientformerv2", supernet_epochs=2)) == 2
