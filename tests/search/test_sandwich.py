"""Supernet training: the sandwich step learns, its subnets are reproducible, the CLI run resumes exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import nullcontext

import pytest
import torch
from safetensors.torch import load_file

from efficientformer.cli import main
from efficientformer.data.embedded import DigitsDataset
from efficientformer.data.preprocess import eval_transform
from efficientformer.search.sandwich import SUPERNET_FILE, SandwichTask
from efficientformer.search.space import TINY_SPACE, signature
from efficientformer.search.supernet import Supernet, load_supernet
from efficientformer.train.state import list_states
from efficientformer.train.task import StepInfo
from support import randomize_

pytestmark = pytest.mark.usefixtures("one_thread")


def _step(task, supernet, inputs, targets, step=0):
    return task.step(supernet, inputs, targets, autocast=nullcontext, backward=lambda loss: loss.backward(),
                     info=StepInfo(epoch=0, step=step, steps_per_epoch=100))


def test_subnets_are_largest_smallest_and_seeded_random():
    supernet = Supernet(TINY_SPACE)
    task = SandwichTask(num_random=2, seed=5)
    configs = task.subnets(supernet, epoch=1, step=3)
    assert configs[:2] == [supernet.largest(), supernet.smallest()] and len(configs) == 4
    again = task.subnets(supernet, epoch=1, step=3)
    assert [signature(c) for c in again] == [signature(c) for c in configs]
    others = {signature(c) for step in range(6) for c in task.subnets(supernet, 1, step)[2:]}
    assert len(others) > 6  # a new draw every step


def test_sandwich_step_memorises_a_fixed_batch():
    torch.manual_seed(0)
    supernet = Supernet(TINY_SPACE).train()
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(8, 3, 64, 64, generator=generator)
    targets = torch.randint(0, 10, (8,), generator=generator)
    task = SandwichTask(num_random=2, seed=0)
    optimizer = torch.optim.AdamW(supernet.parameters(), lr=3e-2)
    losses, gradients = [], None
    for step in range(8):
        optimizer.zero_grad(set_to_none=True)
        output = _step(task, supernet, inputs, targets, step)
        if gradients is None:  # the smallest subnet's narrow slices and a wide-only tail both got gradients
            weight_grad = supernet.stages[3].blocks[0].mlp.fc2.conv.weight.grad
            gradients = weight_grad is not None and weight_grad.abs().sum() > 0
        optimizer.step()
        losses.append(output.loss)
        assert output.logits.shape == (8, 10) and not output.logits.requires_grad
    assert gradients
    assert supernet.active == supernet.largest()  # left on the largest for evaluation
    assert losses[-1] < 0.5 * losses[0], losses
    # Every subnet learned, not just the largest: the smallest fits the batch better than at the start.
    fresh = Supernet(TINY_SPACE).eval()
    supernet.eval()
    for net in (fresh, supernet):
        net.set_active(net.smallest())
    with torch.no_grad():
        loss_before = torch.nn.functional.cross_entropy(fresh(inputs), targets)
        loss_after = torch.nn.functional.cross_entropy(supernet(inputs), targets)
    assert loss_after < loss_before


def test_only_the_largest_subnet_moves_the_bn_statistics():
    supernet = randomize_(Supernet(TINY_SPACE)).train()
    norm = supernet.stages[1].blocks[0].mlp.fc2.bn
    before = norm.running_mean.clone()
    inputs, targets = torch.randn(4, 3, 64, 64), torch.randint(0, 10, (4,))
    _step(SandwichTask(num_random=0), supernet, inputs, targets)
    # Only the largest's pass updated the stats: replaying it alone from the same start gives the same values.
    replay = randomize_(Supernet(TINY_SPACE)).train()
    with torch.no_grad():
        replay(inputs)
    assert not torch.equal(norm.running_mean, before)
    torch.testing.assert_close(norm.running_mean, replay.stages[1].blocks[0].mlp.fc2.bn.running_mean)


def test_prepare_eval_activates_the_largest():
    supernet = Supernet(TINY_SPACE)
    supernet.set_active(supernet.smallest())
    SandwichTask().prepare_eval(supernet)
    assert supernet.active == supernet.largest()
    with pytest.raises(TypeError, match="Supernet"):
        SandwichTask().prepare_eval(torch.nn.Linear(2, 2))


def _cli(output, *extra):
    return main(["supernet", "train", "--space", "tiny", "--output", str(output), "--batch-size", "16",
                 "--warmup-epochs", "0", *extra])


def test_cli_supernet_training_resumes_exactly(tmp_path, capsys):
    pytest.importorskip("sklearn", reason="the embedded dataset needs scikit-learn (pip install efficientformer[demo])")
    assert _cli(tmp_path / "ref", "--max-steps", "4") == 0
    assert _cli(tmp_path / "run", "--max-steps", "2") == 0
    assert "stopped after 2 steps" in capsys.readouterr().out
    assert [p.name for p in list_states(tmp_path / "run")] == ["state_e0000_s000002.pt"]
    assert _cli(tmp_path / "run", "--max-steps", "4", "--resume", "auto") == 0
    assert "stopped after 4 steps" in capsys.readouterr().out
    expected = load_file(tmp_path / "ref" / SUPERNET_FILE)
    actual = load_file(tmp_path / "run" / SUPERNET_FILE)
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    supernet = load_supernet(tmp_path / "run" / SUPERNET_FILE)
    assert supernet.space.stages == TINY_SPACE.stages and supernet.config.num_classes == 10
    assert supernet.config.img_size == (64, 64)


def test_cli_rejects_model_and_teacher(tmp_path, capsys):
    assert main(["supernet", "train", "--model", "s0", "--output", str(tmp_path / "x")]) == 2
    assert "--space, not --model" in capsys.readouterr().err
    assert main(["supernet", "train", "--teacher", "t.pt", "--output", str(tmp_path / "x")]) == 2
    assert "external teacher" in capsys.readouterr().err


@pytest.mark.ddp
@pytest.mark.slow
def test_two_processes_train_the_supernet_like_one(tmp_path):
    pytest.importorskip("sklearn", reason="the embedded dataset needs scikit-learn (pip install efficientformer[demo])")
    args = ["supernet", "train", "--warmup-epochs", "0", "--max-steps", "4"]
    env = {**os.environ, "EFFICIENTFORMER_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    for command in (["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "efficientformer",
                     *args, "--batch-size", "16", "--output", str(tmp_path / "two")],
                    ["-m", "efficientformer", *args, "--batch-size", "32", "--output", str(tmp_path / "one")]):
        result = subprocess.run([sys.executable, *command], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    one, two = (load_supernet(tmp_path / name / SUPERNET_FILE) for name in ("one", "two"))
    torch.manual_seed(0)  # the recipe's seed: the initial weights of both runs
    untrained = Supernet(one.space).eval()
    images = DigitsDataset("val", 64)
    x = torch.stack([eval_transform(images[i][0], 64, crop_pct=1.0) for i in range(32)])  # (32, 3, 64, 64)
    for config in (one.largest(), one.smallest()):
        for net in (one, two, untrained):
            net.set_active(config)
        with torch.no_grad():
            trained, distributed, start = one(x), two(x), untrained(x)
        # The same global batches and subnets, BN statistics over the global batch: equal up to float
        # summation order, which Adam amplifies on near-zero gradients (as in tests/train/test_ddp.py).
        assert (distributed - trained).abs().max() < 0.05 * (trained - start).abs().max()


def test_supernet_train_shows_the_train_flags_as_they_read_for_a_supernet(capsys):
    assert main(["supernet", "train", "-h"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--model" not in text and "--teacher" not in text  # a supernet has its space, no distillation
    assert "the supernet is written to supernet.safetensors" in text and "--epochs" in text
    assert "warm start: a checkpoint of a subnet of the space" in text
