"""Distillation teachers from files (ours, TorchScript, torch.export) and distilled training runs."""

from __future__ import annotations

import pytest
import torch

import efficientformer
from efficientformer.cli import main
from efficientformer.train.teacher import load_teacher
from support import randomize_


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teachers")
    model = randomize_(efficientformer.create_model("efficientformerv2_test")).eval()
    x = torch.randn(2, 3, 64, 64)
    files = {"ours": efficientformer.save_checkpoint(model, folder / "teacher.safetensors")}
    with torch.no_grad():
        torch.jit.trace(model, x, check_trace=False).save(str(folder / "teacher.pt"))
    files["torchscript"] = folder / "teacher.pt"
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes={"x": {0: batch}}), str(folder / "teacher.pt2"))
    files["export"] = folder / "teacher.pt2"
    return model, files


@pytest.mark.parametrize("kind", ["ours", "torchscript", "export"])
def test_teacher_formats_give_the_source_logits(teacher_files, kind):
    model, files = teacher_files
    teacher = load_teacher(files[kind])
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(teacher(x), model(x), atol=1e-5)
    assert not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize("kind", ["ours", "export"])
def test_hard_distillation_run(teacher_files, kind, tmp_path, capsys):
    pytest.importorskip("sklearn")
    _, files = teacher_files
    argv = ["train", "--model", "efficientformerv2_test", "--teacher", str(files[kind]), "--max-steps", "2",
            "--set", "distillation=hard", "--output", str(tmp_path / "run")]
    assert main(argv) == 0, capsys.readouterr().err
    assert '"distillation": "hard"' in (tmp_path / "run" / "job.json").read_text()


def test_distilling_recipe_without_teacher_is_a_clear_error(tmp_path, capsys):
    pytest.importorskip("sklearn")
    argv = ["train", "--model", "efficientformerv2_test", "--set", "distillation=hard", "--max-steps", "1",
            "--output", str(tmp_path / "run")]
    assert main(argv) == 2
    assert "pass a teacher file (--teacher)" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="teacher .*nope.pt does not exist"):
        load_teacher(tmp_path / "nope.pt")
