"""Exact ONNX rewrites (export/onnx_rewrites.py) and the opt-in approximate path: parity against unfused eager."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
import torch.nn.functional as F

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[onnx]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[onnx]')")

import efficientformer
from efficientformer.export import APPROXIMATE_ATOL, export_model
from efficientformer.export.onnx import check_onnx_parity, export_onnx
from efficientformer.export.onnx_rewrites import DENSE_MAX_TOKENS, bilinear_matrix, rewrite_for_onnxruntime
from efficientformer.models.fuse import APPROXIMATIONS, fuse
from support import randomize_

pytestmark = pytest.mark.export


def op_counts(path) -> collections.Counter:
    return collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 10])
def test_bilinear_matrix_is_torch_bilinear_upsampling(size):
    x = torch.randn(2, 3, size, size + 1, dtype=torch.float64)
    expected = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    rows, cols = torch.from_numpy(bilinear_matrix(size)), torch.from_numpy(bilinear_matrix(size + 1))
    assert torch.allclose(rows @ x @ cols.T, expected, atol=1e-12)


@pytest.mark.parametrize("img_size", [64, 320])  # stride-attention grids 2x2 (dense matrix) and 10x10 (separable)
def test_tiny_resize_rewritten_with_parity(img_size, tmp_path):
    model = randomize_(efficientformer.create_model("efficientformerv2_test", img_size=img_size)).eval()
    plain = export_onnx(model, tmp_path / "plain.onnx", rewrite=False)
    rewritten = export_onnx(model, tmp_path / "rewritten.onnx")
    assert plain.rewrites == () and rewritten.rewrites == ("resize_as_matmul",)
    before, after = op_counts(plain.path), op_counts(rewritten.path)
    resizes = before["Resize"]
    assert resizes >= 1 and after["Resize"] == 0
    grid = (img_size // 32) ** 2
    per_resize = 1 if grid <= DENSE_MAX_TOKENS else 2  # dense: one MatMul (+2 Reshapes); separable: two MatMuls
    assert after["MatMul"] - before["MatMul"] == per_resize * resizes
    for export in (plain, rewritten):
        report = check_onnx_parity(model, export.path, atol=1e-4)
        assert report.passed and report.top1_agreement == 1.0


def test_a_resize_the_rewrite_cannot_express_is_left_alone():
    from onnx import TensorProto, helper, numpy_helper

    scales = numpy_helper.from_array(np.array([1, 1, 3, 3], dtype=np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 15, 15])], [scales])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    assert rewrite_for_onnxruntime(model) == {"resize_as_matmul": 0}
    assert [n.op_type for n in model.graph.node] == ["Resize"]
    with pytest.raises(ValueError, match="unknown ONNX rewrite"):
        rewrite_for_onnxruntime(model, ("fold_everything",))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["s0", "s1", "s2", "l"])
def test_published_variants_rewritten_within_1e4_of_unfused_eager(name, tmp_path):
    model = randomize_(efficientformer.create_model(name)).eval()
    result = export_model(model, tmp_path / f"{name}.onnx", atol=1e-4)
    assert result.artifact.rewrites == ("resize_as_matmul",) and op_counts(result.artifact.path)["Resize"] == 0
    assert result.parity.passed and result.parity.top1_agreement == 1.0


def test_approximations_are_opt_in_and_named(tiny_model):
    exact = fuse(tiny_model)
    assert all(m.approximate == "none" for m in exact.modules() if isinstance(m, torch.nn.GELU))
    approx = fuse(tiny_model, approximate=("gelu-tanh",))
    gelus = [m for m in approx.modules() if isinstance(m, torch.nn.GELU)]
    assert gelus and all(m.approximate == "tanh" for m in gelus)
    assert set(APPROXIMATIONS) == {"gelu-tanh"}
    with pytest.raises(ValueError, match="unknown approximation.*gelu-tanh"):
        fuse(tiny_model, approximate=("relu",))


def test_tanh_gelu_export_has_a_bounded_error_and_reports_it(tmp_path):
    model = randomize_(efficientformer.create_model("efficientformerv2_test")).eval()
    result = export_model(model, tmp_path / "tanh.onnx", approximate=("gelu-tanh",))
    assert "gelu-tanh" in result.artifact.rewrites
    assert op_counts(result.artifact.path)["Gelu"] > 0
    gelu_modes = {a.s for n in onnx.load(str(result.artifact.path)).graph.node if n.op_type == "Gelu"
                  for a in n.attribute if a.name == "approximate"}
    assert gelu_modes == {b"tanh"}
    parity = result.parity
    assert parity.atol == APPROXIMATE_ATOL and parity.passed
    assert 1e-6 < parity.max_abs_diff < APPROXIMATE_ATOL  # not exact, but close
    assert parity.top1_agreement == 1.0


def test_cli_export_approximate_prints_its_error(tmp_path, capsys):
    import json

    from efficientformer.cli import main

    tiny_checkpoint = efficientformer.save_checkpoint(
        randomize_(efficientformer.create_model("efficientformerv2_test")).eval(), tmp_path / "tiny.safetensors")
    output = tmp_path / "tanh.onnx"
    assert main(["export", "--weights", str(tiny_checkpoint), "--output", str(output), "--approximate", "gelu-tanh",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "gelu-tanh" in data["file"]["rewrites"] and data["parity"]["atol"] == APPROXIMATE_ATOL
    assert 0 < data["parity"]["max_abs_diff"] < APPROXIMATE_ATOL and data["parity"]["top1_agreement"] == 1.0
    assert main(["export", "--weights", str(tiny_checkpoint), "--format", "executorch", "--output",
                 str(tmp_path / "x.pte"), "--approximate", "gelu-tanh"]) == 2
