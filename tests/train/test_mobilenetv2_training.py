"""MobileNetV2 trains through the training job like any variant: layer-wise decay, exact resume, reloadable weights."""

from __future__ import annotations

import json

import pytest
import torch
from colour_folder import build_colour_folder
from safetensors.torch import load_file

from efficientformer.factory import build_model, data_config, load_model
from efficientformer.models.mobilenetv2 import MobileNetV2, MobileNetV2Config
from efficientformer.models.spec import spec_from_json
from efficientformer.train.evaluate import run_eval
from efficientformer.train.job import TrainJob, run_training
from efficientformer.train.recipes import get_recipe
from efficientformer.train.state import latest_state, load_state
from efficientformer.utils.threads import threads

# The fine-tuning recipe (layer-wise lr decay reads MobileNetV2's group_matcher), one epoch of 3 steps at 32x32.
RECIPE = get_recipe("finetune").replace(epochs=1, warmup_epochs=0, img_size=32, batch_size=8)
STANDARD_PARAMS = 3_504_872  # mobilenetv2_100 with 1000 classes (tests/models/test_mobilenetv2.py)


@pytest.fixture
def folder(tmp_path):
    return build_colour_folder(tmp_path / "colours", per_class=10, with_bad=False).root


def _job(folder, output, **changes) -> TrainJob:
    return TrainJob(output=str(output), data=str(folder), model="mobilenetv2_100", recipe=RECIPE, **changes)


def test_trains_resumes_exactly_and_reloads_with_identical_outputs(folder, tmp_path):
    with threads(1):  # the same thread count for both runs keeps them bitwise comparable
        summary = run_training(_job(folder, tmp_path / "ref"))
        stopped = run_training(_job(folder, tmp_path / "run", max_steps=1))
        resumed = run_training(_job(folder, tmp_path / "run", resume="auto"))
    assert summary["epoch"] == 1 and 0 <= summary["top1"] <= 100
    job = json.loads((tmp_path / "ref" / "job.json").read_text())
    assert job["model_config"] == {**MobileNetV2Config().to_dict(), "num_classes": 3, "img_size": [32, 32]}

    assert stopped["global_step"] == 1 and "top1" not in stopped
    assert resumed["top1"] == summary["top1"]
    expected, actual = (load_file(tmp_path / run / "last.safetensors") for run in ("ref", "run"))
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[key], actual[key]) for key in expected)

    model = load_model(tmp_path / "ref" / "last.safetensors")
    assert isinstance(model, MobileNetV2) and model.config.name == "mobilenetv2_100"
    assert sum(p.numel() for p in model.parameters()) == STANDARD_PARAMS - (1280 + 1) * 1000 + (1280 + 1) * 3
    _, payload = load_state(latest_state(tmp_path / "ref"))
    trained = MobileNetV2.from_config(model.config)
    trained.load_state_dict(payload["model"])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), trained.eval()(x))
    assert data_config(model).input_size == (3, 32, 32)
    report = run_eval(tmp_path / "ref" / "last.safetensors", data=str(folder), output=tmp_path / "eval")
    assert report["images"] == 30 and 0 <= report["top1"] <= 100


def test_specs_round_trip_and_build_either_family(tmp_path):
    tiny = MobileNetV2Config(name="mobilenetv2_tiny", width_mult=0.25, num_classes=5, img_size=64)
    path = tmp_path / "tiny.json"
    path.write_text(tiny.to_json())
    assert spec_from_json(path) == tiny and MobileNetV2Config.from_json(tiny.to_json()) == tiny
    model = build_model(path, num_classes=7)
    assert isinstance(model, MobileNetV2) and model.num_classes == 7 and model.config.width_mult == 0.25
    assert sum(p.numel() for p in build_model("mobilenetv2_100").parameters()) == STANDARD_PARAMS
    assert build_model("efficientformerv2_test", num_classes=3).config.name == "efficientformerv2_test"
    path.write_text(json.dumps({"family": "mobilenetv2", "width_mult": 0.5, "depth": 3}))
    with pytest.raises(ValueError, match=rf"{path.name}.*depth"):
        spec_from_json(path)
    with pytest.raises(ValueError, match="no published"):
        build_model("mobilenetv2_100", pretrained=True)
