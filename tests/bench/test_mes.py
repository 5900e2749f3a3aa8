"""MES on hand-computed cases (SPEC 5.2)."""

from __future__ import annotations

import math

import pytest

from efficientformer.bench.mes import PAPER_MES, MESConstants, mobile_efficiency_score


@pytest.mark.parametrize("params,latency,expected", [
    (3.5e6, 0.9, 102.9), (6.1e6, 1.1, 63.8), (12.6e6, 1.6, 30.5), (26.1e6, 2.7, 12.6)])
def test_paper_scores_of_s0_s1_s2_l(params, latency, expected):
    assert mobile_efficiency_score(params, latency) == pytest.approx(expected, abs=0.05)


def test_formula_by_hand():
    # 100 * (6e6 / 3e6) ** -0.5 * (2 / 1) ** -1 = 100 / sqrt(2) / 2
    assert mobile_efficiency_score(6e6, 2.0) == pytest.approx(100 / math.sqrt(2) / 2)
    custom = MESConstants(score=10, params_unit=1e6, latency_unit_ms=4.0, params_alpha=1.0, latency_alpha=0.0)
    assert mobile_efficiency_score(5e6, 123.0, custom) == pytest.approx(2.0)


def test_relative_to_a_reference_model():
    reference = PAPER_MES.relative_to(params=3_504_872, latency_ms=7.3)
    assert mobile_efficiency_score(3_504_872, 7.3, reference) == pytest.approx(100.0)
    assert mobile_efficiency_score(3_504_872, 3.65, reference) == pytest.approx(200.0)  # twice as fast


def test_bad_values_name_the_field():
    with pytest.raises(ValueError, match="MESConstants.params_unit must be positive"):
        MESConstants(params_unit=0)
    with pytest.raises(ValueError, match="MESConstants.latency_alpha must be >= 0"):
        MESConstants(latency_alpha=-1)
    with pytest.raises(ValueError, match="positive params and latency"):
        mobile_efficiency_score(0, 1.0)
