"""Post-training int8: calibration sources, the int8 tolerance, ONNX (onnxruntime) and ExecuTorch (PT2E) files."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch

import efficientformer
from efficientformer.cli import main
from efficientformer.export import FORMATS, CalibrationWarning, ParityError, calibration_images, export_model
from efficientformer.export.parity import synthetic_images
from efficientformer.export.quantize import compare_int8, interleaved_latency_ms
from support import randomize_

pytestmark = pytest.mark.export


def write_images(folder, count, seed=0):
    """`count` PNGs in `folder` of the parity kind (gradients, stripes with a disc, noise); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(synthetic_images(count, seed=seed + 100)):  # not the parity images themselves
        path = folder / f"img{index:02d}.png"
        image.save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def tiny():
    return randomize_(efficientformer.create_model("efficientformerv2_test")).eval()


def test_calibration_sources(tmp_path):
    flat = write_images(tmp_path / "flat", 5)
    images, where = calibration_images(tmp_path / "flat", 32, count=3)
    assert images.shape == (3, 3, 32, 32) and where == str(tmp_path / "flat")
    by_hand = torch.stack([calibration_images([p], 32)[0][0] for p in (flat[0], flat[2], flat[4])])
    assert torch.equal(images, by_hand)  # spread evenly over the sorted files: the first, middle and last
    write_images(tmp_path / "classes" / "cat", 2, seed=1)
    write_images(tmp_path / "classes" / "dog", 2, seed=2)
    assert calibration_images(tmp_path / "classes", 32)[0].shape == (4, 3, 32, 32)  # an ImageFolder
    listing = tmp_path / "list.csv"
    listing.write_text("path,label\nflat/img00.png,0\nflat/img01.png,1\n")
    assert calibration_images(listing, (32, 48))[0].shape == (2, 3, 32, 48)
    assert calibration_images([str(p) for p in flat], 32, count=2)[0].shape == (2, 3, 32, 32)
    with pytest.warns(CalibrationWarning, match="parity images"):
        parity, where = calibration_images(None, 32)
    assert parity.shape == (4, 3, 32, 32) and where == "parity images"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty has no images"):
        calibration_images(tmp_path / "empty", 32)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        calibration_images(tmp_path / "nowhere", 32)
    with pytest.raises(ValueError, match="count must be >= 1"):
        calibration_images(tmp_path / "flat", 32, count=0)


def test_int8_tolerance():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(4, 10))
    close = compare_int8(reference, reference + 0.02 * rng.normal(size=(4, 10)), runtime="x", format="onnx")
    assert close.passed and close.top1_agreement == 1.0 and close.relative_error < 0.05
    assert close.cosine_similarity > 0.99 and "top-1 agreement 100%" in close.summary()
    shuffled = compare_int8(reference, reference[:, ::-1], runtime="x", format="onnx")  # a layout bug
    assert not shuffled.passed and shuffled.relative_error > 0.5
    scaled = compare_int8(reference, 1.6 * reference, runtime="x", format="onnx")  # same classes, wrong scale
    assert scaled.top1_agreement == 1.0 and not scaled.passed
    nan = compare_int8(reference, np.full_like(reference, np.nan), runtime="x", format="onnx")
    assert not nan.passed
    exact = compare_int8(reference, reference, runtime="x", format="onnx").to_dict()
    assert exact["passed"] is True and "atol" not in exact and json.loads(json.dumps(exact, allow_nan=False))


def test_interleaved_latency_reports_each_runner():
    calls = {"a": 0, "b": 0}

    def counting(name):
        def run(batch):
            calls[name] += 1
            return batch
        return run

    latency = interleaved_latency_ms({"a": counting("a"), "b": counting("b")}, np.zeros((1, 3)), rounds=2, calls=3)
    assert set(latency) == {"a", "b"} and all(value >= 0 for value in latency.values())
    assert calls == {"a": 7, "b": 7}  # one warm-up call, then rounds x calls


def test_int8_needs_a_format_with_a_quantizer(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(FORMATS, "fake", dataclasses.replace(FORMATS["onnx"], name="fake", quantize=None))
    with pytest.raises(ValueError, match="no int8 export for format 'fake'; int8 is available for onnx, executorch"):
        export_model(tiny, tmp_path / "x.fake", "fake", int8=True)


def test_cli_onnx_int8_with_calibration_folder(tiny, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[onnx]')")
    pytest.importorskip("onnxscript", reason="onnxscript is not installed (pip install -e '.[onnx]')")
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[onnx]')")
    checkpoint = efficientformer.save_checkpoint(tiny, tmp_path / "tiny.safetensors")
    write_images(tmp_path / "calib", 6)
    output = tmp_path / "tiny_int8.onnx"
    assert main(["export", "--weights", str(checkpoint), "--format", "onnx", "--int8", "--calib",
                 str(tmp_path / "calib"), "--calib-count", "4", "--output", str(output), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    parity, file = data["parity"], data["file"]
    assert parity["passed"] and parity["top1_agreement"] >= 0.5 and parity["relative_error"] <= 0.5
    assert 0.9 < parity["cosine_similarity"] <= 1.0 + 1e-6 and parity["max_abs_diff"] > 0  # int8 is not exact
    assert file["int8"] and file["num_calib_images"] == 4 and file["calib_source"] == str(tmp_path / "calib")
    assert file["num_bytes"] == output.stat().st_size and file["fp32_num_bytes"] > 0
    assert set(file["latency_ms"]) == {"fp32", "int8"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib", "tiny.safetensors", "tiny_int8.onnx"]
    ops = {node.op_type for node in onnx.load(str(output)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format


@pytest.mark.slow
def test_executorch_int8(tiny, tmp_path):
    pytest.importorskip("executorch.runtime", reason="executorch is not installed (pip install -e '.[executorch]')")
    pytest.importorskip("torchao", reason="torchao is not installed (pip install -e '.[executorch]')")
    write_images(tmp_path / "calib", 8)
    result = export_model(tiny, tmp_path / "tiny_int8.pte", "executorch", int8=True, calib=tmp_path / "calib")
    file, report = result.artifact, result.parity
    assert file.artifact.int8 and file.artifact.input_shape == (1, 3, 64, 64) and file.num_calib_images == 8
    assert report.passed and report.runtime.startswith("executorch") and report.max_abs_diff > 0
    assert file.num_bytes < file.fp32_num_bytes  # int8 weights
    print(f"tiny int8 .pte: {report.summary()}; {file.fp32_num_bytes} -> {file.num_bytes} bytes, {file.latency_ms}")


@pytest.mark.slow
def test_executorch_int8_without_calibration_warns_and_a_strict_tolerance_fails(tiny, tmp_path):
    pytest.importorskip("executorch.runtime", reason="executorch is not installed (pip install -e '.[executorch]')")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        with pytest.raises(CalibrationWarning):
            export_model(tiny, tmp_path / "a.pte", "executorch", int8=True)
    with pytest.warns(CalibrationWarning), pytest.raises(ParityError, match="relative error") as caught:
        export_model(tiny, tmp_path / "b.pte", "executorch", int8=True, max_relative_error=1e-6)
    assert caught.value.report.relative_error > 1e-6 and (tmp_path / "b.pte").is_file()
