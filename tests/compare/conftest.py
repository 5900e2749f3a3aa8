"""Fixtures of the comparison tests: a generated image folder, a tiny MobileNetV2 config, the fast settings."""

from __future__ import annotations

import json

import pytest
from train.colour_folder import build_colour_folder


@pytest.fixture
def folder(tmp_path):
    """Three colour classes of ten 24x24 images each (one image of each class is held out for validation)."""
    return build_colour_folder(tmp_path / "colours", per_class=10, with_bad=False).root


@pytest.fixture
def tiny_mobilenet(tmp_path):
    """A MobileNetV2 config JSON at width 0.25 (about 0.25 M parameters): the standard structure, small."""
    path = tmp_path / "mobilenetv2_tiny.json"
    path.write_text(json.dumps({"family": "mobilenetv2", "name": "mobilenetv2_tiny", "width_mult": 0.25}))
    return path


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("EFFICIENTFORMER_NO_PROGRESS", "1")
