"""Latency lookup table: decomposition, save/load, additivity bookkeeping with validation, resume after a kill."""

from __future__ import annotations

import json

import pytest
import torch

from efficientformer.factory import create_model
from efficientformer.models import get_config
from efficientformer.models.summary import param_count
from efficientformer.search.lut import LatencyTable, ParamCounter, build_entry, build_lut, decompose, example_input, space_entries
from efficientformer.search.lut_validate import calibrate_overhead, calibration_configs, validate_lut
from efficientformer.search.space import TINY_SPACE

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


def test_save_load_round_trip_and_predict(tiny_table, tmp_path):
    copy = tiny_table.save(tmp_path / "copy.json")
    loaded = LatencyTable.load(copy)
    assert loaded.entries == tiny_table.entries
    assert loaded.header["runtime"] == "torch-fused" and loaded.header["complete"] is True
    assert {"machine", "versions", "torch", "threads", "img_size", "date", "warmup", "repeats"} <= set(loaded.header)
    assert set(loaded.entries) == {e.key for e in space_entries(TINY_SPACE)}
    config = TINY_SPACE.max_config()
    expected = sum(loaded.entries[e.key]["median_ms"] for e in decompose(config))
    assert loaded.predict(config) == pytest.approx(expected)
    assert all(ms > 0 for _, ms in loaded.breakdown(config))


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


def test_validation_and_overhead_calibration_run(tiny_table):
    test = get_config("efficientformerv2_test").replace(name="test")
    calibration = calibration_configs(TINY_SPACE, 2)
    overhead = calibrate_overhead(tiny_table, calibration)
    assert tiny_table.header["overhead"]["ms"] == overhead
    assert set(tiny_table.header["overhead"]["calibration"]) == {c.name for c in calibration}
    rows = validate_lut(tiny_table, [test, TINY_SPACE.min_config()], with_entries=True)
    for row, config in zip(rows, (test, TINY_SPACE.min_config())):
        assert row.sum_ms == pytest.approx(tiny_table.sum_ms(config))
        assert row.predicted_ms == pytest.approx(row.sum_ms + overhead)
        assert row.measured_ms > 0 and row.error == pytest.approx((row.predicted_ms - row.measured_ms) / row.measured_ms)
        assert row.session_sum_ms > 0 and row.additivity_error == pytest.approx(
            (row.session_sum_ms + overhead - row.measured_ms) / row.measured_ms)
    # The validation nets are not the calibration nets.
    assert not {r.name for r in rows} & set(tiny_table.header["overhead"]["calibration"])


def test_build_resumes_after_a_kill_without_remeasuring(tmp_path):
    path = tmp_path / "lut.json"
    total = len(space_entries(TINY_SPACE))

    class Killed(Exception):
        pass

    def kill(batch):
        raise Killed

    with pytest.raises(Killed):
        build_lut(TINY_SPACE, "torch-fused", path=path, chunk=4, on_measured=kill, **FAST)
    partial = LatencyTable.load(path)
    assert len(partial.entries) == 4 and partial.header["complete"] is False
    measured = []
    table = build_lut(TINY_SPACE, "torch-fused", path=path, chunk=4, on_measured=measured.extend, **FAST)
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
def test_onnxruntime_entry(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is optional: pip install 'efficientformer[onnx]'")
    pytest.importorskip("onnxscript", reason="the ONNX exporter needs onnxscript")
    entries = [e for e in space_entries(TINY_SPACE) if e.kind == "ffn"][:1]
    table = build_lut(TINY_SPACE, "onnxruntime", path=tmp_path / "ort.json", entries=entries, **FAST)
    assert set(table.entries) == {e.key for e in entries}
    assert table.header["versions"]["onnxruntime"] != "not installed"
    assert all(v["median_ms"] > 0 for v in table.entries.values())


def test_table_predicts_models_create_model_builds(tiny_table):
    # A published-style tiny variant is a point of the tiny space and has a prediction.
    config = get_config("efficientformerv2_test")
    assert TINY_SPACE.contains(config)
    assert tiny_table.predict(config) > 0
    assert create_model(config).config == config
