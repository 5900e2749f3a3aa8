"""TensorBoard scalars when installed, and mixed precision: bf16 autocast on CPU, fp16 + GradScaler on CUDA."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import efficientformer
from efficientformer.train.job import TrainJob, run_training
from efficientformer.train.recipes import get_recipe
from efficientformer.train.tensorboard import ScalarLog


def _job(folder, output, **recipe_changes) -> TrainJob:
    recipe = get_recipe("default").replace(epochs=1, warmup_epochs=0, batch_size=7, **recipe_changes)
    return TrainJob(output=str(output), data=str(folder.root), val_split=0.25, on_bad_image="skip",
                    model="efficientformerv2_test", recipe=recipe)


def test_tensorboard_scalars_per_epoch(colour_folder, tmp_path):
    pytest.importorskip("tensorboard", reason="TensorBoard logs need the optional tensorboard package")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = run_training(_job(colour_folder, tmp_path / "run"))
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"top1", "top5", "train_loss", "val_loss", "lr", "skipped"} <= tags
    (point,) = events.Scalars("top1")
    assert point.step == 1 and point.value == pytest.approx(summary["top1"])


def test_scalar_log_without_tensorboard_is_a_no_op(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    log = ScalarLog(tmp_path)
    assert log.writer is None and "pip install 'efficientformer[tensorboard]'" in log.message
    log.log_epoch({"epoch": 1, "top1": 50.0})
    log.close()
    assert not (tmp_path / "tb").exists()


def _train_two_steps(folder, output, amp: str, device: str) -> tuple[dict, dict]:
    job = _job(folder, output, amp=amp)
    job = TrainJob(**{**{f: getattr(job, f) for f in job.__dataclass_fields__}, "max_steps": 2, "device": device})
    torch.manual_seed(job.recipe.seed)  # as run_training does before building the model: the same initial weights
    start = efficientformer.create_model("efficientformerv2_test", num_classes=3, img_size=64)
    run_training(job)
    return {k: v.clone() for k, v in start.state_dict().items()}, load_file(output / "last.safetensors")


def _check_finite(start: dict, trained: dict) -> None:
    assert trained.keys() == start.keys()
    assert all(torch.isfinite(v).all() for v in trained.values() if v.is_floating_point())
    assert all(v.dtype == start[k].dtype for k, v in trained.items())  # weights stay fp32 under autocast


def test_bfloat16_autocast_on_cpu(colour_folder, tmp_path):
    start, trained = _train_two_steps(colour_folder, tmp_path / "run", "bfloat16", "cpu")
    _check_finite(start, trained)
    assert not torch.equal(trained["head.weight"], start["head.weight"])
    _, full = _train_two_steps(colour_folder, tmp_path / "fp32", "none", "cpu")
    assert not torch.equal(full["head.weight"], trained["head.weight"])  # autocast did change the arithmetic
    moved = (full["head.weight"] - start["head.weight"]).norm()
    assert (full["head.weight"] - trained["head.weight"]).norm() < 0.5 * moved  # ... but not the training


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 with GradScaler is a CUDA path; no GPU here")
def test_float16_with_grad_scaler_on_cuda(colour_folder, tmp_path):
    from efficientformer.train.state import latest_state, load_state

    start, trained = _train_two_steps(colour_folder, tmp_path / "run", "float16", "cuda")
    _check_finite(start, trained)
    _, payload = load_state(latest_state(tmp_path / "run"))
    scale = payload["scaler"]["scale"]  # the scaler's state is part of the resumable state
    # Either a step was taken, or the scaler found fp16 overflow, skipped it and backed off from 2**16.
    assert not torch.equal(trained["head.weight"], start["head.weight"]) or 0 < scale < 2.0 ** 16
