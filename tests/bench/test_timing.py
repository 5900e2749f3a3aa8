"""The latency harness on fake callables and a fake clock: call order, warm-up count, statistics."""

from __future__ import annotations

import pytest

from efficientformer.bench.timing import Timing, percentile, rotation, time_interleaved


class FakeClock:
    """A clock that only moves when a callable advances it, so every measured time is known exactly."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def recording(calls: list[str], name: str, clock: FakeClock | None = None, cost_s: float = 0.0):
    def fn():
        calls.append(name)
        if clock is not None:
            clock.now += cost_s
    return fn


def test_warmup_then_rotating_rounds():
    calls: list[str] = []
    fns = {name: recording(calls, name) for name in ("a", "b", "c")}
    timings = time_interleaved(fns, warmup=2, repeats=4, progress=False)
    warm, timed = calls[:6], calls[6:]
    assert warm == ["a", "a", "b", "b", "c", "c"]
    assert timed == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert list(timings) == ["a", "b", "c"]
    assert all(t.repeats == 4 for t in timings.values())


def test_every_callable_leads_a_round_equally_often():
    calls: list[str] = []
    names = [f"m{i}" for i in range(5)]
    time_interleaved({n: recording(calls, n) for n in names}, warmup=0, repeats=10, progress=False)
    firsts = [calls[i] for i in range(0, len(calls), len(names))]
    assert sorted(firsts) == sorted(names * 2)
    assert all(calls.count(n) == 10 for n in names)


def test_times_come_from_the_clock_per_call():
    clock = FakeClock()
    calls: list[str] = []
    fns = {"fast": recording(calls, "fast", clock, 0.001), "slow": recording(calls, "slow", clock, 0.004)}
    timings = time_interleaved(fns, warmup=3, repeats=5, progress=False, clock=clock)
    assert timings["fast"].times_ms == pytest.approx((1.0,) * 5)
    assert timings["slow"].median_ms == pytest.approx(4.0)
    assert timings["slow"].min_ms == pytest.approx(4.0)


def test_statistics_on_known_times():
    timing = Timing("x", (5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 7.0, 8.0, 9.0))
    assert timing.median_ms == pytest.approx(5.5)
    assert timing.mean_ms == pytest.approx(5.5)
    assert timing.min_ms == 1.0
    assert timing.p90_ms == pytest.approx(9.1)  # numpy.percentile(..., 90) with linear interpolation
    data = timing.to_dict()
    assert data["times_ms"][0] == 5.0 and data["repeats"] == 10 and data["p90_ms"] == pytest.approx(9.1)


def test_percentile_and_rotation_edges():
    assert percentile([3.0], 0.9) == 3.0
    assert percentile([1.0, 2.0], 0.0) == 1.0 and percentile([1.0, 2.0], 1.0) == 2.0
    with pytest.raises(ValueError, match="empty"):
        percentile([], 0.5)
    assert rotation(["a", "b", "c"], 4) == ["b", "c", "a"]
    assert time_interleaved({}, progress=False) == {}


@pytest.mark.parametrize("kwargs,match", [({"repeats": 0}, "repeats"), ({"warmup": -1}, "warmup")])
def test_bad_counts_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        time_interleaved({"a": lambda: None}, progress=False, **kwargs)
    with pytest.raises(ValueError, match="no times"):
        Timing("empty", ())
