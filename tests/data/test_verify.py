"""data.verify and `efficientformer data check`: every bad file listed once with its reason, exit codes."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from efficientformer.cli import main
from efficientformer.data import BAD_IMAGE_REASONS, verify_images
from efficientformer.data.verify import check_image


def _reasons(report) -> dict[str, str]:
    return {bad.path: bad.reason for bad in report.bad}


def _expected(image_tree) -> dict[str, str]:
    return {image_tree.path(name): reason for name, reason in image_tree.bad.items()}


def test_report_lists_exactly_the_bad_files_with_reasons(image_tree):
    report = verify_images(image_tree.root)
    assert _reasons(report) == _expected(image_tree)
    assert [bad.path for bad in report.bad] == sorted(bad.path for bad in report.bad)  # sample order
    assert set(image_tree.bad.values()) == set(BAD_IMAGE_REASONS) - {"missing"}  # every kind is exercised
    assert not report.ok and report.num_images == 12
    assert report.classes == ("cat", "dog", "fish")
    assert report.images_per_class == {"cat": 4, "dog": 5, "fish": 3}
    assert report.bad_per_class() == {"cat": 1, "dog": 2, "fish": 2}
    assert report.bad_per_reason() == {"empty": 1, "unreadable": 1, "truncated": 1, "corrupt": 1, "oversized": 1}
    labels = {bad.path.split("/")[-1]: bad.label for bad in report.bad}
    assert labels == {"truncated.jpg": "cat", "empty.jpg": "dog", "random.jpg": "dog", "bomb.png": "fish",
                      "corrupt.png": "fish"}
    bomb = next(bad for bad in report.bad if bad.reason == "oversized")
    assert bomb.detail == "4,096 pixels, over the limit of 2,000 (PIL.Image.MAX_IMAGE_PIXELS)"


def test_oversized_follows_the_pillow_limit(image_tree, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    assert check_image(image_tree.path("fish/bomb.png")) is None
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4095)
    assert check_image(image_tree.path("fish/bomb.png"))[0] == "oversized"


def test_worker_processes_give_the_same_report(image_tree):
    sequential = verify_images(image_tree.root)
    assert verify_images(image_tree.root, workers=2, progress=False) == sequential  # limit passed to the workers


def test_clean_folder_and_list_file_with_a_missing_entry(image_tree, tmp_path):
    for name in image_tree.bad:
        (image_tree.root / name).unlink()
    report = verify_images(image_tree.root)
    assert report.ok and report.bad == () and report.num_images == len(image_tree.good)
    listing = tmp_path / "val.csv"
    listing.write_text("images/cat/rgb.jpg,cat\nimages/dog/gone.jpg,dog\nimages/dog/cmyk.jpg,dog\n")
    report = verify_images(listing)
    assert [(bad.path, bad.label, bad.reason) for bad in report.bad] == [
        (str(tmp_path / "images/dog/gone.jpg"), "dog", "missing")]
    assert report.images_per_class == {"cat": 1, "dog": 2}


def test_report_to_dict_is_json(image_tree):
    data = json.loads(json.dumps(verify_images(image_tree.root).to_dict()))
    assert data["ok"] is False and data["num_images"] == 12 and data["num_bad"] == 5
    assert data["classes"][1] == {"name": "dog", "images": 5, "bad": 2}
    assert {entry["path"]: entry["reason"] for entry in data["bad"]} == _expected(image_tree)


def test_cli_check_exit_codes_and_table(image_tree, capsys):
    assert main(["data", "check", str(image_tree.root), "--workers", "0"]) == 1
    out = capsys.readouterr().out
    for name, reason in image_tree.bad.items():
        line = next(line for line in out.splitlines() if name.split("/")[-1] in line)
        assert reason in line
    assert "12 images in 3 classes" in out and "5 of 12 images are bad" in out
    assert main(["data", "check", str(image_tree.root), "--workers", "0", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert {entry["path"]: entry["reason"] for entry in data["bad"]} == _expected(image_tree)

    for name in image_tree.bad:
        (image_tree.root / name).unlink()
    assert main(["data", "check", str(image_tree.root), "--workers", "0"]) == 0
    assert "all 7 images decode" in capsys.readouterr().out


def test_cli_check_user_errors_exit_2(image_tree, tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err
    shutil.rmtree(image_tree.root / "fish")
    (image_tree.root / "fish").mkdir()
    assert main(["data", "check", str(image_tree.root)]) == 2
    assert "has no images" in capsys.readouterr().err
    assert main(["data"]) == 2  # the action is required
    with pytest.raises(FileNotFoundError):
        main(["data", "check", str(tmp_path / "nowhere"), "--debug"])
