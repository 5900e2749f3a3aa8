"""`efficientformer bench` and `run_bench` on the tiny config at 64x64: files, columns, MES, skips and failures.

Timing values are never asserted (the machine is shared); only that they exist and are consistent.
"""

from __future__ import annotations

import csv
import json

import pytest

from efficientformer.bench import runtimes as runtimes_module
from efficientformer.bench.mes import mobile_efficiency_score
from efficientformer.bench.report import CSV_COLUMNS
from efficientformer.bench.run import BenchConfig, run_bench
from efficientformer.bench.runtimes import Runtime, unavailable
from efficientformer.cli import main

TINY = "efficientformerv2_test,mobilenetv2_100"
# One thread: on a loaded 2-core machine two OpenMP threads wait on each other at every op.
FAST = ["--img-size", "64", "--repeats", "2", "--warmup", "1", "--batch", "1,2", "--threads", "1", "--no-isolate"]


def _read(out):
    with open(out / "bench.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return rows, json.loads((out / "bench.json").read_text())


def _check_files(out, runtimes):
    rows, data = _read(out)
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["runtime"], r["model"]) for r in rows] == [
        (runtime, model) for runtime in runtimes for model in ("efficientformerv2_test", "mobilenetv2_100")]
    for row in rows:
        assert row["error"] == ""
        assert float(row["median_ms"]) > 0 and float(row["p90_ms"]) >= float(row["min_ms"]) > 0
        assert float(row["images_per_s"]) > 0 and float(row["mes"]) > 0
        assert int(row["params_deployed"]) < int(row["params"])  # BNs folded and one head
    mnv2 = [r for r in rows if r["model"] == "mobilenetv2_100"]
    assert all(float(r["mes_vs_reference"]) == pytest.approx(100.0) for r in mnv2)
    assert all(float(r["speedup_vs_eager"]) == pytest.approx(1.0) for r in rows if r["runtime"] == "torch-eager")
    # Parity with unfused eager on the parity images (all at once): eager one image at a time differs only
    # by float rounding, every exact runtime by less than 1e-4.
    for row in rows:
        assert float(row["top1_agreement"]) == 1.0
        bound = 1e-6 if row["runtime"] == "torch-eager" else 1e-4
        assert float(row["max_abs_diff"]) <= bound and float(row["relative_error"]) < 1e-5, row
    # The tiny variant has 44,652 parameters with 10 classes, 724 of them in the head (BN(32) and two
    # Linear(32, 10); tests/models/test_summary.py); at 1000 classes the head is 64 + 2 * 33,000.
    assert rows[0]["params"] == str(44_652 - 724 + 64 + 2 * 33_000) and mnv2[0]["params"] == "3504872"
    assert data["machine"] and data["versions"]["torch"] and data["settings"]["img_size"] == [64, 64]
    assert len(data["timings"]) == 2 * len(rows)  # latency and throughput batch per row
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return rows


def test_cli_bench_torch_runtimes_writes_csv_json_png(tmp_path):
    pytest.importorskip("matplotlib", reason="bench.png needs matplotlib (pip install 'efficientformer[demo]')")
    out = tmp_path / "bench"
    code = main(["bench", "--models", TINY, "--runtime", "torch-eager,torch-fused", "--output", str(out), *FAST])
    assert code == 0
    _check_files(out, ("torch-eager", "torch-fused"))


@pytest.mark.slow
def test_cli_bench_with_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'efficientformer[onnx]')")
    pytest.importorskip("matplotlib", reason="bench.png needs matplotlib")
    out = tmp_path / "bench"
    code = main(["bench", "--models", TINY, "--img-size", "64", "--repeats", "2", "--warmup", "1",
                 "--runtime", "torch-eager,torch-fused,onnxruntime", "--threads", "1", "--output", str(out)])
    assert code == 0
    rows = _check_files(out, ("torch-eager", "torch-fused", "onnxruntime"))
    assert {r["throughput_batch"] for r in rows} == {"16"}


def test_the_approximate_path_reports_its_distance_from_exact_eager():
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'efficientformer[onnx]')")
    runtimes = ("torch-eager", "torch-fused", "onnxruntime")
    settings = dict(models=("efficientformerv2_test",), runtimes=runtimes, img_size=(64, 64), throughput_batch=None,
                    repeats=1, warmup=0, threads=1, num_classes=10)
    exact = {row.runtime: row for row in run_bench(BenchConfig(**settings), progress=False).rows}
    approximate = {row.runtime: row for row in run_bench(BenchConfig(**settings, approximate=("gelu-tanh",)),
                                                         progress=False).rows}
    # torch-eager is never approximated.
    assert exact["torch-eager"].max_abs_diff < 1e-6 and approximate["torch-eager"].max_abs_diff < 1e-6
    for runtime in ("torch-fused", "onnxruntime"):
        # tanh GELU moves the logits by far more than the exact graphs' float rounding (relative errors of
        # about 3e-7 exact and 7e-5 with tanh here), and by little.
        assert 20 * exact[runtime].relative_error < approximate[runtime].relative_error < 1e-2, runtime
        assert 20 * exact[runtime].max_abs_diff < approximate[runtime].max_abs_diff, runtime
        assert approximate[runtime].top1_agreement is not None and approximate[runtime].error is None


def test_mes_uses_deployed_params_and_reference_latency():
    result = run_bench(BenchConfig(models=("efficientformerv2_test", "mobilenetv2_100"), runtimes=("torch-eager",),
                                   img_size=(64, 64), batch=1, throughput_batch=None, warmup=0, repeats=2,
                                   num_classes=10, threads=1, reference="test"), progress=False)
    tiny, mnv2 = result.rows
    assert result.reference == "efficientformerv2_test"  # the alias resolves to the model's name
    assert tiny.throughput_batch == 1 and tiny.throughput_median_ms == tiny.median_ms
    assert tiny.mes == pytest.approx(mobile_efficiency_score(tiny.params_deployed, tiny.median_ms))
    assert tiny.mes_vs_reference == pytest.approx(100.0)
    reference = result.config.mes.relative_to(tiny.params_deployed, tiny.median_ms)
    assert mnv2.mes_vs_reference == pytest.approx(mobile_efficiency_score(mnv2.params_deployed, mnv2.median_ms,
                                                                          reference))
    # The published MobileNetV2 x1.0 has 3,504,872 parameters with 1000 classes; its classifier is
    # Linear(1280, classes), so 10 classes have 1281 * 990 fewer.
    assert mnv2.params == 3_504_872 - 1281 * 990


def test_unavailable_runtime_is_skipped_with_its_reason(monkeypatch):
    missing = Runtime("fake-missing", "needs a package that is not there", lambda model, prep: None,
                      packages=("no-such-distribution-efficientformer",))
    monkeypatch.setitem(runtimes_module.RUNTIMES, missing.name, missing)
    assert "not installed: no-such-distribution-efficientformer" in unavailable("fake-missing")
    result = run_bench(BenchConfig(models=("efficientformerv2_test",), runtimes=("fake-missing",),
                                   img_size=(64, 64), throughput_batch=None, repeats=1, warmup=0), progress=False)
    assert result.rows == () and "not installed" in result.skipped["fake-missing"]
    with pytest.raises(KeyError, match="unknown runtime"):
        unavailable("no-such-runtime")


def test_a_failing_runtime_is_reported_per_model_and_the_cli_exits_1(monkeypatch, tmp_path):
    def prepare(model, prep):
        if prep.name == "mobilenetv2_100":
            raise RuntimeError("cannot convert this model")
        return runtimes_module.RUNTIMES["torch-eager"].prepare(model, prep)

    monkeypatch.setitem(runtimes_module.RUNTIMES, "fake-broken", Runtime("fake-broken", "fails on MobileNetV2",
                                                                         prepare))
    out = tmp_path / "bench"
    code = main(["bench", "--models", TINY, "--runtime", "fake-broken", "--output", str(out), *FAST])
    assert code == 1
    rows, _ = _read(out)
    assert rows[0]["error"] == "" and float(rows[0]["median_ms"]) > 0
    assert rows[1]["error"] == "RuntimeError: cannot convert this model" and rows[1]["median_ms"] == ""


def test_bad_arguments_are_usage_errors(tmp_path):
    assert main(["bench", "--runtime", "tensorrt", "--output", str(tmp_path)]) == 2
    assert main(["bench", "--models", "efficientformerv2_nope", "--output", str(tmp_path)]) == 2
    assert main(["bench", "--batch", "0", "--output", str(tmp_path)]) == 2


def test_partial_results_are_handed_over_after_each_runtime(monkeypatch):
    for name in ("fake-first", "fake-second"):
        monkeypatch.setitem(runtimes_module.RUNTIMES, name,
                            Runtime(name, "does nothing", lambda model, prep: (lambda batch: (lambda: None))))
    seen = []
    result = run_bench(BenchConfig(models=("efficientformerv2_test",), runtimes=("fake-first", "fake-second"),
                                   img_size=(64, 64), throughput_batch=None, repeats=2, warmup=0, threads=1),
                       progress=False, on_runtime_done=seen.append)
    assert [[row.runtime for row in partial.rows] for partial in seen] == [["fake-first"]]
    assert [row.runtime for row in result.rows] == ["fake-first", "fake-second"]


def test_runtimes_of_one_group_are_timed_in_the_same_rounds(monkeypatch):
    calls = []

    def recording(name):
        return lambda model, prep: (lambda batch: (lambda: calls.append(name)))

    for name, group in (("fake-a", "pool"), ("fake-b", "pool"), ("fake-alone", "")):
        monkeypatch.setitem(runtimes_module.RUNTIMES, name, Runtime(name, "records its calls", recording(name),
                                                                    group=group))
    seen = []
    result = run_bench(BenchConfig(models=("efficientformerv2_test",), runtimes=("fake-a", "fake-alone", "fake-b"),
                                   img_size=(64, 64), throughput_batch=None, repeats=4, warmup=0, threads=1),
                       progress=False, on_runtime_done=seen.append)
    # One check call per prepared model, then the rounds: a and b alternate, the lone runtime comes after.
    assert calls == ["fake-a", "fake-b"] + ["fake-a", "fake-b", "fake-b", "fake-a"] * 2 + ["fake-alone"] * 5
    assert [[row.runtime for row in partial.rows] for partial in seen] == [["fake-a", "fake-b"]]
    assert [row.runtime for row in result.rows] == ["fake-a", "fake-alone", "fake-b"]  # in the order asked for
    assert all(row.median_ms is not None and row.error is None for row in result.rows)


def test_a_failure_at_the_throughput_batch_keeps_the_latency(monkeypatch):
    def prepare(model, prep):
        def for_batch(batch):
            if batch > 1:
                raise ValueError("this file takes batch 1 only")
            return lambda: None
        return for_batch

    monkeypatch.setitem(runtimes_module.RUNTIMES, "fake-batch1", Runtime("fake-batch1", "batch 1 only", prepare))
    result = run_bench(BenchConfig(models=("efficientformerv2_test",), runtimes=("fake-batch1",), img_size=(64, 64),
                                   batch=1, throughput_batch=4, repeats=2, warmup=0, threads=1), progress=False)
    (row,) = result.rows
    assert row.median_ms is not None and row.mes is not None
    assert row.images_per_s is None and row.throughput_median_ms is None
    assert row.error == "batch 4: ValueError: this file takes batch 1 only"


def test_each_runtime_is_reported_at_every_thread_count_with_the_faster_marked():
    result = run_bench(BenchConfig(models=("efficientformerv2_test", "mobilenetv2_100"), runtimes=("torch-eager",),
                                   img_size=(64, 64), throughput_batch=None, repeats=3, warmup=1, num_classes=10,
                                   threads=(1, 2), reference="test"), progress=False)
    assert result.threads == (1, 2) and result.to_dict()["threads"] == [1, 2]
    assert [(row.threads, row.model) for row in result.rows] == [
        (1, "efficientformerv2_test"), (1, "mobilenetv2_100"), (2, "efficientformerv2_test"), (2, "mobilenetv2_100")]
    for model in ("efficientformerv2_test", "mobilenetv2_100"):
        one, two = (row for row in result.rows if row.model == model)
        assert [one.fastest_threads, two.fastest_threads].count(True) == 1
        assert (one.fastest_threads and one.median_ms <= two.median_ms) or (two.fastest_threads
                                                                           and two.median_ms <= one.median_ms)
    # The reference is taken at the same thread count: each count's reference row scores 100.
    assert [row.mes_vs_reference for row in result.rows if row.model == "efficientformerv2_test"] == [
        pytest.approx(100.0), pytest.approx(100.0)]
    single = run_bench(BenchConfig(models=("efficientformerv2_test",), runtimes=("torch-eager",), img_size=(64, 64),
                                   throughput_batch=None, repeats=1, warmup=0, threads=1), progress=False)
    assert single.rows[0].fastest_threads is None
    with pytest.raises(ValueError, match="threads must be positive"):
        BenchConfig(threads=(0,))


def test_isolated_runtimes_are_measured_in_a_subprocess(monkeypatch):
    import subprocess

    import torch

    children = []
    real_run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: children.append(args) or real_run(*args, **kwargs))
    before = torch.get_num_threads()
    result = run_bench(BenchConfig(models=("efficientformerv2_test",), runtimes=("torch-eager", "torch-fused"),
                                   img_size=(64, 64), throughput_batch=None, repeats=2, warmup=0, num_classes=10,
                                   threads=1, isolate=True), progress=False)
    eager, fused = result.rows
    assert eager.error is None and eager.median_ms > 0 and eager.threads == 1 and fused.median_ms > 0
    # The torch runtimes share one pool: one child times them together, so the speed-up compares one moment.
    assert len(children) == 1 and fused.speedup_vs_eager == eager.median_ms / fused.median_ms
    assert torch.get_num_threads() == before  # the parent's threads are left as they were
