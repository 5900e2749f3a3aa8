"""Training on a user's image folder through the CLI: held-out split, bad images (skip/error), class names, eval."""

from __future__ import annotations

import csv
import json

import pytest
import safetensors
import torch
from colour_folder import COLOURS, PER_CLASS, build_colour_folder

from efficientformer.cli import main
from efficientformer.data.datasets import run_datasets, stratified_split

# 36 good + 1 bad images, 25% held out: 3 per class (9) validate, 28 train = 4 steps of 7, so every
# training image (and the bad one, wherever it lands) is read in the one epoch.
TRAIN = ["train", "--model", "efficientformerv2_test", "--img-size", "64", "--epochs", "1", "--batch-size", "7",
         "--warmup-epochs", "0", "--val-split", "0.25"]


def test_skip_mode_reports_the_bad_file_and_trains(colour_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*TRAIN, "--data", str(colour_folder.root), "--on-bad-image", "skip", "--output", str(run)]) == 0
    out = capsys.readouterr().out
    assert str(colour_folder.bad) in out and "skipped 1 unreadable image" in out
    assert (run / "skipped.txt").read_text().splitlines() == [str(colour_folder.bad)]
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["skipped"] == 1 and record["epoch"] == 1
    job = json.loads((run / "job.json").read_text())
    assert job["classes"] == sorted(COLOURS) and job["on_bad_image"] == "skip"
    assert job["data_split"]["val_images"] == 9 and job["data_split"]["train_images"] == 28
    assert job["data_split"]["val_split"] == 0.25 and len(job["data_split"]["split_digest"]) == 16
    with safetensors.safe_open(run / "best.safetensors", "pt") as handle:
        assert json.loads(handle.metadata()["classes"]) == sorted(COLOURS)

    capsys.readouterr()
    assert main(["eval", "--data", str(colour_folder.root), "--weights", str(run / "best.safetensors"),
                 "--on-bad-image", "skip", "--output", str(tmp_path / "eval")]) == 0
    assert "top-1" in capsys.readouterr().out
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["images"] == 3 * PER_CLASS and summary["skipped"] == [str(colour_folder.bad)]
    assert summary["crop_pct"] == 0.875
    rows = list(csv.DictReader(open(tmp_path / "eval" / "per_class.csv")))
    assert [r["class"] for r in rows] == sorted(COLOURS) and all(int(r["images"]) == PER_CLASS for r in rows)
    if _has_matplotlib():
        assert (tmp_path / "eval" / "confusion.png").read_bytes()[:4] == b"\x89PNG"

    # eval's own error mode names the file; a folder with a class the model does not know is named too
    assert main(["eval", "--data", str(colour_folder.root), "--weights", str(run / "best.safetensors"),
                 "--output", str(tmp_path / "eval2")]) == 2
    assert "broken.png" in capsys.readouterr().err
    other = tmp_path / "other"
    (other / "blue").mkdir(parents=True)
    (other / "purple").mkdir()
    for name in ("blue", "purple"):
        (other / name / "a.png").write_bytes((colour_folder.root / "blue" / "00.png").read_bytes())
    assert main(["eval", "--data", str(other), "--weights", str(run / "best.safetensors"),
                 "--output", str(tmp_path / "eval3")]) == 2
    assert "'purple'" in capsys.readouterr().err


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_error_mode_exits_2_naming_the_file(colour_folder, tmp_path, capsys):
    assert main([*TRAIN, "--data", str(colour_folder.root), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "--on-bad-image skip" in err
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_val_data_list_file_and_class_names(tmp_path, capsys):
    folder = build_colour_folder(tmp_path / "train", per_class=8, with_bad=False)
    listing = tmp_path / "val.csv"  # labels by name, in another order than the classes
    listing.write_text("path,label\n" + "".join(f"train/{name}/0{i}.png,{name}\n"
                                                for name in ("red", "blue", "green") for i in range(2)))
    data = run_datasets(str(folder.root), img_size=64, val_data=str(listing))
    assert data.classes == ("blue", "green", "red") and len(data.train) == 24 and len(data.val) == 6
    assert [label for _, label in data.val.samples] == [2, 2, 0, 0, 1, 1]
    run = tmp_path / "run"
    assert main([*TRAIN, "--batch-size", "8", "--max-steps", "1", "--data", str(folder.root), "--val-data",
                 str(listing), "--output", str(run)]) == 0
    assert json.loads((run / "job.json").read_text())["data_split"]["val"] == str(listing)


def test_held_out_split_is_stratified_fixed_and_independent_of_location(tmp_path):
    samples = [(f"/data/a/{c}/{i}.png", c) for c in range(3) for i in range((10, 21, 1)[c])]
    train, val = stratified_split(samples, "/data/a", 0.2)
    assert sorted(train + val) == list(range(len(samples))) and not set(train) & set(val)
    per_class = [sum(samples[i][1] == c for i in val) for c in range(3)]
    assert per_class == [2, 4, 0]  # round(20%) of 10 and 21; a one-image class stays in training
    moved = [(p.replace("/data/a", "/elsewhere"), c) for p, c in samples]
    assert stratified_split(moved, "/elsewhere", 0.2) == (train, val)  # relative names decide
    assert stratified_split(samples, "/data/a", 0.2) == (train, val)
    _, other = stratified_split(samples, "/data/a", 0.5)
    assert set(val) <= set(other)  # a larger fraction extends the same ordering
    two = [("/d/x/0.png", 0), ("/d/x/1.png", 0)]
    assert len(stratified_split(two, "/d", 0.01)[1]) == 1  # at least one held out, never the class's last
    with pytest.raises(ValueError, match="val_split"):
        stratified_split(samples, "/data/a", 1.0)


def test_held_out_split_of_a_folder(colour_folder):
    first = run_datasets(str(colour_folder.root), img_size=64, val_split=0.25)
    again = run_datasets(str(colour_folder.root), img_size=64, val_split=0.25)
    assert first.val.indices == again.val.indices and first.describe == again.describe
    labels = [first.val.dataset.samples[i][1] for i in first.val.indices]
    assert sorted(labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert first.eval_crop_pct == 0.875 and first.describe["val_images"] == 9


def test_folder_run_resumed_mid_epoch_is_bitwise_identical(colour_folder, tmp_path):
    from safetensors.torch import load_file

    from efficientformer.train.job import TrainJob, run_training
    from efficientformer.train.recipes import get_recipe

    recipe = get_recipe("default").replace(epochs=2, warmup_epochs=0, batch_size=7)

    def job(output, **changes) -> TrainJob:
        return TrainJob(output=str(output), data=str(colour_folder.root), val_split=0.25, on_bad_image="skip",
                        model="efficientformerv2_test", recipe=recipe, **changes)

    run_training(job(tmp_path / "ref"))
    run_training(job(tmp_path / "run", max_steps=5))  # stops in the second epoch, after step 1 of 4
    run_training(job(tmp_path / "run", resume="auto"))
    expected = load_file(tmp_path / "ref" / "last.safetensors")
    actual = load_file(tmp_path / "run" / "last.safetensors")
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
    assert (tmp_path / "run" / "skipped.txt").read_text() == (tmp_path / "ref" / "skipped.txt").read_text()
