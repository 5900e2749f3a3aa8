"""Run reports (CSV, curves, confusion matrix) and `efficientformer eval`."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from efficientformer.cli import main
from efficientformer.train.report import plot_confusion, plot_curves, read_metrics
from efficientformer.utils import write_csv

pytest.importorskip("sklearn")


def _png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_keep_the_last_record_of_each_epoch(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"epoch": 1, "top1": 10.0}, {"epoch": 2, "top1": 20.0}, {"epoch": 2, "top1": 25.0}]  # a resumed epoch
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = read_metrics(path)
    assert [r["top1"] for r in records] == [10.0, 25.0]
    write_csv(records, tmp_path / "m.csv")
    assert list(csv.DictReader(open(tmp_path / "m.csv"))) == [{"epoch": "1", "top1": "10.0"},
                                                             {"epoch": "2", "top1": "25.0"}]


def test_plots(tmp_path):
    pytest.importorskip("matplotlib")
    records = [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.2 / e, "top1": 30.0 * e, "top5": 40.0 + 10 * e}
               for e in (1, 2, 3)]
    assert _png(plot_curves(records, tmp_path / "curves.png", "test"))
    confusion = torch.tensor([[5, 1], [0, 4]])
    assert _png(plot_confusion(confusion, ["cat", "dog"], tmp_path / "confusion.png"))
    assert plot_confusion(torch.eye(101, dtype=torch.long), [str(i) for i in range(101)], tmp_path / "big.png") is None


def test_train_then_eval_writes_reports(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    assert main(["train", "--model", "efficientformerv2_test", "--epochs", "1", "--warmup-epochs", "0",
                 "--output", str(run)]) == 0
    trained = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    for name in ("metrics.csv", "per_class.csv"):
        assert (run / name).is_file()
    assert _png(run / "curves.png") and _png(run / "confusion.png")
    capsys.readouterr()
    assert main(["eval", "--weights", str(run / "last.safetensors"), "--output", str(tmp_path / "eval")]) == 0
    assert "top-1" in capsys.readouterr().out
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["images"] == 359 and summary["top1"] == pytest.approx(trained["top1"])
    per_class = list(csv.DictReader(open(tmp_path / "eval" / "per_class.csv")))
    assert len(per_class) == 10 and sum(int(r["images"]) for r in per_class) == 359


def test_eval_class_count_mismatch(tmp_path, tiny_config, capsys):
    from efficientformer import create_model, save_checkpoint

    path = save_checkpoint(create_model(tiny_config, num_classes=3), tmp_path / "three.safetensors")
    assert main(["eval", "--weights", str(path), "--output", str(tmp_path / "eval")]) == 2
    assert "predicts 3 classes" in capsys.readouterr().err
