"""The comparison's report on hand-made rows: Pareto front, the markdown table with seeds and failures, the plot."""

from __future__ import annotations

import pytest

from efficientformer.compare.report import markdown_table, pareto_front, plot_compare
from efficientformer.compare.rows import CompareRow
from efficientformer.compare.run import CompareConfig, CompareResult


@pytest.mark.parametrize("points,front", [
    ([(1.0, 70.0), (2.0, 80.0), (3.0, 75.0)], [0, 1]),         # slower and less accurate: off the front
    ([(2.0, 80.0), (1.0, 70.0), (1.5, 70.0)], [1, 0]),         # as accurate but slower: off; fastest first
    ([(1.0, 90.0), (2.0, 95.0), (2.0, 95.0), (0.5, 60.0)], [3, 0, 1]),  # a duplicate counts once
    ([(1.0, 50.0)], [0]),
    ([], []),
])
def test_pareto_front(points, front):
    assert pareto_front(points) == front


def _row(model: str, top1: float | None, median_ms: float | None, runs: int = 3, error: str | None = None):
    measured = {} if top1 is None else {"top1": top1, "top1_min": top1 - 1.5, "top1_max": top1 + 0.5, "top5": 99.0,
                                        "top5_min": 98.0, "top5_max": 100.0, "params": 3_000_000,
                                        "params_deployed": 2_900_000, "macs": 300_000_000, "training_s": 12.0}
    timed = {} if median_ms is None else {"median_ms": median_ms, "p90_ms": median_ms * 1.1, "mes": 50.0}
    return CompareRow(model=model, label=model.upper(), family="efficientformerv2", source=model,
                      seeds="0 1 2"[:2 * runs - 1] if runs else "", runs=runs, img_size="64x64",
                      runtime="onnxruntime", threads=1, **measured, **timed, error=error)


def _result(rows, seeds=3):
    return CompareResult(config=CompareConfig(seeds=seeds), runtime="onnxruntime", rows=tuple(rows), runs=(),
                         machine="test machine", versions={}, date="today")


def test_markdown_shows_the_spread_of_several_seeds_and_names_failures():
    table = markdown_table(_result([_row("a", 97.25, 1.5), _row("b", None, None, runs=0, error="seed 0: Boom")]))
    lines = table.splitlines()
    assert lines[0].startswith("| model | params (M) |") and "onnxruntime ms (p90)" in lines[0]
    assert "| a | 3.00 | 2.90 | 0.300 | 97.25 (95.75-97.75) | 99.00 (98.00-100.00) | 1.50 (1.65) |" in lines[2]
    assert lines[2].endswith("| 12 s | 0 1 2 |")
    assert lines[3].startswith("| b | - | - | - | - | - | - |") and "(failed: seed 0: Boom)" in lines[3]


def test_one_seed_shows_plain_accuracy():
    table = markdown_table(_result([_row("a", 97.25, 1.5, runs=1)], seeds=1))
    assert "| 97.25 | 99.00 |" in table and table.splitlines()[0].endswith("| seed |")


def test_plot_needs_a_model_with_accuracy_and_latency(tmp_path):
    pytest.importorskip("matplotlib")
    assert plot_compare(_result([_row("a", None, None, runs=0)]), tmp_path / "none.png") is None
    path = plot_compare(_result([_row("a", 97.0, 1.5), _row("b", 95.0, 1.0), _row("c", 90.0, 2.0)]),
                        tmp_path / "compare.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
