"""Eval logits equal those of the official snap-research implementation for the same weights.

`tests/data/official_logits.safetensors` holds logits of the official models/efficientformer_v2.py
(commit in the file's metadata) for weights from `support.randomize_state_dict`, recorded only after
they matched ours within 1e-5. The official code is not needed here: each case rebuilds the same
weights, writes them in the official .pth or timm safetensors layout, loads them with `load_model` (architecture and
resolution inferred from the file) and compares.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import torch

import efficientformer
from efficientformer.weights.checkpoint import write_state_dict
from support import randomize_state_dict, sample_input

FIXTURE = Path(__file__).resolve().parent.parent / "data" / "official_logits.safetensors"
TOLERANCE = 1e-5


def _metadata() -> dict[str, str]:
    with safetensors.safe_open(FIXTURE, "pt") as handle:
        return handle.metadata()


def _cases() -> list[str]:
    # every case is well under 8 s on a 2-core CPU (L: about 5 s), so none is marked slow
    with safetensors.safe_open(FIXTURE, "pt") as handle:
        return sorted(handle.keys())


def test_fixture_provenance():
    meta = _metadata()
    assert meta["official_repo"] == "snap-research/EfficientFormer"
    assert len(meta["official_commit"]) == 40
    assert {"seed", "input_seed", "input_shapes", "torch_version", "produced_by"} <= set(meta)
    names = {key.split("@")[0] for key in json.loads(meta["input_shapes"])}
    assert names == {f"efficientformerv2_{v}" for v in ("s0", "s1", "s2", "l")}


@pytest.mark.parametrize("layout,suffix", [("official", ".pth"), ("timm", ".safetensors")])
@pytest.mark.parametrize("key", _cases(), ids=str)
def test_matches_official_logits(key, layout, suffix, tmp_path):
    meta = _metadata()
    expected = safetensors.torch.load_file(FIXTURE)[key]
    name, size = key.split("@")
    batch, _, height, width = json.loads(meta["input_shapes"])[key]
    assert (height, width) == (int(size), int(size))

    model = efficientformer.create_model(name, img_size=(height, width))
    path = write_state_dict(randomize_state_dict(model.state_dict(), seed=int(meta["seed"])),
                            tmp_path / f"weights{suffix}", layout)
    loaded = efficientformer.load_model(path)
    assert loaded.config.name == name and loaded.config.img_size == (height, width)
    assert not loaded.training

    with torch.no_grad():
        logits = loaded(sample_input(batch, height, width, seed=int(meta["input_seed"])))
    assert logits.shape == expected.shape
    diff = (logits - expected).abs().max().item()
    assert diff <= TOLERANCE, f"{key}: max abs diff to the official logits {diff:.3e}"
