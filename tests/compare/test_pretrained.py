"""`compare --pretrained`: models start from their published weights through the training job's `pretrained`
option; a model without weights stops the comparison before training ('all') or trains from scratch, named
('available'). The zoo's S0 file is planted in a private cache (offline), so nothing is downloaded."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
import torch

from efficientformer.cli import main
from efficientformer.compare.pretrained import published_tag, start_weights
from efficientformer.compare.run import CompareConfig, run_compare
from efficientformer.errors import ConfigError
from efficientformer.factory import create_model, load_model
from efficientformer.models.mobilenetv2 import MOBILENETV2_CONFIGS
from efficientformer.models.registry import get
from efficientformer.train.recipes import get_recipe
from efficientformer.weights.checkpoint import save_checkpoint
from efficientformer.weights.download import weights_path
from efficientformer.weights.zoo import DEFAULT, WEIGHTS

S0 = "efficientformerv2_s0"
TAG = DEFAULT[S0]
TRAIN_FLAGS = ["--epochs", "1", "--warmup-epochs", "0", "--img-size", "32", "--batch-size", "8"]
TIME_FLAGS = ["--runtime", "torch-fused", "--repeats", "2", "--warmup", "1"]
STEM = "stem.conv1.conv.weight"


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """The S0 tag's cache file holds weights of a seeded S0 that no run would draw itself; returns them."""
    monkeypatch.setenv("EFFICIENTFORMER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EFFICIENTFORMER_OFFLINE", "1")
    torch.manual_seed(1234)
    model = create_model(S0)
    path = weights_path(WEIGHTS[TAG])
    path.parent.mkdir(parents=True)
    save_checkpoint(model, path)
    return model.state_dict()


def test_published_weights_need_the_registered_architecture():
    assert published_tag(get(S0)) == TAG
    assert published_tag(get(S0).replace(num_classes=3, img_size=32)) == TAG  # heads and resolution adapt
    shallower = (dataclasses.replace(get(S0).stages[0], depth=1, mlp_ratios=(4,)),) + get(S0).stages[1:]
    assert published_tag(get(S0).replace(stages=shallower)) is None  # a found.json that kept S0's name
    assert published_tag(MOBILENETV2_CONFIGS["mobilenetv2_100"]) is None
    specs = [get(S0), MOBILENETV2_CONFIGS["mobilenetv2_100"]]
    assert start_weights(specs, None) == {S0: None, "mobilenetv2_100": None}
    assert start_weights(specs, "available") == {S0: TAG, "mobilenetv2_100": None}


def test_all_names_a_model_without_weights_before_anything_trains(folder, tiny_mobilenet, tmp_path):
    config = CompareConfig(models=(S0, str(tiny_mobilenet)), output=str(tmp_path / "cmp"), data=str(folder),
                           pretrained="all", runtime="torch-fused")
    with pytest.raises(ConfigError, match="no published weights for mobilenetv2_tiny.*--pretrained available"):
        run_compare(config)
    assert not (tmp_path / "cmp").exists()
    with pytest.raises(ConfigError, match="pretrained must be one of all, available"):
        CompareConfig(pretrained="efficientformerv2_s0.snap_dist_in1k")


def test_available_starts_s0_from_its_weights_and_the_other_from_scratch(planted, folder, tiny_mobilenet, tmp_path,
                                                                         capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "--models", f"s0,{tiny_mobilenet}", "--pretrained", "available", "--data", str(folder),
                 *TRAIN_FLAGS, *TIME_FLAGS, "--output", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    with open(out / "compare.csv", newline="") as handle:
        rows = {row["model"]: row for row in csv.DictReader(handle)}
    assert rows[S0]["start"] == TAG and rows["mobilenetv2_tiny"]["start"] == "scratch"
    assert rows[S0]["error"] == "" and float(rows[S0]["median_ms"]) > 0
    assert "no published weights for mobilenetv2_tiny" in printed and "| start |" in printed
    jobs = {name: json.loads((out / "runs" / f"{name}_seed0" / "job.json").read_text())
            for name in (S0, "mobilenetv2_tiny")}
    assert jobs[S0]["pretrained"] == TAG and jobs["mobilenetv2_tiny"]["pretrained"] is None
    # Three small AdamW steps moved the planted stem a little; a fresh start would be a whole init away.
    trained = load_model(out / "runs" / f"{S0}_seed0" / "last.safetensors").state_dict()[STEM]
    torch.manual_seed(0)
    fresh = create_model(S0).state_dict()[STEM]
    assert (trained - planted[STEM]).norm() < 0.05 * (fresh - planted[STEM]).norm()
    settings = json.loads((out / "compare_settings.json").read_text())
    assert settings["pretrained"] == "available"  # a resume from scratch would be refused

    recipe = get_recipe("default").replace(epochs=1, warmup_epochs=0, img_size=32, batch_size=8)
    with pytest.raises(ConfigError, match="pretrained"):
        run_compare(CompareConfig(models=(S0, str(tiny_mobilenet)), output=str(out), data=str(folder), recipe=recipe,
                                  runtime="torch-fused", resume="auto"))
