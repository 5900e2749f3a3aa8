"""Latency lookup table: decomposition, save/load, sums on a synthetic clock, validation, resume after a kill."""

from __future__ import annotations

import json

import pytest
import torch

from efficientformer.models import get_config
from efficientformer.models.summary import param_count
from efficientformer.search import lut_validate
from efficientformer.search.lut import (
    LatencyTable,
    ParamCounter,
    build_entry,
    build_lut,
    decompose,
    example_input,
    space_entries,
)
from efficientformer.search.lut_validate import ValidationRow, calibrate, calibration_configs, validate_lut
from efficientformer.search.runtimes import Preparer
from efficientformer.search.space import TINY_SPACE
from synthetic_lut import OUTLIER, SyntheticClock

FAST = {"warmup": 1, "repeats": 3, "progress": False}


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("lut") / "lut.json"
    return build_lut(TINY_SPACE, "torch-fused", path=path, **FAST)


def test_decompose_counts_every_part():
    config = TINY_SPACE.max_config()
    entries = decompose(config)
    blocks = sum(config.depths)
    attention = sum(s.num_attn for s in config.stages)
    assert len(entries) == 1 + 3 + blocks + attention + 1
    assert [e.kind for e in entries].count("down_attn") == 1
    assert {e.stride for e in entries if e.kind == "attn" and e.grid == config.stage_grids[2]} == {2}
    known = {e.key for e in space_entries(TINY_SPACE)}
    for _ in range(5):
        sample = TINY_SPACE.sample(torch.Generator().manual_seed(_))
        assert {e.key for e in decompose(sample)} <= known


def test_param_counter_is_exact():
    counter = ParamCounter()
    generator = torch.Generator().manual_seed(3)
    configs = [TINY_SPACE.max_config(), TINY_SPACE.min_config(), get_config("efficientformerv2_test")]
    configs += [TINY_SPACE.sample(generator) for _ in range(4)]
    configs.append(get_config("efficientformerv2_s0").replace(distillation=False))
    for config in configs:
        assert counter(config) == param_count(config), config.name


def test_entry_modules_keep_their_shapes():
    one_per_kind = {e.kind: e for e in space_entries(TINY_SPACE)}.values()
    for entry in one_per_kind:
        out = build_entry(entry, TINY_SPACE.base)(example_input(entry))
        if entry.kind == "head":
            assert out.shape == (1, entry.out_dim)
        else:
            assert out.shape[:2] == (1, entry.out_dim)


def test_save_load_round_trip(tiny_table, tmp_path):
    copy = tiny_table.save(tmp_path / "copy.json")
    loaded = LatencyTable.load(copy)
    assert loaded.entries == tiny_table.entries
    assert loaded.header["runtime"] == "torch-fused" and loaded.header["complete"] is True
    assert {"machine", "versions", "torch", "threads", "img_size", "date", "warmup", "repeats"} <= set(loaded.header)
    assert set(loaded.entries) == {e.key for e in space_entries(TINY_SPACE)}
    assert loaded.predict(TINY_SPACE.max_config()) == tiny_table.predict(TINY_SPACE.max_config())


def synthetic_table(tmp_path, **kwargs) -> LatencyTable:
    clock = SyntheticClock(warmup=1)
    return build_lut(TINY_SPACE, "torch-fused", path=tmp_path / "synthetic.json", warmup=1, repeats=3,
                     progress=False, runner=clock.runner, timer=clock, **kwargs)


def test_prediction_is_the_sum_of_the_entries_on_a_synthetic_clock(tmp_path):
    # Costs (synthetic_lut): stem 1, down 2, down_attn 4, attention 5 (stride 2) or 3, head 0.25 and
    # hidden/16 per FFN. efficientformerv2_test has FFN hidden widths 16, 32 | 48, 72 (stage 3, one stride
    # attention block) | 96, 64 (stage 4, one attention block), two plain downsamples and the attention one:
    # 1 + 2 * 2 + 4 + (16 + 32 + 48 + 72 + 96 + 64) / 16 + 5 + 3 + 0.25 = 37.75 ms.
    table = LatencyTable.load(synthetic_table(tmp_path).path)
    test = get_config("efficientformerv2_test")
    assert table.predict(test) == pytest.approx(37.75, abs=1e-9)
    # The smallest subnet: widths 8/16/16/24, one FFN block of ratio 2 per stage, no attention.
    assert table.predict(TINY_SPACE.min_config()) == pytest.approx(1 + 2 * 2 + 4 + (16 + 32 + 32 + 48) / 16 + 0.25,
                                                                   abs=1e-9)
    breakdown = dict(table.breakdown(test))
    assert breakdown["attn:24@4x4/s2"] == pytest.approx(5.0) and breakdown["attn:32@2x2/s1"] == pytest.approx(3.0)
    assert breakdown["ffn:24x72@4x4"] == pytest.approx(4.5) and breakdown["head:32>10@2x2"] == pytest.approx(0.25)
    # One outlier in three timed calls: the median is the cost, p90 interpolates towards the outlier.
    stem = table.entries["stem:3>8@64x64"]
    assert stem["median_ms"] == pytest.approx(1.0) and stem["p90_ms"] == pytest.approx(1.0 + 0.8 * (OUTLIER - 1.0))
    # Calibrated: the scale applies to the sum, the cold-weight term to the network's parameters, and the
    # overhead is added once per network, not per entry.
    table.header["calibration"] = {"scale": 2.0, "ms_per_mparam": 3.0, "overhead_ms": 0.5}
    assert table.sum_ms(test) == pytest.approx(37.75)
    assert table.predict(test) == pytest.approx(2.0 * 37.75 + 3.0 * param_count(test) / 1e6 + 0.5)


def test_missing_entry_and_wrong_size_are_named(tiny_table, tmp_path):
    config = TINY_SPACE.max_config()
    key = decompose(config)[1].key
    data = tiny_table.to_dict()
    del data["entries"][key]
    path = tmp_path / "holes.json"
    path.write_text(json.dumps(data))
    with pytest.raises(KeyError, match=key.replace("|", r"\|")):
        LatencyTable.load(path).predict(config)
    with pytest.raises(ValueError, match="img_size"):
        tiny_table.predict(config.replace(img_size=(96, 96)))
    with pytest.raises(ValueError, match="not a latency table"):
        (tmp_path / "other.json").write_text("{}")
        LatencyTable.load(tmp_path / "other.json")


def test_validation_row_errors_by_hand():
    row = ValidationRow("net", predicted_ms=11.0, sum_ms=10.0, measured_ms=8.0, measured_p90_ms=9.0,
                        session_sum_ms=6.0)
    assert row.error == pytest.approx(0.375)  # (11 - 8) / 8: positive when the table over-predicts
    assert row.additivity_error == pytest.approx(-0.125)  # (6 + the overhead 1 - 8) / 8
    scaled = ValidationRow("net", predicted_ms=21.0, sum_ms=10.0, measured_ms=16.0, measured_p90_ms=17.0,
                           session_sum_ms=6.0, scale=2.0)
    assert scaled.additivity_error == pytest.approx(-0.1875)  # (21 + 2 x (6 - 10) - 16) / 16
    assert ValidationRow("net", 11.0, 10.0, 8.0, 9.0).additivity_error is None


def test_validation_and_calibration_run(tiny_table):
    test = get_config("efficientformerv2_test").replace(name="test")
    calibration = calibration_configs(TINY_SPACE, 3)
    terms = calibrate(tiny_table, calibration)
    assert tiny_table.calibration == pytest.approx(terms)
    assert set(tiny_table.header["calibration"]["networks"]) == {c.name for c in calibration}
    rows = validate_lut(tiny_table, [test, TINY_SPACE.min_config()], with_entries=True)
    assert [row.name for row in rows] == ["test", TINY_SPACE.min_config().name]
    for row, config in zip(rows, (test, TINY_SPACE.min_config())):
        entries = sum(tiny_table.entries[e.key]["median_ms"] for e in decompose(config))
        expected = terms["scale"] * entries + terms["ms_per_mparam"] * param_count(config) / 1e6 + terms["overhead_ms"]
        assert row.sum_ms == pytest.approx(entries) and row.predicted_ms == pytest.approx(expected)
        assert row.measured_p90_ms >= row.measured_ms > 0 and row.session_sum_ms > 0
    # The validation nets are not the calibration nets.
    assert not {r.name for r in rows} & set(tiny_table.header["calibration"]["networks"])


def _fake_networks(monkeypatch, latency):
    """Make `measure_networks` report latency(sum, params) for each network instead of timing it."""
    def measure(table, configs, progress=None):
        return {c.name: (latency(table.sum_ms(c), param_count(c)), 0.0) for c in configs}
    monkeypatch.setattr(lut_validate, "measure_networks", measure)


def test_calibration_recovers_the_three_terms_and_falls_back_to_a_constant(tiny_table, monkeypatch):
    """Networks that cost exactly 1.5 x sum + 0.2 ms per M params + 0.3 ms give back those terms; with two
    networks, or a fit with a non-positive scale, only the constant is fitted (median of measured - sum)."""
    configs = calibration_configs(TINY_SPACE, 5)
    _fake_networks(monkeypatch, lambda total, params: 1.5 * total + 0.2 * params / 1e6 + 0.3)
    terms = calibrate(tiny_table, configs)
    assert terms == pytest.approx({"scale": 1.5, "ms_per_mparam": 0.2, "overhead_ms": 0.3}, abs=1e-6)
    config = TINY_SPACE.max_config()
    assert tiny_table.predict(config) == pytest.approx(1.5 * tiny_table.sum_ms(config)
                                                       + 0.2 * param_count(config) / 1e6 + 0.3, rel=1e-6)
    terms = calibrate(tiny_table, configs[:2])
    differences = sorted(0.5 * tiny_table.sum_ms(c) + 0.2 * param_count(c) / 1e6 + 0.3 for c in configs[:2])
    assert terms == pytest.approx({"scale": 1.0, "ms_per_mparam": 0.0, "overhead_ms": sum(differences) / 2})
    _fake_networks(monkeypatch, lambda total, params: 50.0 - total)  # slower when the sum is smaller: no physics
    terms = calibrate(tiny_table, configs)
    assert terms["scale"] == 1.0 and terms["ms_per_mparam"] == 0.0


def test_build_resumes_after_a_kill_without_remeasuring(tmp_path):
    path = tmp_path / "lut.json"
    total = len(space_entries(TINY_SPACE))

    class Killed(Exception):
        pass

    def kill(batch):
        raise Killed

    clock = SyntheticClock(warmup=FAST["warmup"])
    synthetic = {"runner": clock.runner, "timer": clock}
    with pytest.raises(Killed):
        build_lut(TINY_SPACE, "torch-fused", path=path, chunk=4, on_measured=kill, **FAST, **synthetic)
    partial = LatencyTable.load(path)
    assert len(partial.entries) == 4 and partial.header["complete"] is False
    measured = []
    table = build_lut(TINY_SPACE, "torch-fused", path=path, chunk=4, on_measured=measured.extend, **FAST, **synthetic)
    assert clock.built == total  # every entry was built (and timed) exactly once over both runs
    assert len(measured) == total - 4
    assert not {e.key for e in measured} & set(partial.entries)
    assert {k: table.entries[k] for k in partial.entries} == partial.entries
    assert table.header["complete"] is True and len(LatencyTable.load(path).entries) == total
    with pytest.raises(ValueError, match="repeats"):
        build_lut(TINY_SPACE, "torch-fused", path=path, warmup=1, repeats=4, progress=False)


def test_cpu_clock_needs_one_thread():
    with pytest.raises(ValueError, match="threads=1"):
        build_lut(TINY_SPACE, "torch-fused", threads=2, clock="cpu", **FAST)


@pytest.mark.export
@pytest.mark.parametrize("runtime, package", [("onnxruntime", "onnxruntime"), ("executorch", "executorch.runtime"),
                                              ("openvino", "openvino")])
def test_exported_runtime_entries_build_and_resume(runtime, package, tmp_path):
    pytest.importorskip(package, reason=f"{runtime} is optional")
    if runtime == "onnxruntime":
        pytest.importorskip("onnxscript", reason="the ONNX exporter needs onnxscript")
    wanted = [next(e for e in space_entries(TINY_SPACE) if e.kind == kind) for kind in ("ffn", "attn")]
    path = tmp_path / f"{runtime}.json"
    first = build_lut(TINY_SPACE, runtime, path=path, entries=wanted[:1], threads=1, clock="cpu", **FAST)
    assert set(first.entries) == {wanted[0].key}
    measured = []
    table = build_lut(TINY_SPACE, runtime, path=path, entries=wanted, threads=1, clock="cpu",
                      on_measured=measured.extend, **FAST)
    assert [e.key for e in measured] == [wanted[1].key]  # the finished entry was not measured again
    assert table.entries[wanted[0].key] == first.entries[wanted[0].key]
    assert table.header["runtime"] == runtime and table.header["versions"][runtime] != "not installed"
    assert all(v["median_ms"] > 0 for v in table.entries.values())


@pytest.mark.export
def test_parallel_lowering_runs_the_given_modules_and_builds_a_table(tmp_path):
    """Entries lowered by worker processes are the modules this process built (same outputs as eager), and a
    table built with two workers has every requested entry."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is optional")
    pytest.importorskip("onnxscript", reason="the ONNX exporter needs onnxscript")
    wanted = [next(e for e in space_entries(TINY_SPACE) if e.kind == kind) for kind in ("ffn", "attn", "down")]
    modules = {e.key: (build_entry(e, TINY_SPACE.base).eval(), example_input(e)) for e in wanted}
    with Preparer("onnxruntime", threads=1, workers=2) as preparer:
        assert preparer.parallel
        prepared = preparer.prepare(modules)
    assert list(prepared) == list(modules)
    for key, (call, seconds) in prepared.items():
        module, example = modules[key]
        with torch.inference_mode():
            expected = module(example)
        torch.testing.assert_close(torch.from_numpy(call()[0]), expected, atol=1e-4, rtol=1e-4)
        assert seconds > 0
    table = build_lut(TINY_SPACE, "onnxruntime", path=tmp_path / "lut.json", entries=wanted, threads=1, clock="cpu",
                      workers=2, **FAST)
    assert set(table.entries) == {e.key for e in wanted}
    assert all(v["median_ms"] > 0 and v["prepare_s"] > 0 for v in table.entries.values())
