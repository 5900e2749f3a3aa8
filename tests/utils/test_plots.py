"""save_png: a real PNG at the path, written atomically, and the figure closed (also when saving fails)."""

from __future__ import annotations

import pytest
from PIL import Image

from efficientformer.utils.plots import pyplot, save_png

plt = pyplot() or pytest.skip("needs matplotlib", allow_module_level=True)


def test_a_png_is_written_and_the_figure_closed(tmp_path):
    figure, axis = plt.subplots(figsize=(2, 1))
    axis.plot([0, 1], [1, 0])
    path = save_png(figure, tmp_path / "plot.png", tight=False)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(path).size == (240, 120)  # 2 x 1 inches at 120 dpi, not cropped
    assert not plt.fignum_exists(figure.number)
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_a_failed_save_closes_the_figure_and_leaves_nothing(tmp_path):
    figure, _ = plt.subplots()
    with pytest.raises(FileNotFoundError):
        save_png(figure, tmp_path / "missing" / "plot.png")
    assert not plt.fignum_exists(figure.number)
    assert list(tmp_path.iterdir()) == []
