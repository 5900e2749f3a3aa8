"""TFLite export: parity on the LiteRT interpreter, the batch-1 file, a corrupted file caught, the CLI.

litert-torch brings about 2 GB of dependencies, so these tests skip unless the `tflite` extra is
installed (we run them in a venv of their own: see the README).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch", reason="litert-torch is not installed (pip install -e '.[tflite]', ~2 GB)")
pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (pip install -e '.[tflite]')")

import efficientformer
from efficientformer.cli import main
from efficientformer.export import FORMATS, ParityError, export_model, parity_images
from efficientformer.export.tflite import check_tflite_parity, load_runner
from support import randomize_

pytestmark = pytest.mark.export


def corrupt_weights(source, target, delta=0.5):
    """Copy a .tflite file, adding `delta` to every value of its largest float32 weight buffer."""
    from ai_edge_litert import schema_py_generated as schema

    data = bytearray(source.read_bytes())
    model = schema.Model.GetRootAs(bytes(data), 0)
    graph = model.Subgraphs(0)
    sizes = {}
    for index in range(graph.TensorsLength()):
        tensor = graph.Tensors(index)
        if tensor.Type() == schema.TensorType.FLOAT32:
            sizes[tensor.Buffer()] = model.Buffers(tensor.Buffer()).DataLength()
    buffer = model.Buffers(max(sizes, key=sizes.get))
    start, length = buffer._tab.Vector(buffer._tab.Offset(4)), buffer.DataLength()  # the `data` vector's bytes
    assert length > 0, "weights stored outside the flatbuffer"
    values = np.frombuffer(bytes(data[start:start + length]), dtype=np.float32) + np.float32(delta)
    data[start:start + length] = values.tobytes()
    target.write_bytes(bytes(data))
    return target


@pytest.fixture(scope="module")
def tiny():
    return randomize_(efficientformer.create_model("efficientformerv2_test")).eval()


@pytest.fixture(scope="module")
def tiny_file(tiny, tmp_path_factory):
    return export_model(tiny, tmp_path_factory.mktemp("tflite") / "tiny.tflite", "tflite")


def test_tiny_export_and_parity(tiny_file):
    file, report = tiny_file.artifact, tiny_file.parity
    assert [p.name for p in file.path.parent.iterdir()] == ["tiny.tflite"]  # no temporary file left
    assert file.num_bytes == file.path.stat().st_size and file.path.read_bytes()[4:8] == b"TFL3"
    assert (file.input_name, file.output_name, file.input_shape) == ("images", "logits", (1, 3, 64, 64))
    assert not file.dynamic_batch  # asked for, but litert-torch cannot lower a symbolic batch
    assert report.passed and report.max_abs_diff < 1e-4 and report.top1_agreement == 1.0 and report.num_images == 4


def test_runner_splits_a_batch_and_takes_threads(tiny, tiny_file):
    run = load_runner(tiny_file.artifact.path, num_threads=1)
    images = parity_images(64)[:3]
    with torch.no_grad():
        reference = tiny(images).numpy()
    out = run(images.numpy())
    assert out.shape == (3, 10) and np.abs(out - reference).max() < 1e-4


def test_bad_files_are_named(tiny, tmp_path):
    path = tmp_path / "truncated.tflite"
    path.write_bytes(b"not a flatbuffer")
    with pytest.raises(ValueError, match="truncated.tflite"):
        check_tflite_parity(tiny, path)
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        load_runner(tmp_path / "missing.tflite")


def test_corrupted_weights_fail_parity(tiny, tiny_file, tmp_path):
    path = corrupt_weights(tiny_file.artifact.path, tmp_path / "corrupt.tflite")
    with pytest.raises(ParityError, match=r"max abs diff .* \(atol 0\.0001\)") as caught:
        check_tflite_parity(tiny, path)
    assert caught.value.report.max_abs_diff > 1e-4 and str(path) in str(caught.value)


@pytest.fixture
def tiny_checkpoint(tiny, tmp_path):
    return efficientformer.save_checkpoint(tiny, tmp_path / "tiny.safetensors")


def test_cli_exits_1_with_the_numbers_when_parity_fails(tiny_file, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    def copy_then_corrupt(model, path, **kwargs):  # the fixture's file of the same weights, corrupted
        corrupt_weights(tiny_file.artifact.path, path)
        return dataclasses.replace(tiny_file.artifact, path=path)

    monkeypatch.setitem(FORMATS, "tflite", dataclasses.replace(FORMATS["tflite"], export=copy_then_corrupt))
    output = tmp_path / "bad.tflite"
    assert main(["export", "--weights", str(tiny_checkpoint), "--format", "tflite", "--output", str(output)]) == 1
    captured = capsys.readouterr()
    assert "parity failed" in captured.err and "max abs diff" in captured.err and str(output) in captured.err
    assert "FAIL" in captured.out and "top-1 agreement" in captured.out


def test_cli_export_json(tiny_file, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    def copy(model, path, **kwargs):  # the CLI's parity path on the fixture's file (one conversion per module)
        path.write_bytes(tiny_file.artifact.path.read_bytes())
        return dataclasses.replace(tiny_file.artifact, path=path)

    monkeypatch.setitem(FORMATS, "tflite", dataclasses.replace(FORMATS["tflite"], export=copy))
    output = tmp_path / "ok.tflite"
    assert main(["export", "--weights", str(tiny_checkpoint), "--format", "tflite", "--output", str(output),
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["file"]["input_shape"] == [1, 3, 64, 64] and data["parity"]["passed"]


@pytest.mark.slow
def test_s0_at_224(tmp_path):
    model = randomize_(efficientformer.create_model("efficientformerv2_s0")).eval()
    result = export_model(model, tmp_path / "s0.tflite", "tflite")
    assert result.artifact.input_shape == (1, 3, 224, 224)
    assert result.parity.passed and result.parity.max_abs_diff < 1e-4 and result.parity.top1_agreement == 1.0
