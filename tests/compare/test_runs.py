"""A comparison run's bookkeeping: training time across a kill, the finished marker, a changed architecture."""

from __future__ import annotations

import json
import os

import pytest

import efficientformer.compare.runs as runs_module
from efficientformer.compare.runs import (
    CLOCK_FILE,
    KEPT,
    RESULT_FILE,
    RunRecord,
    TrainingClock,
    check_run_model,
    finished_record,
    run_dir_name,
    train_run,
)
from efficientformer.errors import BadFileError, ConfigError
from efficientformer.models.mobilenetv2 import MobileNetV2Config
from efficientformer.train.job import TrainJob


def test_a_killed_segment_counts_until_its_newest_state(tmp_path):
    started = 1_000_000.0
    (tmp_path / CLOCK_FILE).write_text(json.dumps({"seconds": 7.0, "started": started}))  # never stopped: killed
    older, newer = tmp_path / "state_e0000_s000002.pt", tmp_path / "state_e0000_s000004.pt"
    for path, offset in ((older, 3.0), (newer, 5.0)):
        path.write_bytes(b"")
        os.utime(path, (started + offset, started + offset))
    clock = TrainingClock(tmp_path)
    clock.start()
    assert json.loads((tmp_path / CLOCK_FILE).read_text())["seconds"] == pytest.approx(12.0)  # 7 + 5 until s4
    total = clock.stop()
    assert 12.0 <= total < 72.0 and json.loads((tmp_path / CLOCK_FILE).read_text())["started"] is None
    clock.start()  # a clean stop adds nothing on the next start
    assert json.loads((tmp_path / CLOCK_FILE).read_text())["seconds"] == pytest.approx(total)


def test_finished_record_and_changed_architecture(tmp_path):
    assert finished_record(tmp_path) is None
    record = RunRecord("m", 2, "elsewhere", "trained", top1=90.0, top5=99.0, best_top1=91.0, epochs=3, training_s=4.0)
    (tmp_path / RESULT_FILE).write_text(json.dumps(record.to_dict()))
    kept = finished_record(tmp_path)
    assert kept.status == KEPT and kept.run_dir == str(tmp_path) and kept.top1 == 90.0 and kept.finished
    (tmp_path / RESULT_FILE).write_text("{")
    with pytest.raises(BadFileError, match=RESULT_FILE):
        finished_record(tmp_path)

    spec = MobileNetV2Config(name="narrow", width_mult=0.5)
    check_run_model(tmp_path, spec)  # nothing stored yet
    (tmp_path / "compare_model.json").write_text(json.dumps(spec.to_dict()))
    check_run_model(tmp_path, spec)
    with pytest.raises(ConfigError, match="width_mult"):
        check_run_model(tmp_path, spec.replace(width_mult=0.75))


def test_run_dir_names():
    assert run_dir_name("efficientformerv2_s0", 0) == "efficientformerv2_s0_seed0"
    assert run_dir_name("s0-like@0.9ms/mes 1", 3) == "s0-like@0.9ms_mes_1_seed3"


def test_a_rank_that_does_not_write_trains_and_writes_nothing(tmp_path, monkeypatch):
    """torchrun's ranks but 0: the job runs (it is distributed), none of the comparison's files appear."""
    spec = MobileNetV2Config(name="narrow", width_mult=0.5)
    jobs = []
    monkeypatch.setattr(runs_module, "run_training", lambda job: jobs.append(job) or {"is_main": False})
    run_dir = tmp_path / "narrow_seed0"
    record = train_run(TrainJob(output=str(run_dir)), "narrow", 0, spec, writes=False)
    assert [job.output for job in jobs] == [str(run_dir)] and record.status == "trained" and record.top1 is None
    assert not run_dir.exists()  # no compare_model.json, clock, compare_run.json (rank 0 writes them)

    def fails(job):
        raise RuntimeError("boom")

    monkeypatch.setattr(runs_module, "run_training", fails)
    failed = train_run(TrainJob(output=str(run_dir)), "narrow", 0, spec, writes=False)
    assert failed.status == "failed" and failed.error == "RuntimeError: boom" and not run_dir.exists()

    run_dir.mkdir()  # a run rank 0 recorded as finished is skipped by every rank alike
    (run_dir / RESULT_FILE).write_text(json.dumps(RunRecord("narrow", 0, str(run_dir), "trained", top1=50.0).to_dict()))
    assert train_run(TrainJob(output=str(run_dir), resume="auto"), "narrow", 0, spec, writes=False).status == KEPT
