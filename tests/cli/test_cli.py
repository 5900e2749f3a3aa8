"""The command line end to end: `python -m efficientformer ...` in a subprocess, plus a few in-process calls."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from efficientformer import save_checkpoint
from efficientformer.cli import COMMANDS, main
from efficientformer.data import sample_image_path
from efficientformer.predict import predict
from efficientformer.weights.checkpoint import write_state_dict


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "120", "EFFICIENTFORMER_NO_PROGRESS": "1"}
    return subprocess.run([sys.executable, "-m", "efficientformer", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_model):
    return save_checkpoint(tiny_model, tmp_path / "tiny.safetensors")


def test_help_lists_every_command():
    result = run_cli("-h")
    assert result.returncode == 0, result.stderr
    for name in COMMANDS:
        assert re.search(rf"^\s+{name}\s", result.stdout, re.M), f"{name} missing from -h:\n{result.stdout}"


def test_every_command_has_help(capsys):
    for name in COMMANDS:
        assert main([name, "-h"]) == 0
        assert "usage: efficientformer " + name in capsys.readouterr().out


def test_list():
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    assert "efficientformerv2_s0" in result.stdout and "3,600,256" in result.stdout
    assert "efficientformerv2_test" not in result.stdout


def test_list_json(capsys):
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    params = {m["name"]: m["params"] for m in data["models"]}
    assert params == {"efficientformerv2_s0": 3_600_256, "efficientformerv2_s1": 6_185_560,
                      "efficientformerv2_s2": 12_710_112, "efficientformerv2_l": 26_322_288}
    assert all({"tag", "model", "url"} <= set(w) for w in data["weights"])


def test_info_s0_json():
    result = run_cli("info", "efficientformerv2_s0", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["params"] == 3_600_256
    assert data["macs"] == pytest.approx(0.40e9, rel=0.03)
    assert [s["output_shape"] for s in data["stages"]] == [[1, 32, 56, 56], [1, 48, 28, 28], [1, 96, 14, 14],
                                                            [1, 176, 7, 7]]


def test_info_table_alias_config_file_and_overrides(tmp_path, tiny_config, capsys):
    assert main(["info", "s0"]) == 0
    out = capsys.readouterr().out
    assert "3,600,256" in out and "stage 4" in out
    config_file = tmp_path / "found.json"
    config_file.write_text(tiny_config.to_json())
    assert main(["info", str(config_file), "--img-size", "96", "--num-classes", "0", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["img_size"] == [96, 96] and data["num_classes"] == 0


def test_convert_official_round_trip_is_bit_exact(tmp_path, tiny_model):
    official = tmp_path / "official.pth"
    write_state_dict(tiny_model.state_dict(), official, "official")
    ours = tmp_path / "ours.safetensors"
    back = tmp_path / "back.pth"
    result = run_cli("convert", official, ours)
    assert result.returncode == 0, result.stderr
    assert "official layout" in result.stdout and "ours layout" in result.stdout
    assert f"{len(tiny_model.state_dict())} tensors" in result.stdout
    result = run_cli("convert", ours, back, "--to", "official")
    assert result.returncode == 0, result.stderr
    before = torch.load(official, weights_only=True)["model"]
    after = torch.load(back, weights_only=True)["model"]
    assert sorted(before) == sorted(after)
    for key, tensor in before.items():
        assert tensor.dtype == after[key].dtype and torch.equal(tensor, after[key]), key


def test_predict_table_on_bundled_image(tiny_checkpoint):
    result = run_cli("predict", "--weights", tiny_checkpoint)
    assert result.returncode == 0, result.stderr
    assert "cat.jpg" in result.stdout
    rows = re.findall(r"^\W*\d+\W+\d+\W+class \d+\W+[\d.]+%", result.stdout, re.M)
    assert len(rows) == 5, result.stdout
    assert "random" not in result.stderr


def test_predict_json(tiny_checkpoint, tiny_model):
    image = str(sample_image_path())
    result = run_cli("predict", image, image, "--weights", tiny_checkpoint, "--topk", "3", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data) == 2 and data[0]["pretrained"] is True
    expected = predict(tiny_model, [image], topk=3)[0]
    for entry in data:
        assert [p["index"] for p in entry["predictions"]] == [p.index for p in expected]
        assert [p["prob"] for p in entry["predictions"]] == pytest.approx([p.prob for p in expected], abs=1e-6)


def test_predict_bad_image_path_exit_code_2(tiny_checkpoint, tmp_path):
    missing = tmp_path / "no_such_photo.jpg"
    result = run_cli("predict", missing, "--weights", tiny_checkpoint)
    assert result.returncode == 2
    assert str(missing) in result.stderr.replace("\n", "")
    assert "Traceback" not in result.stderr


def test_predict_random_weights_warns(capsys):
    assert main(["predict", "--model", "efficientformerv2_test", "--json", "--topk", "20"]) == 0
    captured = capsys.readouterr()
    assert "random weights" in captured.err
    assert len(json.loads(captured.out)[0]["predictions"]) == 10  # topk is capped at the class count


@pytest.mark.parametrize("argv,needle", [
    (["info", "/no/such/config.json"], "/no/such/config.json"),
    (["info", "efficientformerv2_xxl"], "unknown model"),
    (["convert", "/no/such/ckpt.pth", "out.safetensors"], "/no/such/ckpt.pth"),
    (["predict", "--weights", "/no/such/weights.safetensors"], "/no/such/weights.safetensors"),
    (["predict"], "give a model"),
])
def test_library_errors_are_one_line_exit_2(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err.replace("\n", "") and "error" in err and "Traceback" not in err


def test_debug_shows_traceback():
    with pytest.raises(FileNotFoundError):
        main(["--debug", "info", "/no/such/config.json"])
    with pytest.raises(FileNotFoundError):
        main(["info", "/no/such/config.json", "--debug"])


def test_usage_error_exit_2(capsys):
    assert main(["info"]) == 2
    assert main([]) == 2
    assert main(["predict", "--topk", "x"]) == 2


def test_predict_with_model_and_weights_file(tiny_checkpoint, capsys):
    assert main(["predict", "--model", "efficientformerv2_test", "--weights", str(tiny_checkpoint), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)[0]["pretrained"] is True and "random" not in captured.err


def test_info_reads_the_config_of_a_checkpoint(tmp_path, tiny_model, capsys):
    path = save_checkpoint(tiny_model, tmp_path / "best.safetensors")
    assert main(["info", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == tiny_model.config.name
    assert data["params"] == sum(p.numel() for p in tiny_model.parameters())


def test_predict_names_the_classes_of_a_training_run(tmp_path, tiny_model, capsys):
    names = [f"flower_{i}" for i in range(tiny_model.num_classes)]
    path = save_checkpoint(tiny_model, tmp_path / "best.safetensors",
                           metadata={"classes": json.dumps(names), "eval_crop_pct": "1.0"})
    assert main(["predict", str(sample_image_path()), "--weights", str(path), "--topk", "3", "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)[0]["predictions"]
    assert len(predictions) == 3 and all(p["name"] == names[p["index"]] for p in predictions)
