"""`efficientformer segment train / eval / predict` end to end on a generated mask dataset."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import safetensors.torch
import torch
from mask_data import CLASSES, build_mask_dataset
from PIL import Image

from efficientformer.cli import main
from efficientformer.data.masks import MaskFolder
from efficientformer.train.segment_job import SegmentJob, run_segment_training
from efficientformer.train.segmentation import evaluate_segmentation, load_segmenter
from efficientformer.train.state import latest_state

TRAIN = ["--model", "efficientformerv2_test", "--img-size", "64", "--batch-size", "4", "--fpn-channels", "16",
         "--head-channels", "16", "--lr", "2e-3", "--device", "cpu"]


@pytest.fixture
def data(tmp_path):
    return build_mask_dataset(tmp_path / "masks", count=6)


def test_train_resume_eval_predict(data, tmp_path, capsys):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["segment", "train", "--data", str(data), *TRAIN, "--epochs", "2", "--output", str(straight)]) == 0
    lines = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [0, 1] and lines[-1]["steps"] == 4
    assert all(0.0 <= line["miou"] <= 100.0 for line in lines)

    # Stopped after the first epoch, then resumed: the same weights, bit for bit.
    assert main(["segment", "train", "--data", str(data), *TRAIN, "--epochs", "2", "--max-steps", "2",
                 "--output", str(resumed)]) == 0
    assert len((resumed / "metrics.jsonl").read_text().splitlines()) == 1
    assert main(["segment", "train", "--data", str(data), *TRAIN, "--epochs", "2", "--resume", "auto",
                 "--output", str(resumed)]) == 0
    a = safetensors.torch.load_file(straight / "last.safetensors")
    b = safetensors.torch.load_file(resumed / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    capsys.readouterr()
    assert main(["segment", "eval", "--weights", str(straight / "best.safetensors"), "--data", str(data),
                 "--output", str(tmp_path / "eval"), "--json", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [row["class"] for row in summary["per_class"]] == list(CLASSES) and summary["images"] == 6
    model, meta = load_segmenter(straight / "best.safetensors")
    expected = evaluate_segmentation(model, MaskFolder(data), meta["img_size"], torch.device("cpu"))
    assert summary["miou"] == pytest.approx(expected.miou)
    assert (tmp_path / "eval" / "per_class.csv").read_text().startswith("class,iou,pixels")

    image = data / "images" / "03.png"
    assert main(["segment", "predict", str(image), "--weights", str(straight / "best.safetensors"),
                 "--output", str(tmp_path / "pred"), "--device", "cpu"]) == 0
    overlay = Image.open(tmp_path / "pred" / "03_overlay.png")
    mask = np.asarray(Image.open(tmp_path / "pred" / "03_mask.png"))
    assert overlay.size == Image.open(image).size and overlay.mode == "RGB"
    assert mask.shape == (64, 96) and set(np.unique(mask)) <= set(range(len(CLASSES)))


def test_a_bad_mask_stops_the_run_naming_it_or_is_skipped_and_listed(data, tmp_path, capsys):
    labels = np.zeros((64, 96), dtype=np.uint8)
    labels[0, 0] = 12
    Image.fromarray(labels).save(data / "annotations" / "04.png")
    assert main(["segment", "train", "--data", str(data), *TRAIN, "--epochs", "1",
                 "--output", str(tmp_path / "strict")]) == 2
    assert "04.png holds label(s) 12 outside the 4 classes" in capsys.readouterr().err
    assert main(["segment", "train", "--data", str(data), *TRAIN, "--epochs", "1", "--on-bad-image", "skip",
                 "--output", str(tmp_path / "lenient")]) == 0
    assert (tmp_path / "lenient" / "skipped.txt").read_text().strip().endswith("04.png")


def test_a_run_stopped_mid_epoch_resumes_to_the_same_weights_and_keeps_its_best(data, tmp_path):
    job = SegmentJob(data=str(data), model="efficientformerv2_test", img_size=64, batch_size=4, fpn_channels=16,
                     head_channels=16, lr=2e-3, device="cpu", epochs=2)  # 6 images: 2 steps an epoch
    straight = run_segment_training(dataclasses.replace(job, output=str(tmp_path / "straight")))
    resumed_dir = tmp_path / "resumed"
    run_segment_training(dataclasses.replace(job, output=str(resumed_dir), max_steps=3))
    state_file = latest_state(resumed_dir)
    assert state_file is not None and state_file.name == "state_e0001_s000001.pt"  # one step into epoch 1

    # The state file is a plain dict under the names it has always had (files of older runs load the same way).
    # A best mIoU no model can reach: a resume that lost it would overwrite best.safetensors and report another.
    payload = torch.load(state_file, weights_only=True)
    assert {"model", "optimizer", "best_miou", "rng", "position"} <= payload.keys()
    payload["best_miou"] = 101.0
    torch.save(payload, state_file)
    best_before = (resumed_dir / "best.safetensors").read_bytes()

    resumed = run_segment_training(dataclasses.replace(job, output=str(resumed_dir), resume="auto"))
    assert resumed["steps"] == straight["steps"] == 4 and resumed["epochs"] == 2
    a = safetensors.torch.load_file(tmp_path / "straight" / "last.safetensors")
    b = safetensors.torch.load_file(resumed_dir / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["best_miou"] == 101.0
    assert (resumed_dir / "best.safetensors").read_bytes() == best_before


@pytest.mark.slow  # a 2-process torchrun; in CI's slow pass
@pytest.mark.ddp
def test_two_processes_under_torchrun(data, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "EFFICIENTFORMER_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "efficientformer", "segment", "train", "--data", str(data), *TRAIN, "--epochs", "1",
                             "--batch-size", "2", "--output", str(tmp_path / "ddp")],
                            env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "ddp" / "job.json").read_text())["world_size"] == 2
    line = json.loads((tmp_path / "ddp" / "metrics.jsonl").read_text())
    assert line["steps"] == 2 and 0.0 <= line["miou"] <= 100.0  # 6 images / (2 ranks x 2) -> 2 steps each
    model, _ = load_segmenter(tmp_path / "ddp" / "last.safetensors")
    assert model.num_classes == len(CLASSES)
