"""`efficientformer compare` under torchrun (two gloo processes on the CPU): each run trains distributed through
the training job, rank 0 alone writes the comparison's files, times latency and prints the table; a resumed
comparison is skipped by both ranks alike."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

TINY_EFV2 = "efficientformerv2_test"
# 27 training images, 8 per rank and step: one step of a 16-image global batch per epoch.
FLAGS = ["--epochs", "1", "--warmup-epochs", "0", "--img-size", "32", "--batch-size", "8", "--runtime",
         "torch-fused", "--repeats", "2", "--warmup", "1"]


def _torchrun(args: list[str]) -> str:
    env = {**os.environ, "EFFICIENTFORMER_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "efficientformer", "compare", *args], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    return result.stdout


@pytest.mark.ddp
def test_two_processes_train_each_model_together_and_rank_0_reports(folder, tiny_mobilenet, tmp_path):
    out = tmp_path / "cmp"
    args = ["--models", f"{TINY_EFV2},{tiny_mobilenet}", "--data", str(folder), *FLAGS, "--output", str(out)]
    printed = _torchrun(args)
    assert printed.count("| model |") == 1  # one table: the other rank prints nothing
    assert printed.count("timing 2 trained model(s)") == 1  # and times nothing
    with open(out / "compare.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["model"] for row in rows] == [TINY_EFV2, "mobilenetv2_tiny"]
    assert all(row["error"] == "" and float(row["median_ms"]) > 0 and row["runs"] == "1" for row in rows)
    for name in (TINY_EFV2, "mobilenetv2_tiny"):
        run_dir = out / "runs" / f"{name}_seed0"
        assert json.loads((run_dir / "job.json").read_text())["world_size"] == 2
        result = json.loads((run_dir / "compare_run.json").read_text())
        assert result["status"] == "trained" and result["epochs"] == 1 and result["top1"] is not None

    again = _torchrun([*args, "--resume", "auto"])  # both ranks skip both runs, or one would wait for the other
    assert again.count("finished earlier, not retrained") == 2 and again.count("| model |") == 1
