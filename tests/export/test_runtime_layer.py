"""The one runtime layer (export/runtimes.py): every runtime runs a network or a single block with eager's numbers."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

import efficientformer
from efficientformer.export.runtimes import RUNTIMES, prepare
from efficientformer.models.blocks import Attention2d, Mlp
from support import randomize_

pytestmark = pytest.mark.export

PACKAGES = {"onnxruntime": "onnxruntime", "executorch": "executorch", "openvino": "openvino"}
FAST_RUNTIMES = [name for name in RUNTIMES if name != "torch-compile"]


def _installed(runtime: str) -> bool:
    return runtime not in PACKAGES or importlib.util.find_spec(PACKAGES[runtime]) is not None


def _array(output) -> np.ndarray:
    if isinstance(output, (list, tuple)):
        output = output[0]
    return output.numpy() if isinstance(output, torch.Tensor) else np.asarray(output)


@pytest.mark.parametrize("runtime", FAST_RUNTIMES)
def test_a_network_and_a_stride_attention_block_match_eager(runtime, tmp_path):
    if not _installed(runtime):
        pytest.skip(f"{runtime} is not installed")
    network = randomize_(efficientformer.create_model("efficientformerv2_test")).eval()
    block = randomize_(Attention2d(16, (4, 4), num_heads=2, key_dim=8, attn_ratio=2, stride=2)).eval()
    for module, example in ((network, torch.randn(2, 3, 64, 64)), (block, torch.randn(1, 16, 4, 4)),
                            (randomize_(Mlp(16, 32)).eval(), torch.randn(1, 16, 5, 7))):
        with torch.no_grad():
            expected = module(example).numpy()
        call = prepare(module, example, runtime, threads=1, workdir=tmp_path / runtime, name=type(module).__name__)
        assert np.abs(_array(call()) - expected).max() < 1e-4, (runtime, type(module).__name__)
        # Other inputs of the same shape run through the same prepared file (bench's parity check does this).
        other = torch.randn_like(example)
        with torch.no_grad():
            expected_other = module(other).numpy()
        ran = call.run(other)
        assert ran.dtype == np.float32 and np.abs(ran - expected_other).max() < 1e-4, (runtime, type(module).__name__)
        assert np.abs(_array(call()) - expected).max() < 1e-4  # the timed call still runs the bound example


def test_files_are_kept_only_with_a_workdir(tmp_path):
    if not _installed("onnxruntime"):
        pytest.skip("onnxruntime is not installed")
    mlp = randomize_(Mlp(16, 32)).eval()
    prepare(mlp, torch.randn(1, 16, 4, 4), "onnxruntime", workdir=tmp_path, name="mlp")
    assert [p.name for p in tmp_path.iterdir()] == ["mlp.onnx"]
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'"):
        prepare(mlp, torch.randn(1, 16, 4, 4), "tensorrt")


@pytest.mark.parametrize("threads", [1, 2])
def test_onnxruntime_parity_at_one_and_two_threads(threads, tmp_path):
    if not _installed("onnxruntime"):
        pytest.skip("onnxruntime is not installed")
    from efficientformer.export.onnx import export_onnx, onnxruntime_session
    from efficientformer.export.parity import parity_images

    model = randomize_(efficientformer.create_model("efficientformerv2_test")).eval()
    session = onnxruntime_session(export_onnx(model, tmp_path / "tiny.onnx").path, num_threads=threads)
    images = parity_images(64)
    with torch.no_grad():
        expected = model(images).numpy()
    (out,) = session.run(None, {"images": images.numpy()})
    assert np.abs(out - expected).max() < 1e-4
