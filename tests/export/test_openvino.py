"""OpenVINO export: f32 parity on the CPU plugin, the precision hint, a corrupted .bin caught, the CLI."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
import torch

ov = pytest.importorskip("openvino", reason="openvino is not installed (pip install -e '.[openvino]')")

import efficientformer
from efficientformer.cli import main
from efficientformer.export import FORMATS, ParityError, export_model, parity_images
from efficientformer.export.openvino import (
    PRECISIONS,
    check_openvino_parity,
    compile_openvino,
    export_openvino,
    load_runner,
    read_precision,
)
from support import randomize_

pytestmark = pytest.mark.export


def float_constants(path):
    """(name, element_type, offset, size) of every floating-point Const of an IR .xml."""
    root = ElementTree.parse(path).getroot()
    out = []
    for layer in root.iter("layer"):
        data = layer.find("data")
        if layer.get("type") == "Const" and data is not None and data.get("element_type") in ("f32", "f16", "bf16"):
            out.append((layer.get("name"), data.get("element_type"), int(data.get("offset")), int(data.get("size"))))
    return out


def corrupt_weights(xml_path, delta=0.5):
    """Add `delta` to every value of the largest f32 constant in the IR's .bin, in place."""
    name, _, offset, size = max((c for c in float_constants(xml_path) if c[1] == "f32"), key=lambda c: c[3])
    weights = xml_path.with_suffix(".bin")
    data = bytearray(weights.read_bytes())
    values = np.frombuffer(bytes(data[offset:offset + size]), dtype=np.float32) + np.float32(delta)
    data[offset:offset + size] = values.tobytes()
    weights.write_bytes(bytes(data))
    return name


def copy_ir(xml_path, target):
    shutil.copy(xml_path, target)
    shutil.copy(xml_path.with_suffix(".bin"), target.with_suffix(".bin"))
    return target


@pytest.fixture(scope="module")
def tiny():
    return randomize_(efficientformer.create_model("efficientformerv2_test")).eval()


@pytest.fixture(scope="module")
def tiny_ir(tiny, tmp_path_factory):
    return export_model(tiny, tmp_path_factory.mktemp("openvino") / "tiny.xml", "openvino")


def test_tiny_export_and_f32_parity(tiny_ir):
    file, report = tiny_ir.artifact, tiny_ir.parity
    assert sorted(p.name for p in file.path.parent.iterdir()) == ["tiny.bin", "tiny.xml"]  # no staging folder left
    assert file.num_bytes == file.path.stat().st_size + file.weights_path.stat().st_size
    assert (file.precision, file.input_shape, file.output_name) == ("f32", ("batch", 3, 64, 64), "logits")
    assert report.passed and report.max_abs_diff < 1e-4 and report.top1_agreement == 1.0 and report.num_images == 4
    assert report.runtime.endswith("(f32 asked, f32 used)")
    constants = float_constants(file.path)
    assert constants and {kind for _, kind, _, _ in constants} == {"f32"}  # not compressed to fp16
    ov_model = ov.Core().read_model(str(file.path))
    assert read_precision(ov_model, file.path) == "f32"
    assert ov_model.inputs[0].get_names() == {"images"} and ov_model.outputs[0].get_names() == {"logits"}
    assert not any(op.get_type_name() == "BatchNormInference" for op in ov_model.get_ops())  # exported fused


def test_runner_takes_any_batch_and_threads(tiny, tiny_ir):
    run = load_runner(tiny_ir.artifact.path, num_threads=1)
    compiled, _ = compile_openvino(tiny_ir.artifact.path, num_threads=1)
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    images = parity_images(64)
    for batch in (images[:1], images[:3]):
        with torch.no_grad():
            reference = tiny(batch).numpy()
        out = run(batch.numpy())
        assert out.shape == (len(batch), 10) and np.abs(out - reference).max() < 1e-4


def test_bf16_hint_has_its_own_tolerance(tiny, tiny_ir):
    f32 = tiny_ir.parity
    report = check_openvino_parity(tiny, tiny_ir.artifact.path, precision="bf16")
    assert report.passed and report.atol == PRECISIONS["bf16"] and "(bf16 asked" in report.runtime
    if report.runtime.endswith("bf16 used)"):  # a CPU with bf16 instructions: the hint took effect
        assert report.max_abs_diff > 10 * f32.max_abs_diff
        with pytest.raises(ParityError, match=r"atol 0\.0001"):
            check_openvino_parity(tiny, tiny_ir.artifact.path, precision="bf16", atol=1e-4)


def test_corrupted_weights_fail_parity(tiny, tiny_ir, tmp_path):
    path = copy_ir(tiny_ir.artifact.path, tmp_path / "corrupt.xml")
    corrupt_weights(path)
    with pytest.raises(ParityError, match=r"max abs diff .* \(atol 0\.0001\)") as caught:
        check_openvino_parity(tiny, path)
    assert caught.value.report.max_abs_diff > 1e-4 and str(path) in str(caught.value)


def test_bad_files_are_named(tiny, tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text("<net")
    with pytest.raises(ValueError, match="broken.xml"):
        check_openvino_parity(tiny, path)
    with pytest.raises(FileNotFoundError, match="missing.xml"):
        load_runner(tmp_path / "missing.xml")
    with pytest.raises(ValueError, match=r"<name>\.xml"):
        export_openvino(tiny, tmp_path / "model.onnx")
    with pytest.raises(ValueError, match="precision 'int4'"):
        export_openvino(tiny, tmp_path / "model.xml", precision="int4")


@pytest.fixture
def tiny_checkpoint(tiny, tmp_path):
    return efficientformer.save_checkpoint(tiny, tmp_path / "tiny.safetensors")


def test_cli_fp16_static_batch(tiny_checkpoint, tmp_path, capsys):
    output = tmp_path / "half.xml"
    assert main(["export", "--weights", str(tiny_checkpoint), "--format", "openvino", "--precision", "fp16",
                 "--no-dynamic-batch", "--output", str(output), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["file"]["precision"] == "fp16" and data["file"]["input_shape"] == [1, 3, 64, 64]
    assert data["parity"]["passed"] and data["parity"]["atol"] == PRECISIONS["fp16"]
    sizes = {"f16": 0, "f32": 0}
    for _, kind, _, size in float_constants(output):
        sizes[kind] += size
    assert sizes["f16"] > 20 * sizes["f32"]  # the weights are stored as fp16 (a few f32 scalars stay)
    assert load_runner(output)(parity_images(64)[:1].numpy()).shape == (1, 10)


def test_cli_exits_1_with_the_numbers_when_parity_fails(tiny_ir, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    def copy_then_corrupt(model, path, **kwargs):  # the fixture's IR of the same weights, corrupted
        copy_ir(tiny_ir.artifact.path, path)
        corrupt_weights(path)
        return dataclasses.replace(tiny_ir.artifact, path=path, weights_path=path.with_suffix(".bin"))

    monkeypatch.setitem(FORMATS, "openvino", dataclasses.replace(FORMATS["openvino"], export=copy_then_corrupt))
    output = tmp_path / "bad.xml"
    assert main(["export", "--weights", str(tiny_checkpoint), "--format", "openvino", "--output", str(output)]) == 1
    captured = capsys.readouterr()
    assert "parity failed" in captured.err and "max abs diff" in captured.err and str(output) in captured.err
    assert "FAIL" in captured.out and "top-1 agreement" in captured.out


@pytest.mark.slow
def test_s0_at_224(tmp_path):
    model = randomize_(efficientformer.create_model("efficientformerv2_s0")).eval()
    start = time.perf_counter()
    result = export_model(model, tmp_path / "s0.xml", "openvino")
    seconds = time.perf_counter() - start
    assert result.artifact.input_shape == ("batch", 3, 224, 224)
    assert result.parity.passed and result.parity.max_abs_diff < 1e-4 and result.parity.top1_agreement == 1.0
    assert seconds < 120, f"S0 export + parity took {seconds:.0f} s"
