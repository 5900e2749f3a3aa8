"""Training runs end to end: the embedded default (shortened), kill -9 + resume bitwise, NaN stop, bad run dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import efficientformer
from efficientformer.cli import main
from efficientformer.train.job import TrainJob, run_training
from efficientformer.train.loop import NonFiniteLossError
from efficientformer.train.recipes import get_recipe
from efficientformer.train.state import list_states, load_state

pytest.importorskip("sklearn", reason="the embedded dataset needs scikit-learn (pip install efficientformer[demo])")

TINY = ["--model", "efficientformerv2_test", "--epochs", "2", "--batch-size", "64", "--warmup-epochs", "0"]


def _train_cli(*args: str) -> subprocess.Popen:
    # One thread each: the runs must not fight over cores, and the same thread count keeps them bitwise comparable.
    env = {**os.environ, "EFFICIENTFORMER_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "efficientformer", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_default_run_shortened(tmp_path, capsys):
    assert main(["train", "--output", str(tmp_path / "run"), "--max-steps", "3"]) == 0
    assert "stopped after 3 steps" in capsys.readouterr().out
    job = json.loads((tmp_path / "run" / "job.json").read_text())
    assert job["recipe"]["name"] == "default" and job["model"] == "efficientformerv2_s0"
    model = efficientformer.load_model(tmp_path / "run" / "last.safetensors")
    assert model.config.img_size == (64, 64) and model.num_classes == 10


def test_full_epochs_write_metrics_and_best(tmp_path):
    summary = run_training(TrainJob(output=str(tmp_path / "run"), model="efficientformerv2_test",
                                    recipe=get_recipe("default").replace(epochs=1, warmup_epochs=0)))
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["epoch"] == 1 and 0 <= lines[0]["top1"] <= 100
    assert summary["top1"] == lines[0]["top1"] and summary["top1"] > 10  # better than chance after one epoch
    assert (tmp_path / "run" / "best.safetensors").is_file()
    assert [p.name for p in list_states(tmp_path / "run")] == ["state_e0001_s000000.pt"]


def test_kill_and_resume_is_bitwise_identical(tmp_path):
    reference = _train_cli(*TINY, "--output", str(tmp_path / "ref"))
    out, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err
    victim = _train_cli(*TINY, "--output", str(tmp_path / "run"), "--checkpoint-every", "3", "--keep-last", "3")
    deadline = time.monotonic() + 120
    while not any(p.name.startswith("state_e0000_s0000") and not p.name.endswith("s000000.pt")
                  and int(p.stem.split("_s")[1]) >= 9 for p in list_states(tmp_path / "run")):
        assert victim.poll() is None, victim.communicate()[1]
        assert time.monotonic() < deadline, "no step checkpoint appeared"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at, _ = load_state(list_states(tmp_path / "run")[-1])
    assert killed_at.epoch == 0 and 0 < killed_at.step  # mid-epoch
    resumed = _train_cli(*TINY, "--output", str(tmp_path / "run"), "--resume", "auto")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    expected = load_file(tmp_path / "ref" / "last.safetensors")
    actual = load_file(tmp_path / "run" / "last.safetensors")
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def test_non_finite_loss_stops_and_keeps_last_good_state(tmp_path):
    recipe = get_recipe("default").replace(epochs=1, warmup_epochs=0, lr_base=1e12, clip_mode="none")
    job = TrainJob(output=str(tmp_path / "run"), model="efficientformerv2_test", recipe=recipe, checkpoint_every=1)
    with pytest.raises(NonFiniteLossError, match="the loss is (nan|inf) at epoch 0, step"):
        run_training(job)
    states = list_states(tmp_path / "run")
    assert states
    _, payload = load_state(states[-1])
    assert all(torch.isfinite(v).all() for v in payload["model"].values() if v.is_floating_point())


def test_unwritable_run_dir_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["train", "--output", str(blocker / "run"), "--max-steps", "1"]) == 2
    assert "cannot write to the run directory" in capsys.readouterr().err


def test_finetune_from_pretrained_gets_a_new_head(tmp_path, tiny_config):
    source = efficientformer.create_model(tiny_config, num_classes=5)
    path = efficientformer.save_checkpoint(source, tmp_path / "pretrained.safetensors")
    assert main(["train", "--model", "efficientformerv2_test", "--recipe", "finetune", "--pretrained", str(path),
                 "--img-size", "64", "--max-steps", "0", "--output", str(tmp_path / "run")]) == 0
    tuned = load_file(tmp_path / "run" / "last.safetensors")
    assert tuned["head.weight"].shape == (10, source.head.weight.shape[1])
    assert torch.equal(tuned["stem.conv1.conv.weight"], source.stem.conv1.conv.weight)
    assert not torch.equal(tuned["head.weight"][:5], source.head.weight)
