"""Fixtures of the training tests: a small folder of colour classes with one corrupt file."""

from __future__ import annotations

import pytest
from colour_folder import ColourFolder, build_colour_folder


@pytest.fixture
def colour_folder(tmp_path) -> ColourFolder:
    return build_colour_folder(tmp_path / "colours")
