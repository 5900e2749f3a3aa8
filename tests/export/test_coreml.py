"""CoreML export: the package's structure anywhere, parity on macOS only, the CLI's warning elsewhere."""

from __future__ import annotations

import collections
import json
import shutil
import sys

import pytest

ct = pytest.importorskip("coremltools", reason="coremltools is not installed (pip install -e '.[coreml]')")

import efficientformer
from efficientformer.cli import main
from efficientformer.errors import UnavailableError
from efficientformer.export import ParityUnavailable, export_model, parity_images
from efficientformer.export.coreml import check_coreml_parity, inspect_coreml, load_runner
from support import randomize_

pytestmark = pytest.mark.export
on_macos = pytest.mark.skipif(sys.platform != "darwin", reason="CoreML models run only on macOS (Core ML framework)")
off_macos = pytest.mark.skipif(sys.platform == "darwin", reason="checks the behaviour where Core ML is absent")

FLOAT16 = ct.proto.MIL_pb2.DataType.Value("FLOAT16")


def tensor_types(path):
    """Count of every op-output data type in the package's main function, read from the raw spec."""
    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    counts = collections.Counter()
    for block in spec.mlProgram.functions["main"].block_specializations.values():
        for operation in block.operations:
            counts.update(output.type.tensorType.dataType for output in operation.outputs)
    return counts


@pytest.fixture(scope="module")
def tiny():
    return randomize_(efficientformer.create_model("efficientformerv2_test")).eval()


@pytest.fixture(scope="module")
def tiny_package(tiny, tmp_path_factory):
    return export_model(tiny, tmp_path_factory.mktemp("coreml") / "tiny.mlpackage", "coreml")


def test_tiny_export_structure(tiny_package):
    file = tiny_package.artifact
    assert [p.name for p in file.path.parent.iterdir()] == ["tiny.mlpackage"]  # no staging folder left
    assert (file.input_name, file.output_name, file.precision) == ("images", "logits", "f32")
    assert file.input_shape == ("batch", 3, 64, 64) and file.output_shape == ("batch", 10) and file.max_batch is None
    ops = file.op_counts
    assert ops["softmax"] == 3 and ops["conv"] > 0 and ops["matmul"] > 0  # 3 attention layers in the tiny config
    assert "batch_norm" not in ops  # exported fused
    assert file.num_ops == sum(ops.values()) and file.num_bytes > 0
    assert tensor_types(file.path)[FLOAT16] == 0  # f32 was asked: no fp16 tensor anywhere


@off_macos
def test_parity_is_unavailable_off_macos_with_the_reason(tiny, tiny_package):
    assert tiny_package.parity is None and "only on macOS" in tiny_package.parity_unavailable
    with pytest.raises(ParityUnavailable, match=f"this is {sys.platform}.*checked structurally"):
        check_coreml_parity(tiny, tiny_package.artifact.path)
    with pytest.raises(UnavailableError, match="only on macOS"):
        load_runner(tiny_package.artifact.path)


@on_macos
def test_parity_on_macos(tiny, tiny_package):
    report = tiny_package.parity
    assert report is not None and report.passed and report.max_abs_diff < 1e-4 and report.top1_agreement == 1.0
    run = load_runner(tiny_package.artifact.path)
    assert run(parity_images(64)[:3].numpy()).shape == (3, 10)


def test_structural_check_fails_on_a_damaged_or_mislabelled_package(tiny_package, tmp_path):
    source = tiny_package.artifact.path
    damaged = tmp_path / "damaged.mlpackage"
    shutil.copytree(source, damaged)
    (damaged / "Manifest.json").write_text("{")
    with pytest.raises(ValueError, match="damaged.mlpackage"):
        inspect_coreml(damaged)
    with pytest.raises(FileNotFoundError, match="missing.mlpackage"):
        inspect_coreml(tmp_path / "missing.mlpackage")
    with pytest.raises(ValueError, match="expected \\(12, 12\\)"):
        inspect_coreml(source, expect_image_size=(12, 12))


@pytest.fixture
def tiny_checkpoint(tiny, tmp_path):
    return efficientformer.save_checkpoint(tiny, tmp_path / "tiny.safetensors")


def test_cli_fp16_says_parity_could_not_run(tiny_checkpoint, tmp_path, capsys):
    output = tmp_path / "half.mlpackage"
    code = main(["export", "--weights", str(tiny_checkpoint), "--format", "coreml", "--precision", "fp16",
                 "--output", str(output), "--json"])
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["file"]["precision"] == "fp16" and tensor_types(output)[FLOAT16] > 0
    if sys.platform == "darwin":
        assert code == 0 and data["parity"]["passed"]
        return
    assert code == 0 and data["parity"] is None and "only on macOS" in data["parity_unavailable"]
    assert "parity could not run" in captured.err and "structural check" in captured.err
    # The check fails when the metadata says f32 but the tensors are fp16.
    mlmodel = ct.models.MLModel(str(output), skip_model_load=True)
    mlmodel.user_defined_metadata["efficientformer.precision"] = "f32"
    mislabelled = tmp_path / "mislabelled.mlpackage"
    mlmodel.save(str(mislabelled))
    with pytest.raises(ValueError, match="f32 was asked but .* fp16"):
        inspect_coreml(mislabelled)


def test_cli_rejects_precision_for_other_formats(tiny_checkpoint, capsys):
    assert main(["export", "--weights", str(tiny_checkpoint), "--format", "onnx", "--precision", "fp16"]) == 2
    assert "--precision applies to --format openvino and coreml" in capsys.readouterr().err
