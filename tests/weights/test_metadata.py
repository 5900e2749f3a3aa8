"""The one checkpoint-metadata reader: each field round-trips, foreign and broken files fail naming the file,
and the readers built on it (evaluation, supernet, segmenter, load_checkpoint) keep working."""

from __future__ import annotations

import json

import pytest
import safetensors.torch

import efficientformer
from efficientformer.errors import CheckpointError, MissingFileError
from efficientformer.factory import build_model
from efficientformer.models import MOBILENETV2_CONFIGS
from efficientformer.search.supernet import read_space
from efficientformer.train.evaluate import run_metadata
from efficientformer.train.segmentation import load_segmenter
from efficientformer.weights import CheckpointMeta, read_metadata
from efficientformer.weights.checkpoint import write_state_dict
from efficientformer.weights.metadata import SPACE_METADATA_KEY, config_metadata

SPACE = {"stages": [1, 2], "note": "any JSON object"}


def _write_ours(path, spec, **extra):
    state = build_model(spec).state_dict()
    metadata = {**config_metadata(spec, extra.pop("features_only", False), extra.pop("out_indices", None)), **extra}
    write_state_dict(state, path, "ours", metadata)
    return path


def test_every_field_round_trips(tmp_path, tiny_config):
    path = _write_ours(tmp_path / "m.safetensors", tiny_config, features_only=True, out_indices=(1, 3),
                       classes=json.dumps(["cat", "dog"]), eval_crop_pct="0.9",
                       **{SPACE_METADATA_KEY: json.dumps(SPACE), "note": "kept"})
    meta = read_metadata(path)
    assert isinstance(meta, CheckpointMeta) and meta.ours and meta.path == str(path)
    assert meta.config == tiny_config and meta.format_version == "1"
    assert meta.features_only and meta.out_indices == (1, 3)
    assert meta.classes == ("cat", "dog") and meta.eval_crop_pct == 0.9
    assert meta.search_space == SPACE
    assert meta.raw == {"note": "kept"}  # the parsed keys are not repeated there


def test_a_mobilenetv2_config_round_trips(tmp_path):
    config = MOBILENETV2_CONFIGS["mobilenetv2_100"]
    path = tmp_path / "m.safetensors"
    _write_ours(path, config)
    meta = read_metadata(path)
    assert meta.config == config and not meta.features_only and meta.out_indices is None and meta.classes is None


def test_a_foreign_safetensors_file_has_no_config_and_is_refused_where_ours_is_needed(tmp_path, tiny_config):
    path = tmp_path / "timm.safetensors"
    safetensors.torch.save_file(efficientformer.create_model(tiny_config).state_dict(), path, {"format": "pt"})
    meta = read_metadata(path)
    assert meta.format == "pt" and not meta.ours and meta.config is None and meta.raw == {}
    with pytest.raises(CheckpointError, match="timm.safetensors.*no search space"):
        read_space(path)
    with pytest.raises(CheckpointError, match="timm.safetensors.*not a segmenter"):
        load_segmenter(path)
    assert efficientformer.weights.read_checkpoint(path).layout == "timm"


@pytest.mark.parametrize("cut", [4, 40, -10])
def test_a_truncated_file_names_the_file(tmp_path, tiny_config, cut):
    path = _write_ours(tmp_path / "cut.safetensors", tiny_config)
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        read_metadata(path) if cut > 0 else efficientformer.weights.read_checkpoint(path)


def test_a_file_of_another_kind_and_a_missing_file(tmp_path):
    (tmp_path / "notes.safetensors").write_text("not a checkpoint at all", encoding="utf-8")
    with pytest.raises(CheckpointError, match="notes.safetensors"):
        read_metadata(tmp_path / "notes.safetensors")
    with pytest.raises(MissingFileError, match="absent.safetensors"):
        read_metadata(tmp_path / "absent.safetensors")


@pytest.mark.parametrize("key, value", [("config", "{not json"), ("config", '{"family": "nope"}'),
                                        ("classes", "3"), ("eval_crop_pct", "wide"), ("out_indices", '["a"]'),
                                        (SPACE_METADATA_KEY, "[1, 2]")])
def test_a_bad_field_names_the_file_and_the_field(tmp_path, tiny_config, key, value):
    path = tmp_path / "bad.safetensors"
    write_state_dict(build_model(tiny_config).state_dict(), path, "ours",
                     {**config_metadata(tiny_config, True, (0, 1)), key: value})
    with pytest.raises(CheckpointError, match=f"bad.safetensors.*{'model config' if key == 'config' else key}"):
        read_metadata(path)


def test_run_metadata_reads_the_run_and_ignores_other_files(tmp_path, tiny_config):
    (tmp_path / "a").mkdir()
    ours = _write_ours(tmp_path / "a" / "best.safetensors", tiny_config, classes='["x", "y"]', eval_crop_pct="0.8")
    assert run_metadata(ours) == {"classes": ("x", "y"), "eval_crop_pct": 0.8}
    pth = tmp_path / "b" / "m.pth"
    pth.parent.mkdir()
    write_state_dict(efficientformer.create_model(tiny_config).state_dict(), pth, "official")
    assert run_metadata(pth) == {}
    (pth.parent / "job.json").write_text(json.dumps({"classes": ["p", "q"], "eval_crop_pct": 0.7}), encoding="utf-8")
    assert run_metadata(pth) == {"classes": ("p", "q"), "eval_crop_pct": 0.7}


def test_a_config_that_disagrees_with_its_bias_tables_is_a_checkpoint_error(tmp_path, tiny_config):
    """The stored config claims one resolution, the tables were trained at another: the file is wrong."""
    state = efficientformer.create_model(tiny_config, img_size=224).state_dict()
    claimed = efficientformer.create_model(tiny_config, img_size=384).config
    path = tmp_path / "lies.safetensors"
    write_state_dict(state, path, "ours", config_metadata(claimed))
    model = efficientformer.create_model(tiny_config, img_size=320)
    with pytest.raises(CheckpointError, match="lies.safetensors.*attention_biases"):
        efficientformer.load_checkpoint(model, path)
