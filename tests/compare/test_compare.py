"""`efficientformer compare` end to end on tiny models and a generated image folder (issue 16, tests).

Timing values are never asserted (the machine is shared), only that they exist and are consistent.
"""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest

import efficientformer.compare.runs as runs_module
from efficientformer.cli import main
from efficientformer.compare.report import CSV_COLUMNS
from efficientformer.compare.run import CompareConfig, run_compare
from efficientformer.errors import ConfigError
from efficientformer.factory import load_model
from efficientformer.models.mobilenetv2 import MobileNetV2, MobileNetV2Config
from efficientformer.models.summary import param_count
from efficientformer.train.recipes import get_recipe
from efficientformer.train.state import latest_state

TINY_EFV2 = "efficientformerv2_test"
# One epoch of 3 steps (27 training images, batch 8) at 32x32; timing as short as the harness allows.
RECIPE = get_recipe("default").replace(epochs=1, warmup_epochs=0, img_size=32, batch_size=8)
TRAIN_FLAGS = ["--epochs", "1", "--warmup-epochs", "0", "--img-size", "32", "--batch-size", "8"]
TIME_FLAGS = ["--runtime", "torch-fused", "--repeats", "2", "--warmup", "1"]


def _rows(out):
    with open(out / "compare.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _config(folder, out, models, **changes):
    return CompareConfig(models=models, output=str(out), data=str(folder), recipe=RECIPE, runtime="torch-fused",
                         repeats=2, warmup=1, **changes)


def test_two_seeds_write_every_file_and_column(folder, tiny_mobilenet, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "--models", f"{TINY_EFV2},{tiny_mobilenet}", "--data", str(folder), *TRAIN_FLAGS,
                 *TIME_FLAGS, "--seeds", "2", "--reference", "mobilenetv2_tiny", "--output", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    rows = _rows(out)
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [row["model"] for row in rows] == [TINY_EFV2, "mobilenetv2_tiny"]
    for row in rows:
        assert all(row[column] != "" for column in CSV_COLUMNS if column != "error"), row
        assert row["error"] == "" and row["seeds"] == "0 1" and row["runs"] == "2"
        assert row["runtime"] == "torch-fused" and row["img_size"] == "32x32"
        for key in ("top1", "top5"):
            assert 0 <= float(row[f"{key}_min"]) <= float(row[key]) <= float(row[f"{key}_max"]) <= 100
        assert float(row["top1"]) <= float(row["top5"])
        assert 0 < float(row["median_ms"]) <= float(row["p90_ms"]) and float(row["mes"]) > 0
        assert int(row["params_deployed"]) < int(row["params"]) and int(row["macs"]) > 0
        assert float(row["training_s"]) > 0
    assert float(rows[1]["mes_vs_reference"]) == pytest.approx(100.0)
    # The counts are those of the trained network: MobileNetV2 at width 0.25 with the folder's 3 classes.
    built = MobileNetV2.from_config(MobileNetV2Config(name="mobilenetv2_tiny", width_mult=0.25, num_classes=3))
    assert int(rows[1]["params"]) == param_count(built)

    data = json.loads((out / "compare.json").read_text())
    assert [(run["model"], run["seed"], run["status"]) for run in data["runs"]] == [
        (TINY_EFV2, 0, "trained"), (TINY_EFV2, 1, "trained"), ("mobilenetv2_tiny", 0, "trained"),
        ("mobilenetv2_tiny", 1, "trained")]
    by_seed = [run["top1"] for run in data["runs"] if run["model"] == TINY_EFV2]
    assert float(rows[0]["top1"]) == pytest.approx(sum(by_seed) / 2)
    assert data["runtime"] == "torch-fused" and data["machine"] and data["versions"]["torch"]
    assert set(data["timings"]) == {TINY_EFV2, "mobilenetv2_tiny"}
    assert all(len(timing["times_ms"]) == 2 for timing in data["timings"].values())  # one interleaved call
    job = json.loads((out / "runs" / "mobilenetv2_tiny_seed1" / "job.json").read_text())
    assert job["recipe"]["seed"] == 1 and job["model_config"]["family"] == "mobilenetv2"
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| model |" in printed and f"{float(rows[0]['top1']):.2f} (" in printed  # mean (min-max)


def test_resume_keeps_finished_models_and_continues_a_killed_one(folder, tiny_mobilenet, tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    real_training = runs_module.run_training
    calls = []

    def killed_in_the_second_model(job):
        calls.append((job.output, job.resume))
        if "mobilenetv2_tiny" in job.output:
            real_training(dataclasses.replace(job, max_steps=1))  # one step, its state saved, then the kill
            raise KeyboardInterrupt
        return real_training(job)

    monkeypatch.setattr(runs_module, "run_training", killed_in_the_second_model)
    with pytest.raises(KeyboardInterrupt):
        run_compare(_config(folder, out, (TINY_EFV2, str(tiny_mobilenet))))
    first = json.loads((out / "runs" / f"{TINY_EFV2}_seed0" / "compare_run.json").read_text())
    killed = out / "runs" / "mobilenetv2_tiny_seed0"
    assert latest_state(killed) is not None and not (killed / "compare_run.json").exists()

    with pytest.raises(ConfigError, match="--resume auto"):  # a fresh start would mix two comparisons
        run_compare(_config(folder, out, (TINY_EFV2, str(tiny_mobilenet))))

    calls.clear()
    monkeypatch.setattr(runs_module, "run_training", lambda job: (calls.append((job.output, job.resume)),
                                                                  real_training(job))[1])
    result = run_compare(_config(folder, out, (TINY_EFV2, str(tiny_mobilenet)), resume="auto"))
    assert calls == [(str(killed), "auto")]  # the finished model was not trained again
    kept, resumed = result.runs
    assert kept.status == "kept" and kept.top1 == first["top1"] and kept.training_s == first["training_s"]
    assert resumed.status == "trained" and resumed.training_s > 0
    assert all(row.error is None and row.median_ms is not None for row in result.rows)
    metrics = (killed / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 1 and json.loads(metrics[0])["epoch"] == 1

    with pytest.raises(ConfigError, match="recipe.epochs"):  # another recipe cannot continue this comparison
        run_compare(dataclasses.replace(_config(folder, out, (TINY_EFV2,), resume="auto"),
                                        recipe=RECIPE.replace(epochs=2)))


def test_a_model_that_fails_is_named_and_the_others_complete(folder, tmp_path, capsys):
    gray = tmp_path / "gray.json"  # one input channel: its first conv cannot take the RGB images
    gray.write_text(json.dumps({"family": "mobilenetv2", "name": "mobilenetv2_gray", "width_mult": 0.25,
                                "in_chans": 1}))
    out = tmp_path / "cmp"
    code = main(["compare", "--models", f"{gray},{TINY_EFV2}", "--data", str(folder), *TRAIN_FLAGS, *TIME_FLAGS,
                 "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert "mobilenetv2_gray seed 0 failed to train" in captured.out
    assert "mobilenetv2_gray: seed 0: RuntimeError" in captured.err
    failed, done = _rows(out)
    assert failed["model"] == "mobilenetv2_gray" and failed["error"].startswith("seed 0: RuntimeError")
    assert failed["runs"] == "0" and failed["top1"] == failed["median_ms"] == failed["params"] == ""
    assert done["error"] == "" and float(done["top1"]) >= 0 and float(done["median_ms"]) > 0
    assert "Traceback" in (out / "runs" / "mobilenetv2_gray_seed0" / "error.txt").read_text()
    assert load_model(out / "runs" / f"{TINY_EFV2}_seed0" / "last.safetensors").num_classes == 3


def test_bad_settings_fail_before_training(folder, tmp_path):
    with pytest.raises(ConfigError, match="both named efficientformerv2_test"):
        run_compare(_config(folder, tmp_path / "a", (TINY_EFV2, "test")))
    with pytest.raises(KeyError, match="mobilenetv2_100"):  # the message lists both families
        run_compare(_config(folder, tmp_path / "b", ("no_such_model",)))
    with pytest.raises(ConfigError, match="resume"):
        CompareConfig(resume="state_e0001_s000000.pt")
    assert main(["compare", "--model", "s0", "--output", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b" / "runs").exists()
