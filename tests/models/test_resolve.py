"""The one rule for a model or weights argument (factory.classify_argument; docs/architecture.md): each kind of
input, the ambiguous cases, and errors that name the bad value and list what it could have been."""

from __future__ import annotations

import json

import pytest

import efficientformer
from efficientformer.errors import BadFileError, ConfigError, MissingFileError, UnknownNameError
from efficientformer.factory import classify_argument, classify_weights, resolve_spec
from efficientformer.models import MOBILENETV2_CONFIGS, get_config
from efficientformer.predict import prepare_model
from efficientformer.search.space import TINY_SPACE, get_space
from efficientformer.weights import WEIGHTS

TAG = next(iter(WEIGHTS))


def test_each_kind_of_input(tmp_path, tiny_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.json").write_text(tiny_config.to_json(), encoding="utf-8")
    ckpt = efficientformer.save_checkpoint(efficientformer.create_model(tiny_config), tmp_path / "m.safetensors")
    cases = {tiny_config: ("spec", tiny_config), tiny_config.to_json(): ("json text", tiny_config),
             "tiny.json": ("json file", tiny_config), str(ckpt): ("checkpoint", tiny_config),
             "s0": ("name", get_config("efficientformerv2_s0")),
             "mobilenetv2_140": ("name", MOBILENETV2_CONFIGS["mobilenetv2_140"]),
             TAG: ("weight tag", get_config(WEIGHTS[TAG].model))}
    for value, (kind, spec) in cases.items():
        assert classify_argument(value) == kind, value
        assert resolve_spec(value) == spec, value


def test_a_file_named_like_a_variant_is_the_variant_unless_written_as_a_path(tmp_path, tiny_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    efficientformer.save_checkpoint(efficientformer.create_model(tiny_config), tmp_path / "s0.safetensors")
    (tmp_path / "s0.safetensors").rename(tmp_path / "s0")
    assert resolve_spec("s0").name == "efficientformerv2_s0"
    assert classify_argument("./s0") == "checkpoint" and resolve_spec("./s0") == tiny_config
    # A bare file that is no name is still a checkpoint, or a config when it holds JSON.
    (tmp_path / "s0").rename(tmp_path / "mine")
    (tmp_path / "conf").write_text(tiny_config.to_json(), encoding="utf-8")
    assert classify_argument("mine") == "checkpoint" and classify_argument("conf") == "json file"
    assert resolve_spec("conf") == tiny_config


@pytest.mark.parametrize("value", ["missing.json", "runs/x/best.safetensors", "weights.pth"])
def test_a_missing_path_names_it(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingFileError, match=value.replace(".", r"\.")):
        resolve_spec(value)


def test_an_unknown_name_lists_what_it_could_have_been():
    with pytest.raises(UnknownNameError, match="'s9'") as caught:
        resolve_spec("s9")
    message = str(caught.value)
    assert "efficientformerv2_s0" in message and "mobilenetv2_100" in message and TAG in message


def test_json_text_with_a_bad_field_names_the_field():
    data = {**json.loads(get_config("efficientformerv2_test").to_json()), "no_such_field": 1}
    with pytest.raises(ConfigError, match="no_such_field"):
        resolve_spec(json.dumps(data))
    with pytest.raises(ConfigError, match="not valid JSON"):
        resolve_spec("{nope")


def test_a_json_file_with_a_bad_field_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "x", "stages": "many"}), encoding="utf-8")
    with pytest.raises(BadFileError, match="bad.json"):
        resolve_spec(path)


def test_weights_arguments_take_checkpoints_and_tags_only(tmp_path, tiny_config):
    ckpt = efficientformer.save_checkpoint(efficientformer.create_model(tiny_config), tmp_path / "m.safetensors")
    assert classify_weights(ckpt) == "checkpoint" and classify_weights(TAG) == "weight tag"
    with pytest.raises(ConfigError, match="'s0' are a name, not weights"):
        classify_weights("s0")
    with pytest.raises(MissingFileError, match="gone.pth"):
        prepare_model(weights=tmp_path / "gone.pth")
    with pytest.raises(UnknownNameError, match="'nothing'"):
        prepare_model(weights="nothing")
    model, trained = prepare_model(weights=ckpt)
    assert trained and model.config == tiny_config


def test_search_spaces_follow_the_same_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").write_text(TINY_SPACE.to_json(), encoding="utf-8")
    assert get_space("tiny") is TINY_SPACE  # the name wins over a file of that name
    assert get_space(TINY_SPACE.to_json()) == TINY_SPACE and get_space("./tiny") == TINY_SPACE
    with pytest.raises(MissingFileError, match="other.json"):
        get_space("other.json")
    with pytest.raises(UnknownNameError, match="'huge'.*efficientformerv2, tiny"):
        get_space("huge")
