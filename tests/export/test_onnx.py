"""ONNX export: parity with eager PyTorch on onnxruntime, dynamic batch, a corrupted file caught, the CLI."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[onnx]')")
onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[onnx]')")
pytest.importorskip("onnxscript", reason="onnxscript is not installed (pip install -e '.[onnx]')")

import efficientformer
from efficientformer.cli import main
from efficientformer.errors import MissingDependencyError
from efficientformer.export import (
    DEFAULT_OPSET,
    FORMATS,
    ParityError,
    check_onnx_parity,
    export_model,
    export_onnx,
    parity_images,
)
from efficientformer.export.parity import compare_outputs, synthetic_images
from efficientformer.models.mobilenetv2 import create_mobilenetv2
from efficientformer.utils import require
from support import randomize_

pytestmark = pytest.mark.export


def corrupt_initializer(path, name="stem.conv1.0.weight", delta=0.5):
    """Add `delta` to one weight initializer of an ONNX file, in place."""
    proto = onnx.load(str(path))
    for index, initializer in enumerate(proto.graph.initializer):
        if initializer.name == name:
            array = onnx.numpy_helper.to_array(initializer) + np.float32(delta)
            proto.graph.initializer[index].CopyFrom(onnx.numpy_helper.from_array(array, name))
            onnx.save(proto, str(path))
            return
    raise AssertionError(f"no initializer {name} in {path}: {[i.name for i in proto.graph.initializer][:10]}")


@pytest.fixture(scope="module")
def tiny():
    return randomize_(efficientformer.create_model("efficientformerv2_test")).eval()


@pytest.fixture(scope="module")
def tiny_onnx(tiny, tmp_path_factory):
    return export_model(tiny, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def test_tiny_export_and_parity(tiny_onnx):
    file, report = tiny_onnx.artifact, tiny_onnx.parity
    assert file.path.is_file() and file.num_bytes == file.path.stat().st_size
    assert [p.name for p in file.path.parent.iterdir()] == ["tiny.onnx"]  # no temporary file left
    assert (file.opset, file.input_shape, file.output_name) == (DEFAULT_OPSET, ("batch", 3, 64, 64), "logits")
    assert report.passed and report.max_abs_diff < 1e-4 and report.top1_agreement == 1.0
    assert report.num_images == 4 and report.runtime == f"onnxruntime {ort.__version__}"
    proto = onnx.load(str(file.path))
    onnx.checker.check_model(proto)
    assert {op.domain: op.version for op in proto.opset_import}[""] == DEFAULT_OPSET
    assert not any(node.op_type == "BatchNormalization" for node in proto.graph.node)  # exported fused


def test_dynamic_batch(tiny, tiny_onnx):
    session = ort.InferenceSession(str(tiny_onnx.artifact.path), providers=["CPUExecutionProvider"])
    images = parity_images(64)
    for batch in (images[:1], images[:3]):
        out = session.run(None, {"images": batch.numpy()})[0]
        with torch.no_grad():
            reference = tiny(batch).numpy()
        assert out.shape == (len(batch), 10)
        assert np.abs(out - reference).max() < 1e-4


def test_static_batch_and_opset_18(tiny, tmp_path):
    file = export_onnx(tiny, tmp_path / "static.onnx", dynamic_batch=False, opset=18)
    assert file.input_shape == (1, 3, 64, 64) and file.opset == 18
    report = check_onnx_parity(tiny, file.path)  # the 4 images one at a time
    assert report.passed and report.num_images == 4
    session = ort.InferenceSession(str(file.path), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        session.run(None, {"images": parity_images(64)[:3].numpy()})


def test_corrupted_weight_fails_parity(tiny, tiny_onnx, tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(tiny_onnx.artifact.path.read_bytes())
    corrupt_initializer(path)
    with pytest.raises(ParityError, match=r"max abs diff .* \(atol 0\.0001\)") as caught:
        check_onnx_parity(tiny, path)
    report = caught.value.report
    assert not report.passed and report.max_abs_diff > 1e-4 and str(path) in str(caught.value)


def test_unreadable_file_is_named(tiny, tmp_path):
    path = tmp_path / "truncated.onnx"
    path.write_bytes(b"not an onnx file")
    with pytest.raises(ValueError, match="truncated.onnx"):
        check_onnx_parity(tiny, path)


def test_s0_at_224(tmp_path):
    model = randomize_(efficientformer.create_model("efficientformerv2_s0")).eval()
    start = time.perf_counter()
    result = export_model(model, tmp_path / "s0.onnx")
    seconds = time.perf_counter() - start
    assert result.artifact.input_shape == ("batch", 3, 224, 224)
    assert result.parity.passed and result.parity.top1_agreement == 1.0
    assert seconds < 60, f"S0 export + parity took {seconds:.0f} s"


def test_mobilenetv2_exports_through_the_same_path(tmp_path):
    model = randomize_(create_mobilenetv2("mobilenetv2_100", num_classes=10)).eval()
    result = export_model(model, tmp_path / "mnv2.onnx", img_size=96)
    assert result.artifact.input_shape == ("batch", 3, 96, 96)
    assert result.parity.max_abs_diff <= 1e-4


def test_parity_pieces():
    first, again = synthetic_images(3), synthetic_images(3)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, again))
    assert parity_images((64, 48), num_synthetic=2).shape == (3, 3, 64, 48)
    reference = np.array([[0.0, 1.0], [2.0, 0.0]])
    nan = compare_outputs(reference, np.array([[0.0, np.nan], [2.0, 0.0]]), atol=1e-4, format="onnx", runtime="x")
    assert not nan.passed
    flipped = compare_outputs(reference, np.array([[1.0, 0.0], [2.0, 0.0]]), atol=1.5, format="onnx", runtime="x")
    assert flipped.passed and flipped.top1_agreement == 0.5 and flipped.max_abs_diff == 1.0
    # Relative error: the worst image's ||diff|| / ||reference||: sqrt(2) / 1 for the first, 0 for the second.
    assert flipped.relative_error == pytest.approx(np.sqrt(2.0))
    scaled = compare_outputs(1e-6 * reference, 1e-6 * np.array([[0.0, 1.1], [2.0, 0.0]]), atol=0, format="onnx",
                             runtime="x")
    assert scaled.relative_error == pytest.approx(0.1) and scaled.max_abs_diff == pytest.approx(1e-7)
    with pytest.raises(MissingDependencyError, match=r"pip install 'efficientformer\[onnx\]'"):
        require("no_such_runtime_module", "onnx")


def test_import_efficientformer_does_not_import_runtimes():
    code = ("import sys, efficientformer, efficientformer.export, efficientformer.cli.export; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime', 'onnxscript')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.fixture
def tiny_checkpoint(tiny, tmp_path):
    return efficientformer.save_checkpoint(tiny, tmp_path / "tiny.safetensors")


def test_cli_export(tiny_checkpoint, tmp_path, capsys):
    output = tmp_path / "out.onnx"
    assert main(["export", "--weights", str(tiny_checkpoint), "--format", "onnx", "--img-size", "96",
                 "--num-classes", "5", "--output", str(output), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["file"]["input_shape"] == ["batch", 3, 96, 96] and data["file"]["opset"] == DEFAULT_OPSET
    assert data["parity"]["passed"] and data["parity"]["max_abs_diff"] < 1e-4
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    assert session.run(None, {"images": parity_images(96)[:2].numpy()})[0].shape == (2, 5)


def test_cli_exits_1_with_the_numbers_when_parity_fails(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    spec = FORMATS["onnx"]

    def export_then_corrupt(*args, **kwargs):
        file = spec.export(*args, **kwargs)
        corrupt_initializer(file.path)
        return file

    monkeypatch.setitem(FORMATS, "onnx", dataclasses.replace(spec, export=export_then_corrupt))
    output = tmp_path / "bad.onnx"
    assert main(["export", "--model", "efficientformerv2_test", "--weights", str(tiny_checkpoint),
                 "--output", str(output), "--no-dynamic-batch"]) == 1
    captured = capsys.readouterr()
    assert "parity failed" in captured.err and "max abs diff" in captured.err and str(output) in captured.err
    assert "FAIL" in captured.out and "top-1 agreement" in captured.out


def test_parity_images_use_the_weights_eval_crop():
    from efficientformer.export.parity import eval_crop_pct
    from efficientformer.weights.zoo import WEIGHTS

    model = efficientformer.create_model("efficientformerv2_test")
    assert eval_crop_pct(model) == 0.875  # random weights: the default
    tag = next(tag for tag, entry in WEIGHTS.items() if entry.crop_pct != 0.875)
    model.pretrained_tag = tag  # what create_model(pretrained=tag) records
    assert eval_crop_pct(model) == WEIGHTS[tag].crop_pct
    assert eval_crop_pct(create_mobilenetv2("mobilenetv2_100")) == 0.875
    assert not torch.equal(parity_images(64, crop_pct=0.95), parity_images(64))
