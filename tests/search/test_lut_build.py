"""Build-speed bookkeeping of the latency table: every distinct entry is built (exported, loaded, warmed up) once,
and the build records where its time goes.

The synthetic clock (synthetic_lut.py) counts the modules its runner prepares and the calls each
gets, so a build that measured an entry twice, or a validation that exported a network twice,
shows in the counts without any real timing.
"""

from __future__ import annotations

import pytest

from efficientformer.models import get_config
from efficientformer.models.efficientformer_v2 import EfficientFormerV2
from efficientformer.search import lut, runtimes
from efficientformer.search.lut import LatencyTable, build_lut, decompose, space_entries
from efficientformer.search.lut_validate import validate_lut
from efficientformer.search.space import TINY_SPACE
from synthetic_lut import SyntheticClock

WARMUP, REPEATS = 1, 3


def _build(path, clock, **kwargs):
    return build_lut(TINY_SPACE, "torch-fused", path=path, warmup=WARMUP, repeats=REPEATS, progress=False,
                     runner=clock.runner, timer=clock, **kwargs)


def test_each_distinct_entry_is_built_and_timed_once(tmp_path):
    configs = [TINY_SPACE.max_config(), TINY_SPACE.min_config(), get_config("efficientformerv2_test")]
    wanted = [entry for config in configs for entry in decompose(config)]  # stages repeat blocks, nets share parts
    distinct = {entry.key for entry in wanted}
    assert len(wanted) > len(distinct) + 10  # the request is full of repeats
    clock, path = SyntheticClock(warmup=WARMUP), tmp_path / "lut.json"
    measured = []
    table = _build(path, clock, entries=wanted + wanted[:5], chunk=4, on_measured=measured.extend)
    assert clock.built == len(distinct) and set(table.entries) == distinct
    assert sorted(e.key for e in measured) == sorted(distinct)  # each key in one chunk only
    assert set(clock.calls.values()) == {WARMUP + REPEATS}  # every prepared entry warmed up and timed once
    assert table.header["complete"] is False  # a subset of the space

    # The rest of the space, resumed from the file: only the entries it lacks are built.
    total = len({entry.key for entry in space_entries(TINY_SPACE)})
    table = _build(path, clock)
    assert clock.built == total and table.header["complete"] is True
    # A later subset build of a finished table builds nothing and leaves it complete.
    table = _build(path, clock, entries=wanted[:3])
    assert clock.built == total and table.header["complete"] is True


def test_validation_with_entries_prepares_each_network_and_entry_once(tmp_path, monkeypatch):
    clock = SyntheticClock(warmup=WARMUP)
    table = _build(tmp_path / "lut.json", clock)
    prepared: list[str] = []

    def counting_runner(module, example, runtime, threads=None):
        prepared.append("net" if type(module) is EfficientFormerV2 else "entry")
        return lambda: None

    monkeypatch.setattr(runtimes, "make_runner", counting_runner)
    configs = [get_config("efficientformerv2_test").replace(name="test"), TINY_SPACE.min_config()]
    rows = validate_lut(table, configs, with_entries=True)
    assert [row.name for row in rows] == ["test", configs[1].name]
    assert all(row.session_sum_ms is not None for row in rows)
    # Two sessions time the networks (alone, then among their entries) on one export each.
    assert prepared.count("net") == len(configs)
    assert prepared.count("entry") == len({e.key for c in configs for e in decompose(c)})
    prepared.clear()
    validate_lut(table, configs)
    assert prepared == ["net"] * len(configs)


@pytest.mark.parametrize("chunk", [1, 7])
def test_resume_never_rebuilds_a_finished_entry(tmp_path, chunk):
    class Killed(Exception):
        pass

    chunks = []

    def kill_after_two(batch):
        chunks.append(batch)
        if len(chunks) == 2:
            raise Killed

    clock, path = SyntheticClock(warmup=WARMUP), tmp_path / "lut.json"
    with pytest.raises(Killed):
        _build(path, clock, chunk=chunk, on_measured=kill_after_two)
    built_before = clock.built
    assert built_before == 2 * chunk
    table = _build(path, clock, chunk=chunk)
    assert clock.built == len(space_entries(TINY_SPACE)) and table.header["complete"] is True
    assert set(clock.calls.values()) == {WARMUP + REPEATS}


def test_build_records_where_its_time_goes(tmp_path, monkeypatch):
    """Preparing (build, fuse, export, load) each entry is recorded per entry and summed in the header, over resumes."""
    wall = [0.0]
    monkeypatch.setattr(lut.time, "perf_counter", lambda: wall[0])
    clock = SyntheticClock(warmup=WARMUP)

    def runner(module, example):  # preparing an entry takes 2 s of the fake wall clock, timing none
        wall[0] += 2.0
        return clock.runner(module, example)

    class Killed(Exception):
        pass

    def kill(batch):
        raise Killed

    path = tmp_path / "lut.json"
    common = {"path": path, "warmup": WARMUP, "repeats": REPEATS, "progress": False, "runner": runner,
              "timer": clock, "chunk": 4}
    with pytest.raises(Killed):
        build_lut(TINY_SPACE, "torch-fused", on_measured=kill, **common)
    assert LatencyTable.load(path).header["build_s"]["prepare"] == 4 * 2.0
    table = build_lut(TINY_SPACE, "torch-fused", **common)
    total = len(space_entries(TINY_SPACE))
    assert {entry["prepare_s"] for entry in table.entries.values()} == {2.0}
    assert table.header["build_s"] == {"prepare": total * 2.0, "timing": 0.0, "save": 0.0}
