"""Supernet warm start from the released L checkpoint layouts (official .pth and timm safetensors).

No real weights here: an L with random, non-trivial weights (tests/support.py: BN statistics, layer
scales and bias tables far from identity, so every tensor reaches the logits) is written in each
layout with the project's own converter (`convert_checkpoint`), loaded into a paper-space supernet
that holds other random weights, and the L subnet taken back out must give the original logits.
"""

from __future__ import annotations

import pytest
import torch

from efficientformer.factory import convert_checkpoint, create_model
from efficientformer.search.space import DEFAULT_SPACE
from efficientformer.search.supernet import Supernet, load_subnet_weights
from efficientformer.weights.checkpoint import read_checkpoint, save_checkpoint
from support import randomize_, sample_input

pytestmark = pytest.mark.usefixtures("one_thread")

LAYOUT_FILES = {"official": "l_official.pth", "timm": "l_timm.safetensors"}


@pytest.fixture(scope="module")
def released_l(tmp_path_factory):
    """(the random L, its logits on a fixed input, the input, {layout: file})."""
    root = tmp_path_factory.mktemp("released_l")
    model = randomize_(create_model("efficientformerv2_l"), seed=11).eval()
    ours = save_checkpoint(model, root / "l_ours.safetensors")
    files = {}
    for layout, name in LAYOUT_FILES.items():
        assert convert_checkpoint(ours, root / name, to=layout) == ("ours", layout)
        files[layout] = root / name
    x = sample_input(1, 224, 224, seed=3)
    with torch.no_grad():
        logits = model(x)
    return model, logits, x, files


@pytest.mark.parametrize("layout", list(LAYOUT_FILES))
def test_supernet_warm_start_from_a_released_l_layout(released_l, layout):
    model, logits, x, files = released_l
    checkpoint = read_checkpoint(files[layout])
    assert checkpoint.layout == layout and checkpoint.config is None  # a released file: no config, inferred
    supernet = randomize_(Supernet(DEFAULT_SPACE), seed=12).eval()
    before = supernet.stages[2].blocks[0].mlp.fc1.conv.weight.detach().clone()
    config = load_subnet_weights(supernet, files[layout])
    assert config.stages == model.config.stages and DEFAULT_SPACE.contains(config)
    assert not torch.equal(supernet.stages[2].blocks[0].mlp.fc1.conv.weight, before)  # it did overwrite
    with torch.no_grad():
        supernet.set_active(config)
        torch.testing.assert_close(supernet(x), logits, rtol=0, atol=1e-4)
        extracted = supernet.extract(config).eval()
        torch.testing.assert_close(extracted(x), logits, rtol=0, atol=1e-4)
    # Every tensor of the extracted L is the released one, bit for bit (the converters copy exactly).
    source = model.state_dict()
    for key, tensor in extracted.state_dict().items():
        assert torch.equal(tensor, source[key]), key
