"""The exporter's ATen -> ONNX table is built once per process and the graphs stay the same."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[onnx]')")
pytest.importorskip("onnxscript", reason="onnxscript is not installed (pip install -e '.[onnx]')")

from torch.onnx._internal.exporter import _registration  # noqa: E402

from efficientformer.export import onnx as onnx_export  # noqa: E402
from efficientformer.models.blocks import Block, Mlp  # noqa: E402


def _graph_without_reuse(module: torch.nn.Module, example: torch.Tensor, monkeypatch) -> bytes:
    import contextlib
    monkeypatch.setattr(onnx_export, "_reused_registry", contextlib.nullcontext)
    try:
        return onnx_export.onnx_proto(module, example).graph.SerializeToString()
    finally:
        monkeypatch.undo()


def test_the_table_is_built_once_and_the_graph_is_unchanged(monkeypatch):
    torch.manual_seed(0)
    module = Block(16, Mlp(16, 32)).eval()
    example = torch.randn(1, 16, 8, 8)
    reference = _graph_without_reuse(module, example, monkeypatch)

    builds = []
    build = _registration.ONNXRegistry.from_torchlib
    monkeypatch.setattr(onnx_export, "_REGISTRIES", {})
    counting = classmethod(lambda cls, *a, **k: builds.append(a or k) or build(*a, **k))
    monkeypatch.setattr(_registration.ONNXRegistry, "from_torchlib", counting)
    first = onnx_export.onnx_proto(module, example).graph.SerializeToString()
    second = onnx_export.onnx_proto(module, example).graph.SerializeToString()

    assert len(builds) == 1, "the second export rebuilt the exporter's table"
    assert first == second == reference
    # Outside an export, what was there before is back in place.
    assert _registration.ONNXRegistry.__dict__["from_torchlib"] is counting
    assert onnx_export._REGISTRIES, "the table was not kept"
