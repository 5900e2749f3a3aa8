"""`lut --validate`'s accuracy report: the share of networks within +-10% of their measured latency, the worst ones.

Issue 15's accuracy target is a share of networks predicted within +-10%; these tests fix what the
share counts (|predicted - measured| / measured <= 10%, boundary included, both signs) on rows whose
answer is known by hand, and through the CLI on a synthetic table with made-up measurements.
"""

from __future__ import annotations

import functools
import json

import pytest

from efficientformer.cli import main
from efficientformer.search import lut_validate
from efficientformer.search.lut import build_lut
from efficientformer.search.lut_validate import ValidationRow, accuracy_report, validation_configs, within_tolerance
from efficientformer.search.space import TINY_SPACE
from synthetic_lut import SyntheticClock


def row(name: str, predicted: float, measured: float) -> ValidationRow:
    return ValidationRow(name, predicted_ms=predicted, sum_ms=predicted, measured_ms=measured,
                         measured_p90_ms=measured)


# name -> (predicted, measured); the error is (predicted - measured) / measured.
ROWS = {
    "plus10": (11.0, 10.0),    # +10% exactly: within
    "minus10": (9.0, 10.0),    # -10% exactly: within (relative to predicted it would be -11.1%: out)
    "float110": (1.1, 1.0),    # +10% whose float error is 0.10000000000000009: within
    "plus5": (10.5, 10.0),     # +5%: within
    "plus15": (11.5, 10.0),    # +15%: out
    "minus11": (8.9, 10.0),    # -11%: out
    "minus20": (8.0, 10.0),    # -20%: out
    "minus30": (7.0, 10.0),    # -30%: out, the worst
}


def test_share_within_ten_percent_on_hand_made_rows():
    rows = [row(name, *values) for name, values in ROWS.items()]
    assert [within_tolerance(r) for r in rows] == [True, True, True, True, False, False, False, False]
    report = accuracy_report(rows, worst=3)
    # A signed test (error <= 10%) would count 7 of 8, a strict one (< 10%) 1, errors relative to the
    # prediction 3: only |predicted - measured| / measured <= 10% gives 4 of 8.
    assert (report["within"], report["networks"]) == (4, 8) and report["share_within"] == 0.5
    assert report["tolerance"] == 0.10
    # Ranked by |error|: the -30% row first although +15% is the largest signed error.
    assert [w["name"] for w in report["worst"]] == ["minus30", "minus20", "plus15"]
    assert report["worst"][0] == {"name": "minus30", "predicted_ms": 7.0, "measured_ms": 10.0,
                                  "error": pytest.approx(-0.3)}
    errors = [0.10, -0.10, 0.10, 0.05, 0.15, -0.11, -0.20, -0.30]
    assert report["mean_error"] == pytest.approx(sum(errors) / 8)
    assert report["mean_abs_error"] == pytest.approx(sum(map(abs, errors)) / 8)
    assert report["max_abs_error"] == pytest.approx(0.30)
    # A looser tolerance moves the boundary: at 20% the -20% row is in, -30% is still out.
    assert accuracy_report(rows, tolerance=0.20)["within"] == 7
    with pytest.raises(ValueError, match="at least one"):
        accuracy_report([])


# Relative errors given to the validation networks of the tiny space (4 random subnets, no published variant).
ERRORS = (0.10, -0.10, 0.25, -0.50)


def _lut_command(monkeypatch, tmp_path, *flags: str) -> int:
    clock = SyntheticClock(warmup=1)
    monkeypatch.setattr("efficientformer.cli.lut.build_lut",
                        functools.partial(build_lut, runner=clock.runner, timer=clock))

    def measured(table, configs, **_):  # measured = predicted / (1 + error): the error is exact
        return {c.name: (table.predict(c) / (1 + e), table.predict(c)) for c, e in zip(configs, ERRORS, strict=True)}

    monkeypatch.setattr(lut_validate, "measure_networks", measured)
    return main(["lut", "--space", "tiny", "--img-size", "64", "--output", str(tmp_path / "lut.json"), "--warmup", "1",
                 "--repeats", "3", "--calibrate", "0", "--validate", "--random", str(len(ERRORS)), "--worst", "2",
                 *flags])


def test_validate_reports_the_share_and_the_worst_networks(monkeypatch, tmp_path, capsys):
    names = [c.name for c in validation_configs(TINY_SPACE, len(ERRORS))]
    assert _lut_command(monkeypatch, tmp_path, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["error"] for r in report["rows"]] == pytest.approx(list(ERRORS))
    accuracy = report["accuracy"]
    assert (accuracy["within"], accuracy["networks"], accuracy["share_within"]) == (2, 4, 0.5)
    assert [w["name"] for w in accuracy["worst"]] == [names[3], names[2]]  # -50%, then +25%
    assert accuracy["worst"][0]["error"] == pytest.approx(-0.5)
    assert accuracy["worst"][0]["measured_ms"] == pytest.approx(2 * accuracy["worst"][0]["predicted_ms"])

    assert _lut_command(monkeypatch, tmp_path) == 0  # the table resumes complete; the printed report
    text = capsys.readouterr().out
    assert "2 of 4 networks (50.0%) within +-10%" in text
    worst = text[text.index("worst 2 networks"):]
    assert names[3] in worst and names[2] in worst and names[0] not in worst and "-50.0%" in worst
