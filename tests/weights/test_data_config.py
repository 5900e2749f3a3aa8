"""Each weight tag's preprocessing (crop 0.95, bicubic, ImageNet mean/std) reaches data_config, predict and eval."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import efficientformer
from efficientformer import factory
from efficientformer.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, sample_image_path
from efficientformer.predict import load_images, predict, prepare_model
from efficientformer.train import evaluate
from efficientformer.weights.checkpoint import write_state_dict
from efficientformer.weights.zoo import WEIGHTS, DataConfig
from support import randomize_

TAG = "efficientformerv2_s0.snap_dist_in1k"


@pytest.fixture
def zoo_tag(tmp_path, monkeypatch):
    """TAG served from a local timm-layout file of random S0 weights (no download)."""
    model = randomize_(efficientformer.create_model("efficientformerv2_s0"))
    path = write_state_dict(model.state_dict(), tmp_path / "s0.safetensors", "timm")
    monkeypatch.setattr(factory, "resolve_weights", lambda tag: path if tag == TAG else None)
    return TAG


def test_tag_name_and_model_configs():
    expected = DataConfig(input_size=(3, 224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=0.95,
                          interpolation="bicubic")
    assert efficientformer.data_config(TAG) == expected
    assert efficientformer.data_config("s0") == expected  # a name: its default weights
    assert efficientformer.data_config(TAG).to_dict()["crop_pct"] == WEIGHTS[TAG].crop_pct == 0.95
    plain = efficientformer.data_config(efficientformer.create_model("efficientformerv2_test", img_size=96))
    assert (plain.crop_pct, plain.input_size) == (0.875, (3, 96, 96))  # random weights: the standard default
    with pytest.raises(TypeError, match="got int"):
        efficientformer.data_config(3)
    with pytest.raises(ValueError, match="crop_pct must be in"):
        DataConfig(crop_pct=1.5)


def test_a_model_built_from_a_tag_keeps_its_preprocessing_at_its_own_size(zoo_tag):
    model = efficientformer.create_model("s0", pretrained=zoo_tag, img_size=256)
    assert efficientformer.data_config(model) == DataConfig(input_size=(3, 256, 256), crop_pct=0.95)


def test_predict_crops_like_the_tag(zoo_tag):
    model, pretrained = prepare_model(weights=zoo_tag)
    assert pretrained and model.pretrained_tag == zoo_tag
    image = Image.open(sample_image_path()).convert("RGB")
    got = predict(model, [image], topk=3)[0]

    def top3(crop_pct):
        with torch.no_grad():
            probs = model(load_images([image], (224, 224), crop_pct)).softmax(-1)[0]
        values, indices = probs.topk(3)
        return indices.tolist(), values.tolist()

    indices, values = top3(0.95)
    assert [p.index for p in got] == indices and [p.prob for p in got] == pytest.approx(values, abs=1e-6)
    assert top3(0.875)[1] != pytest.approx(values, abs=1e-6)  # the old default crop gives other numbers
    assert predict(model, [image], topk=3, crop_pct=0.875)[0][0].prob == pytest.approx(top3(0.875)[1][0], abs=1e-6)


def test_eval_crops_like_the_tag(zoo_tag, tmp_path, monkeypatch):
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        pixels = np.random.default_rng(len(name)).integers(0, 255, (48, 80, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "data" / name / "0.png")
    real_dataset = evaluate.eval_dataset

    def two_images_thousand_classes(data, classes, num_classes, **kwargs):
        dataset = real_dataset(data, None, 2, **kwargs)
        dataset.classes = [f"c{i}" for i in range(num_classes)]  # labels 0 and 1 of the tag's 1000 classes
        return dataset

    used = []
    real_transform = evaluate.EvalTransform

    def recording_transform(*args, **kwargs):
        transform = real_transform(*args, **kwargs)
        used.append(transform)
        return transform

    monkeypatch.setattr(evaluate, "eval_dataset", two_images_thousand_classes)
    monkeypatch.setattr(evaluate, "EvalTransform", recording_transform)
    summary = evaluate.run_eval(zoo_tag, data=str(tmp_path / "data"), output=tmp_path / "out", device="cpu")
    assert summary["crop_pct"] == 0.95 and summary["images"] == 2
    assert [(t.crop_pct, t.interpolation, t.mean, t.std) for t in used] == [(0.95, "bicubic", IMAGENET_MEAN,
                                                                             IMAGENET_STD)]
