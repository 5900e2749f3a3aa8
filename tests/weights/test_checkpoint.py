"""Checkpoint I/O: layouts, bit-exact round trips, strict reports, resampling, refusing unsafe files."""

from __future__ import annotations

import os
import pickle

import pytest
import safetensors.torch
import torch

import efficientformer
from efficientformer.weights.checkpoint import CheckpointError, read_checkpoint, write_state_dict
from efficientformer.weights.convert import official_to_ours, ours_to_official
from support import randomize_state_dict, sample_input


def random_state(name_or_config, seed=0, **overrides):
    model = efficientformer.create_model(name_or_config, **overrides)
    return randomize_state_dict(model.state_dict(), seed)


def assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("name", efficientformer.list_models())
def test_official_layout_round_trip_in_memory(name):
    state = random_state(name)
    official = ours_to_official(state)
    assert len(official) == len(state) + sum(k.endswith("attention_biases") for k in state)
    assert_same_tensors(official_to_ours(official), state)
    assert all(official[k].shape[1:] == (1, 1) for k in official if "layer_scale" in k)


@pytest.mark.parametrize("name", ["efficientformerv2_s0", "efficientformerv2_test"])
def test_convert_official_ours_official_bit_exact(tmp_path, name):
    official_path = tmp_path / "official.pth"
    state = random_state(name)
    torch.save({"model": ours_to_official(state), "epoch": 449}, official_path)
    original = torch.load(official_path, weights_only=True)["model"]
    assert efficientformer.convert_checkpoint(official_path, tmp_path / "ours.safetensors") == ("official", "ours")
    efficientformer.convert_checkpoint(tmp_path / "ours.safetensors", tmp_path / "back.pth", to="official")
    assert_same_tensors(torch.load(tmp_path / "back.pth", weights_only=True)["model"], original)


def test_convert_timm_ours_timm_bit_exact(tmp_path):
    state = random_state("efficientformerv2_s1")
    safetensors.torch.save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    assert efficientformer.convert_checkpoint(tmp_path / "model.safetensors", tmp_path / "ours.safetensors") \
        == ("timm", "ours")
    efficientformer.convert_checkpoint(tmp_path / "ours.safetensors", tmp_path / "timm.safetensors", to="timm")
    assert_same_tensors(safetensors.torch.load_file(tmp_path / "timm.safetensors"), state)


def test_official_and_timm_files_give_equal_logits(tmp_path):
    state = random_state("efficientformerv2_s0")
    write_state_dict(state, tmp_path / "official.pth", "official")
    safetensors.torch.save_file(state, tmp_path / "timm.safetensors")
    x = sample_input(2, 224, 224)
    from_official = efficientformer.load_model(tmp_path / "official.pth")
    from_timm = efficientformer.load_model(tmp_path / "timm.safetensors")
    with torch.no_grad():
        assert torch.equal(from_official(x), from_timm(x))


def test_save_and_load_model_rebuilds_config(tmp_path, tiny_config):
    model = efficientformer.create_model(tiny_config, num_classes=3, img_size=(96, 64)).eval()
    path = efficientformer.save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = efficientformer.load_model(path)
    assert loaded.config == model.config
    x = sample_input(1, 96, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert not list(tmp_path.glob(".*tmp")), "temporary file left behind"


def test_save_requires_safetensors_suffix(tmp_path, tiny_model):
    with pytest.raises(ValueError, match="safetensors"):
        efficientformer.save_checkpoint(tiny_model, tmp_path / "m.pth")


def test_load_model_infers_architecture_and_classes(tmp_path):
    state = random_state("efficientformerv2_s2", num_classes=37)
    write_state_dict(state, tmp_path / "s2.pth", "official")
    config = efficientformer.load_model(tmp_path / "s2.pth").config
    assert config.name == "efficientformerv2_s2" and config.num_classes == 37


def test_load_at_another_resolution_resamples_bias_tables(tmp_path):
    state = random_state("efficientformerv2_s0")
    write_state_dict(state, tmp_path / "official.pth", "official")
    model = efficientformer.create_model("efficientformerv2_s0", img_size=384)
    report = efficientformer.load_checkpoint(model, tmp_path / "official.pth")
    assert len(report.resampled) == 5 and report.ok
    table = model.stages[3].blocks[3].token_mixer.attention_biases
    assert table.shape == (8, 144)
    with torch.no_grad():
        assert model.eval()(sample_input(1, 384, 384)).isfinite().all()
    # Resampling to the same grid is the identity.
    same = efficientformer.create_model("efficientformerv2_s0")
    efficientformer.load_checkpoint(same, tmp_path / "official.pth")
    assert torch.equal(same.stages[3].blocks[3].token_mixer.attention_biases,
                       state["stages.3.blocks.3.token_mixer.attention_biases"])


def test_strict_report_names_keys_and_shapes(tmp_path):
    state = random_state("efficientformerv2_s0")
    state.pop("stages.0.blocks.0.mlp.fc1.conv.weight")
    state["extra.weight"] = torch.zeros(3)
    state["head.weight"] = torch.zeros(5, 176)
    write_state_dict(state, tmp_path / "bad.safetensors", "timm")
    model = efficientformer.create_model("efficientformerv2_s0")
    with pytest.raises(CheckpointError) as info:
        efficientformer.load_checkpoint(model, tmp_path / "bad.safetensors")
    message = str(info.value)
    assert "bad.safetensors" in message
    assert "missing from checkpoint: stages.0.blocks.0.mlp.fc1.conv.weight [128, 32, 1, 1]" in message
    assert "unexpected in checkpoint: extra.weight [3]" in message
    assert "shape mismatch: head.weight checkpoint [5, 176] vs model [1000, 176]" in message
    report = efficientformer.load_checkpoint(model, tmp_path / "bad.safetensors", strict=False)
    assert not report.ok and len(report.loaded) == len(state) - 2


def test_pretrained_with_new_class_count_keeps_fresh_heads(tmp_path):
    state = random_state("efficientformerv2_s0")
    write_state_dict(state, tmp_path / "official.pth", "official")
    model = efficientformer.create_model("efficientformerv2_s0", num_classes=5, pretrained=tmp_path / "official.pth")
    assert model.head.weight.shape == (5, 176)
    assert torch.equal(model.stem.conv1.conv.weight, state["stem.conv1.conv.weight"])


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"stem.conv1.conv.weight": torch.zeros(1)}, "payload": Exploit()}, path)
    with pytest.raises(CheckpointError, match="refused to load .*evil.pth"):
        read_checkpoint(path)


def test_legacy_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "legacy.pth"
    path.write_bytes(pickle.dumps(Exploit(), protocol=2))
    with pytest.raises(CheckpointError, match="legacy.pth"):
        read_checkpoint(path)


@pytest.mark.parametrize("suffix,layout", [(".pth", "official"), (".safetensors", "timm")])
def test_truncated_file_names_the_file(tmp_path, suffix, layout):
    path = tmp_path / f"cut{suffix}"
    write_state_dict(random_state("efficientformerv2_test"), path, layout)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"cut{suffix}"):
        read_checkpoint(path)


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "junk.bin").write_bytes(b"hello world, not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.bin"):
        read_checkpoint(tmp_path / "junk.bin")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        read_checkpoint(tmp_path / "nope.pth")


def test_not_an_efficientformer_state_dict(tmp_path):
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not an EfficientFormerV2 state dict"):
        read_checkpoint(tmp_path / "other.pth")


def test_ddp_prefix_is_stripped(tmp_path):
    state = random_state("efficientformerv2_test")
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ddp.pth")
    assert_same_tensors(read_checkpoint(tmp_path / "ddp.pth").state_dict, state)


def test_failed_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"old")

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", explode)
    with pytest.raises(OSError, match="disk full"):
        write_state_dict(random_state("efficientformerv2_test"), path, "timm")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
