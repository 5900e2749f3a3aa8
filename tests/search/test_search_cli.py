"""`efficientformer lut` and `efficientformer search` end to end on the tiny space (64 px); the found JSON trains."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from efficientformer.cli import main
from efficientformer.cli.search import parse_count
from efficientformer.factory import create_model
from efficientformer.search.lut import LatencyTable, ParamCounter, build_lut
from efficientformer.search.run import SearchJob, reference_config, run_search
from efficientformer.search.space import TINY_SPACE, SearchSpace, StageSpace
from efficientformer.search.supernet import Supernet, save_supernet
from synthetic_lut import SyntheticClock

pytest.importorskip("sklearn", reason="the embedded digits need scikit-learn (pip install 'efficientformer[demo]')")


# A sub-space of the tiny space with a handful of actions, so that a real search takes seconds.
MICRO_SPACE = SearchSpace(name="micro", base=TINY_SPACE.base, stages=(
    StageSpace(widths=(8,), ratios=(2,), min_depth=1, max_depth=1),
    StageSpace(widths=(16,), ratios=(2,), min_depth=1, max_depth=1),
    StageSpace(widths=(16, 24), ratios=(2,), min_depth=1, max_depth=1, max_attn=1),
    StageSpace(widths=(24, 32), ratios=(2, 3), min_depth=1, max_depth=2, min_attn=1, max_attn=1)))


@pytest.fixture(scope="module")
def supernet_and_lut(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    supernet = save_supernet(Supernet(MICRO_SPACE), root / "sn.safetensors")  # untrained: the plumbing is tested
    # Synthetic latencies (synthetic_lut): every slimming action lowers the latency or keeps it, and
    # lowers the parameters, so every step raises the MES whatever the untrained supernet's accuracies.
    clock = SyntheticClock(warmup=1)
    lut = build_lut(MICRO_SPACE, "torch-fused", path=root / "lut.json", warmup=1, repeats=3, progress=False,
                    runner=clock.runner, timer=clock)
    return supernet, lut.path


def test_parse_count():
    assert parse_count("3.5M") == 3.5e6 and parse_count("800k") == 8e5 and parse_count("1200000") == 1.2e6
    with pytest.raises(Exception, match="count"):
        parse_count("lots")


def test_lut_command_builds_and_validates(tmp_path, capsys):
    output = tmp_path / "lut.json"
    code = main(["lut", "--space", "tiny", "--img-size", "64", "--output", str(output), "--warmup", "1",
                 "--repeats", "2", "--calibrate", "2", "--validate", "--random", "1", "--json"])
    assert code == 0
    table = LatencyTable.load(output)
    assert table.header["complete"] and "calibration" in table.header  # --calibrate 2 asked for it
    report = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in report["rows"]] == ["random-0-0"]
    assert report["rows"][0]["measured_ms"] > 0


def test_search_command_reaches_its_targets_and_writes_a_trainable_architecture(supernet_and_lut, tmp_path,
                                                                                 capsys):
    supernet, lut = supernet_and_lut
    # The smallest subnet is the only one with its parameter count: the search must slim all the way to it.
    smallest = MICRO_SPACE.min_config()
    target_params, target_latency = ParamCounter()(smallest), LatencyTable.load(lut).predict(smallest)
    output = tmp_path / "run"
    args = ["search", "--supernet", str(supernet), "--lut", str(lut), "--output", str(output),
            "--target-params", str(target_params), "--target-latency-ms", str(target_latency), "--eval-images", "20",
            "--calib-images", "16", "--threads", "1"]
    assert main(args) == 0
    summary = json.loads((output / "summary.json").read_text())
    assert summary["targets_met"] and summary["stop_reason"] == "targets met"
    printed = capsys.readouterr().out
    assert "-> met" in printed and "found" in printed and reference_config(MICRO_SPACE).name in printed
    found = Path(summary["found"])
    assert found.parent == output and found.name.startswith("micro_") and "ms_mes@" in found.name
    model = create_model(str(found))
    assert model.config.stages == smallest.stages
    # S3 width and attention, S4 width, depth and the remaining FFN ratio: five moves at least (a strided
    # step far from the targets takes several: "width[2]+attn[2]").
    steps = list(csv.DictReader((output / "trajectory.csv").open()))
    assert len(steps) == summary["steps"] + 1
    assert sum(len(step["action"].split("+")) for step in steps[1:]) >= 5
    assert all(float(b["mes"]) > float(a["mes"]) for a, b in zip(steps, steps[1:]))
    assert (output / "pareto.png").stat().st_size > 10_000
    names = [row["name"] for row in summary["rows"]]
    assert names[:3] == ["found", "largest (start)", "smallest (reference)"] and "MobileNetV2" in names[-1]
    # `efficientformer train --model found.json` takes the file unchanged.
    assert MICRO_SPACE.contains(model.config) and TINY_SPACE.contains(model.config)
    assert main(["train", "--model", str(found), "--output", str(tmp_path / "train"), "--max-steps", "1",
                 "--batch-size", "16"]) == 0
    # A second run resumes: nothing is evaluated again.
    assert main(args) == 0
    assert json.loads((output / "summary.json").read_text())["evaluations_this_run"] == 0


def test_search_command_exits_1_when_the_targets_are_not_met(supernet_and_lut, tmp_path, capsys):
    supernet, lut = supernet_and_lut
    output = tmp_path / "run"
    code = main(["search", "--supernet", str(supernet), "--lut", str(lut), "--output", str(output),
                 "--target-params", "1", "--eval-images", "10", "--calib-images", "8", "--max-steps", "1",
                 "--threads", "1"])
    assert code == 1
    summary = json.loads((output / "summary.json").read_text())
    assert not summary["targets_met"] and summary["steps"] == 1 and summary["stop_reason"].startswith("max_steps")
    assert "-> NOT met" in capsys.readouterr().out


def test_search_job_rejects_a_lut_of_another_resolution(supernet_and_lut, tmp_path):
    supernet, _ = supernet_and_lut
    other = build_lut(MICRO_SPACE, "torch-fused", img_size=96, path=tmp_path / "lut96.json", warmup=1, repeats=1,
                      entries=[], progress=False)
    with pytest.raises(ValueError, match="img_size"):
        run_search(SearchJob(output=str(tmp_path / "run"), supernet=str(supernet), lut=str(other.path)))


@pytest.mark.slow
def test_default_run_end_to_end_small(tmp_path):
    """The no-argument pipeline (supernet training on digits + LUT + search), shortened: 1 epoch, few images."""
    job = SearchJob(output=str(tmp_path / "run"), supernet_epochs=1, eval_images=60, calib_images=32,
                    relative_latency=0.8, relative_params=0.8, lut_warmup=1, lut_repeats=3)
    summary = run_search(job)
    assert summary["targets_met"], summary["stop_reason"]
    assert (tmp_path / "run" / "supernet" / "supernet.safetensors").is_file()
    assert create_model(summary["found"]).config.num_classes == 10
    assert summary["rows"][2]["name"] == "test (reference)"
    again = run_search(job)  # resumes every stage: no training, no measurement, no evaluation
    assert again["evaluations_this_run"] == 0 and again["found"] == summary["found"]


def _colour_folder(root: Path, classes=("blue", "green", "red"), per_class: int = 8) -> Path:
    generator = np.random.default_rng(0)
    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for item in range(per_class):
            pixels = np.full((24, 24, 3), 60 * index + 40, dtype=np.int64) + generator.integers(-20, 21, (24, 24, 3))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / name / f"{item}.png")
    return root


def test_search_on_an_image_folder(tmp_path):
    space = MICRO_SPACE.replace_base(num_classes=3)
    supernet = save_supernet(Supernet(space), tmp_path / "sn3.safetensors")
    lut = build_lut(space, "torch-fused", path=tmp_path / "lut3.json", warmup=1, repeats=1, progress=False)
    folder = _colour_folder(tmp_path / "colours")
    summary = run_search(SearchJob(output=str(tmp_path / "run"), supernet=str(supernet), lut=str(lut.path),
                                   data=str(folder), relative_latency=0.9, relative_params=0.9, eval_images=6,
                                   calib_images=8, max_steps=2))
    assert create_model(summary["found"]).config.num_classes == 3
    assert all(0.0 <= row["accuracy"] <= 100.0 for row in summary["rows"] if row["accuracy"] is not None)
    with pytest.raises(ValueError, match="classes"):
        run_search(SearchJob(output=str(tmp_path / "run2"), supernet=str(supernet), lut=str(lut.path)))


def test_target_model_sets_the_budget_measured_in_the_same_run(tmp_path, capsys):
    # A real (tiny) table: the target's latency is measured on the table's runtime and clock, so the
    # entries must be real timings too.
    supernet = save_supernet(Supernet(MICRO_SPACE), tmp_path / "sn.safetensors")
    lut = build_lut(MICRO_SPACE, "torch-fused", path=tmp_path / "lut.json", warmup=1, repeats=3, progress=False,
                    threads=1, clock="cpu")
    middle = MICRO_SPACE.max_config().replace(name="middle")
    middle = MICRO_SPACE.make_config([s if i < 3 else dataclasses.replace(s, width=24)
                                      for i, s in enumerate(middle.stages)], name="middle")
    target_file = tmp_path / "middle.json"
    target_file.write_text(middle.to_json())
    output = tmp_path / "run"
    code = main(["search", "--supernet", str(supernet), "--lut", str(lut.path), "--output", str(output),
                 "--target", str(target_file), "--eval-images", "10", "--calib-images", "8", "--threads", "1"])
    summary = json.loads((output / "summary.json").read_text())
    target = summary["target"]
    assert target["model"] == "middle" and target["params"] == ParamCounter()(middle)
    assert summary["targets"] == {"latency_ms": target["measured_latency_ms"], "params": target["params"]}
    assert target["found_measured_ms"] > 0 and target["target_measured_ms"] > 0
    assert code == (0 if summary["targets_met"] else 1)  # the exit code follows the (predicted) targets
    found = next(row for row in summary["rows"] if row["name"] == "found")
    assert found["params"] <= target["params"] and found["measured_ms"] == target["found_measured_ms"]
    assert any(row["name"] == "middle (target)" for row in summary["rows"])
    printed = capsys.readouterr().out
    assert "measured on torch-fused: found" in printed and "middle" in printed and "MES (measured)" in printed
    with pytest.raises(ValueError, match="--target 'resnet50' cannot be built"):
        run_search(SearchJob(output=str(tmp_path / "bad"), supernet=str(supernet), lut=str(lut.path),
                             target="resnet50"))


def test_accuracy_at_the_supernet_resolution_latency_and_params_at_the_deployed_one(supernet_and_lut, tmp_path):
    """A supernet at 64 px searched for 96 px: the table, the parameters (attention biases grow with the grid)
    and the found JSON are at 96, the accuracies come from the 64 px supernet; a 64 px table is refused."""
    supernet, lut64 = supernet_and_lut
    deploy = MICRO_SPACE.replace_base(img_size=(96, 96))
    clock = SyntheticClock(warmup=1)
    lut96 = build_lut(deploy, "torch-fused", path=tmp_path / "lut96.json", warmup=1, repeats=3, progress=False,
                      runner=clock.runner, timer=clock)
    summary = run_search(SearchJob(output=str(tmp_path / "run"), supernet=str(supernet), lut=str(lut96.path),
                                   img_size=96, relative_latency=0.9, relative_params=0.9, eval_images=10,
                                   calib_images=8, max_steps=2, calibrate=0))
    found = create_model(summary["found"]).config
    assert found.img_size == (96, 96)
    row = next(r for r in summary["rows"] if r["name"] == "found")
    assert row["params"] == ParamCounter()(found) != ParamCounter()(found.replace(img_size=(64, 64)))
    assert row["latency_ms"] == pytest.approx(lut96.predict(found))
    with pytest.raises(ValueError, match="img_size"):
        run_search(SearchJob(output=str(tmp_path / "run64"), supernet=str(supernet), lut=str(lut64), img_size=96))


def test_the_final_comparison_is_one_session_and_mobilenetv2_as_target_is_measured_once(supernet_and_lut, tmp_path,
                                                                                         monkeypatch):
    from efficientformer.bench.mes import PAPER_MES, mobile_efficiency_score
    from efficientformer.search import run

    supernet, lut = supernet_and_lut
    sessions, plotted = [], []
    plot = run.plot_pareto
    monkeypatch.setattr(run, "plot_pareto", lambda *a, references=(), **k: plotted.extend(references) or plot(
        *a, references=references, **k))

    def recording(table, modules, **kwargs):
        sessions.append(sorted(modules))
        return measure(table, modules, **kwargs)

    measure = run.measure_modules
    monkeypatch.setattr(run, "measure_modules", recording)
    summary = run_search(SearchJob(output=str(tmp_path / "run"), supernet=str(supernet), lut=str(lut),
                                   target="mobilenetv2_100", eval_images=10, calib_images=8, max_steps=1))
    reference = reference_config(MICRO_SPACE).name
    # The budget alone, then everything that is compared in one interleaved session; MobileNetV2 once.
    assert sessions == [["mobilenetv2_100"], sorted(["found", reference, "MobileNetV2 x1.0 (measured)"])]
    assert [r.name for r in plotted if "obile" in r.name] == ["mobilenetv2_100 (target)"]  # one line, not two
    rows = {row["name"]: row for row in summary["rows"]}
    mobilenet, target = rows["MobileNetV2 x1.0 (measured)"], rows["mobilenetv2_100 (target)"]
    assert mobilenet["measured_ms"] == target["measured_ms"] == summary["target"]["target_measured_ms"]
    assert mobilenet["latency_ms"] is None and mobilenet["mes"] is None  # not a point of the space: no prediction
    assert rows["largest (start)"]["measured_ms"] is None and rows["largest (start)"]["measured_mes"] is None
    for name in ("found", reference, "MobileNetV2 x1.0 (measured)"):  # MES of each latency, never mixed
        row = rows[name]
        assert row["measured_mes"] == pytest.approx(mobile_efficiency_score(row["params"], row["measured_ms"],
                                                                            PAPER_MES))
        if row["latency_ms"] is not None:
            assert row["mes"] == pytest.approx(mobile_efficiency_score(row["params"], row["latency_ms"], PAPER_MES))
            assert row["mes"] != row["measured_mes"]
