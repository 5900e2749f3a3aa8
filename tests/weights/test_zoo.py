"""The weight registry describes the models it fills."""

from __future__ import annotations

import pytest

import efficientformer
from efficientformer.models import get_config
from efficientformer.models.summary import param_count
from efficientformer.weights import zoo
from efficientformer.weights.convert import LAYOUTS


@pytest.mark.parametrize("entry", list(zoo.WEIGHTS.values()), ids=lambda e: e.tag)
def test_entry_matches_its_model(entry):
    config = get_config(entry.model).replace(img_size=entry.img_size)
    assert param_count(config) == entry.num_params
    assert entry.layout in LAYOUTS and entry.url.startswith("https://")
    assert entry.sha256 is None or len(entry.sha256) == 64


def test_every_model_has_a_default_and_file_names_are_unique():
    for name in efficientformer.list_models():
        assert zoo.default_weights(name).model == name
    names = [entry.file_name for entry in zoo.WEIGHTS.values()]
    assert len(set(names)) == len(names)


def test_weights_for_another_model_are_refused():
    with pytest.raises(ValueError, match="are for efficientformerv2_s1, not efficientformerv2_s0"):
        efficientformer.create_model("efficientformerv2_s0", pretrained="efficientformerv2_s1.snap_dist_in1k")


def test_unknown_tag_lists_known_ones():
    with pytest.raises(KeyError, match="known tags: efficientformerv2_s0.snap_dist_in1k"):
        zoo.get_weights("nope")
