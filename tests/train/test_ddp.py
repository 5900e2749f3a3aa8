"""Two gloo processes under torchrun match one process with the same global batch (SyncBN, sharded sampler)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import efficientformer
from efficientformer.data.embedded import DigitsDataset
from efficientformer.data.preprocess import eval_transform

pytest.importorskip("sklearn", reason="the embedded dataset needs scikit-learn")

ARGS = ["--model", "efficientformerv2_test", "--epochs", "1", "--warmup-epochs", "0", "--max-steps", "8"]
# After 8 AdamW steps the two runs differ only by float summation order (amplified by Adam on the
# near-zero gradients of layer-scaled branches). Without SyncBN the logits differ by ~20%.
LOGIT_RTOL = 0.02


def _run(args: list[str]) -> None:
    env = {**os.environ, "EFFICIENTFORMER_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.ddp
def test_two_processes_match_one(tmp_path):
    _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "efficientformer", "train",
          *ARGS, "--batch-size", "16", "--output", str(tmp_path / "two")])
    _run(["-m", "efficientformer", "train", *ARGS, "--batch-size", "32", "--output", str(tmp_path / "one")])
    one = efficientformer.load_model(tmp_path / "one" / "last.safetensors")
    two = efficientformer.load_model(tmp_path / "two" / "last.safetensors")
    untrained = efficientformer.create_model("efficientformerv2_test").eval()
    images = DigitsDataset("val", 64)
    x = torch.stack([eval_transform(images[i][0], 64, crop_pct=1.0) for i in range(96)])  # (96, 3, 64, 64)
    with torch.no_grad():
        expected, actual = one(x), two(x)
        moved = (expected - untrained(x)).norm()
    assert moved > 10 * (expected - actual).norm()  # training moved the logits far more than the runs differ
    assert ((expected - actual).norm() / expected.norm()).item() < LOGIT_RTOL
    assert (expected.argmax(1) == actual.argmax(1)).float().mean().item() >= 0.95
    job = (tmp_path / "two" / "job.json").read_text()
    assert '"world_size": 2' in job and not (tmp_path / "two" / "metrics.jsonl").exists()
