"""ExecuTorch export: parity on ExecuTorch's runtime (XNNPACK), the conv-talking-head lowering bug, corrupted files."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("executorch.runtime", reason="executorch is not installed (pip install -e '.[executorch]')")

import efficientformer
from efficientformer.cli import main
from efficientformer.export import FORMATS, ParityError, check_executorch_parity, export_model
from efficientformer.export import executorch as et
from efficientformer.export.executorch import load_runner
from efficientformer.export.parity import parity_images
from efficientformer.layers import TalkingHead
from efficientformer.models.blocks import Attention2d
from efficientformer.models.fuse import fuse
from support import randomize_

pytestmark = pytest.mark.export


def corrupt_constant(path: Path, tensor: torch.Tensor, delta: float = 0.5) -> None:
    """Add `delta` to every float of `tensor` where its bytes appear in the file at `path`, in place.

    XNNPACK keeps weights as plain float32 in the program's data (convs in OHWI order): a 1x1 conv
    weight has the same bytes in both orders.
    """
    data = bytearray(path.read_bytes())
    needle = tensor.detach().contiguous().numpy().astype(np.float32).tobytes()
    start = data.find(needle)
    assert start >= 0, f"the tensor's bytes are not in {path}"
    patched = np.frombuffer(needle, dtype=np.float32) + np.float32(delta)
    data[start:start + len(needle)] = patched.tobytes()
    path.write_bytes(bytes(data))


def a_pointwise_weight(model: torch.nn.Module) -> torch.Tensor:
    """The fused weight of the first FFN's 1x1 conv (a constant of the exported program)."""
    return fuse(model).stages[0].blocks[0].mlp.fc1[0].weight


@pytest.fixture(scope="module")
def tiny():
    return randomize_(efficientformer.create_model("efficientformerv2_test")).eval()


@pytest.fixture(scope="module")
def tiny_pte(tiny, tmp_path_factory):
    return export_model(tiny, tmp_path_factory.mktemp("executorch") / "tiny.pte", "executorch")


def test_tiny_export_and_parity(tiny, tiny_pte):
    file, report = tiny_pte.artifact, tiny_pte.parity
    assert file.path.is_file() and file.num_bytes == file.path.stat().st_size
    assert [p.name for p in file.path.parent.iterdir()] == ["tiny.pte"]  # no temporary file left
    assert file.input_shape == (1, 3, 64, 64) and not file.dynamic_batch and not file.int8
    assert file.backend == "XnnpackBackend" and file.num_delegates == 1  # the whole network in one delegate
    assert report.passed and report.max_abs_diff < 1e-4 and report.top1_agreement == 1.0
    assert report.num_images == 4 and report.runtime.startswith("executorch 1.5")
    run = load_runner(file.path, num_threads=1)
    images = parity_images(64)
    with torch.no_grad():
        reference = tiny(images[:1]).numpy()
    assert run(images[:1].numpy()).shape == (1, 10)
    assert np.abs(run(images[:1].numpy()) - reference).max() < 1e-4
    with pytest.raises(ValueError, match="tiny.pte.*batch of shape"):
        run(images[:3].numpy())  # a static batch-1 file


class ConvTalkingHead(TalkingHead):
    """The talking head as the reference code computes it: a 1x1 conv over the head axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias)


def lowered(module: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Lower `module` through the exporter's own path (capture at a fixed shape, our passes, XNNPACK)."""
    program = torch.export.export(module, (example,))
    data, delegates = et.lower_to_xnnpack(program, (1, 1))
    return et.write_program(path, data, tuple(example.shape[2:]), (1, 1), delegates, int8=False).path


def test_conv_talking_heads_are_caught_and_ours_pass(tmp_path):
    """ExecuTorch 1.5 + XNNPACK mis-lowers a 1x1 conv feeding a softmax: the parity check must see it."""
    ours = randomize_(Attention2d(dim=24, key_dim=8, num_heads=2, attn_ratio=2, grid=(4, 4))).eval()
    conv = randomize_(Attention2d(dim=24, key_dim=8, num_heads=2, attn_ratio=2, grid=(4, 4))).eval()
    conv.talking_head1.__class__ = ConvTalkingHead
    conv.talking_head2.__class__ = ConvTalkingHead
    images = torch.randn(4, 24, 4, 4, generator=torch.Generator().manual_seed(0))  # (B, C, H, W) token grid
    with torch.no_grad():
        assert torch.allclose(ours(images), conv(images), atol=1e-5)  # the same function in eager PyTorch
    report = check_executorch_parity(ours, lowered(fuse(ours), images[:1], tmp_path / "ours.pte"), images=images)
    assert report.passed and report.max_abs_diff < 1e-4
    with pytest.raises(ParityError, match="conv.pte") as caught:
        check_executorch_parity(conv, lowered(fuse(conv), images[:1], tmp_path / "conv.pte"), images=images)
    assert caught.value.report.max_abs_diff > 1e-3, ("ExecuTorch now lowers conv talking heads correctly: "
                                                     "keep the matmul form, drop this half of the test")


def test_corrupted_pte_fails_parity(tiny, tiny_pte, tmp_path):
    path = tmp_path / "corrupt.pte"
    path.write_bytes(tiny_pte.artifact.path.read_bytes())
    corrupt_constant(path, a_pointwise_weight(tiny))
    with pytest.raises(ParityError, match=r"max abs diff .* \(atol 0\.0001\)") as caught:
        check_executorch_parity(tiny, path)
    report = caught.value.report
    assert not report.passed and report.max_abs_diff > 1e-3 and str(path) in str(caught.value)


def test_unreadable_and_missing_files_are_named(tiny, tiny_pte, tmp_path):
    truncated = tmp_path / "truncated.pte"
    truncated.write_bytes(tiny_pte.artifact.path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated.pte"):
        load_runner(truncated)
    garbage = tmp_path / "garbage.pte"
    garbage.write_bytes(b"not an executorch program")
    with pytest.raises(ValueError, match="garbage.pte"):
        check_executorch_parity(tiny, garbage)
    with pytest.raises(FileNotFoundError, match="absent.pte"):
        load_runner(tmp_path / "absent.pte")


@pytest.fixture
def tiny_checkpoint(tiny, tmp_path):
    return efficientformer.save_checkpoint(tiny, tmp_path / "tiny.safetensors")


def test_cli_exits_1_with_the_numbers_for_a_corrupted_file(tiny, tiny_pte, tiny_checkpoint, tmp_path, capsys,
                                                           monkeypatch):
    weight = a_pointwise_weight(tiny)

    def corrupted_export(model, path, **kwargs):  # the module's export, already done, then corrupted
        Path(path).write_bytes(tiny_pte.artifact.path.read_bytes())
        corrupt_constant(Path(path), weight)
        return dataclasses.replace(tiny_pte.artifact, path=Path(path))

    monkeypatch.setitem(FORMATS, "executorch", dataclasses.replace(FORMATS["executorch"], export=corrupted_export))
    output = tmp_path / "bad.pte"
    assert main(["export", "--weights", str(tiny_checkpoint), "--format", "executorch", "--output", str(output)]) == 1
    captured = capsys.readouterr()
    assert "parity failed" in captured.err and "max abs diff" in captured.err and "bad.pte" in captured.err
    assert "FAIL" in captured.out and "top-1 agreement" in captured.out


def test_import_efficientformer_does_not_import_executorch():
    code = ("import sys, efficientformer, efficientformer.export, efficientformer.cli.export; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('executorch', 'torchao')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_cli_export_with_a_dynamic_batch(tiny_checkpoint, tmp_path, capsys):
    output = tmp_path / "dyn.pte"
    assert main(["export", "--weights", str(tiny_checkpoint), "--format", "executorch", "--dynamic-batch",
                 "--img-size", "96", "--num-classes", "5", "--output", str(output), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["file"]["input_shape"] == [et.DEFAULT_MAX_BATCH, 3, 96, 96] and data["file"]["dynamic_batch"]
    assert data["parity"]["passed"] and data["parity"]["max_abs_diff"] < 1e-4
    run = load_runner(output)
    assert run.batch_range == (1, et.DEFAULT_MAX_BATCH)
    assert [run(parity_images(96)[:n].numpy()).shape for n in (1, 3)] == [(1, 5), (3, 5)]


@pytest.mark.slow
def test_s0_at_224(tmp_path):
    model = randomize_(efficientformer.create_model("efficientformerv2_s0")).eval()
    start = time.perf_counter()
    result = export_model(model, tmp_path / "s0.pte", "executorch")
    seconds = time.perf_counter() - start
    assert result.artifact.input_shape == (1, 3, 224, 224)
    assert result.parity.passed and result.parity.top1_agreement == 1.0
    print(f"S0 ExecuTorch export + parity: {seconds:.0f} s, {result.artifact.num_delegates} XNNPACK delegates")
    assert result.artifact.num_delegates == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["s0", "mobilenetv2_100"])
def test_nothing_but_the_delegate_outputs_is_left_outside_xnnpack(name):
    from executorch.devtools.backend_debug import get_delegation_info

    from efficientformer.models.mobilenetv2 import create_mobilenetv2

    model = (create_mobilenetv2(name) if name.startswith("mobilenet") else efficientformer.create_model(name)).eval()
    edge = et.partition(et.capture(et.inference_module(model), (224, 224)))
    info = get_delegation_info(edge.exported_program().graph_module)
    outside = {op: row.non_delegated for op, row in info.delegation_by_operator.items() if row.non_delegated}
    assert info.num_delegated_subgraphs == 1 and outside == {"getitem": 1}, outside


def test_tiny_graph_has_no_op_outside_the_delegate(tiny):
    from executorch.devtools.backend_debug import get_delegation_info

    edge = et.partition(et.capture(et.inference_module(tiny), (64, 64)))
    info = get_delegation_info(edge.exported_program().graph_module)
    outside = {op: row.non_delegated for op, row in info.delegation_by_operator.items() if row.non_delegated}
    assert info.num_delegated_subgraphs == 1 and outside == {"getitem": 1}, outside


@pytest.mark.slow
def test_conv_talking_heads_in_the_whole_model_are_caught(tmp_path, monkeypatch):
    model = randomize_(efficientformer.create_model("efficientformerv2_test")).eval()
    monkeypatch.setattr(TalkingHead, "forward", ConvTalkingHead.forward)
    with pytest.raises(ParityError, match=r"max abs diff") as caught:
        export_model(model, tmp_path / "conv.pte", "executorch")
    assert caught.value.report.max_abs_diff > 1e-3
