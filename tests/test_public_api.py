"""The public surface: what each package exports is pinned here, so an accidental export or removal fails.

A package's `__init__` exports what a user calls; modules keep their internals out of `__all__`.
Changing a package's surface on purpose means changing its entry below (and the docs that show it).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from pathlib import Path

import pytest

import efficientformer

ROOT = Path(__file__).resolve().parents[1]

PUBLIC = {
    "efficientformer": [
        "CheckpointError", "DataConfig", "EfficientFormerV2", "LoadReport", "ModelConfig", "StageConfig", "UserError",
        "convert_checkpoint", "create_model", "data_config", "fuse", "infer_config", "list_models", "load_checkpoint",
        "load_model", "save_checkpoint",
    ],
    "efficientformer.errors": [
        "BadFileError", "CheckpointError", "ConfigError", "DownloadError", "ImageError", "MissingDependencyError",
        "MissingFileError", "UnavailableError", "UnknownNameError", "UserError", "WriteError",
    ],
    "efficientformer.utils": [
        "atomic_write", "machine_line", "progress_bar", "pyplot", "require", "save_png", "threads", "to_pair",
        "write_csv", "write_json",
    ],
    "efficientformer.layers": [
        "ConvNorm", "ConvNormAct", "DropPath", "LayerScale2d", "RelPosBias", "SyncBatchNorm2d", "TalkingHead",
        "convert_sync_batchnorm", "fold_bn_into_conv", "relative_position_index",
    ],
    "efficientformer.models": [
        "APPROXIMATIONS", "EfficientFormerV2", "MOBILENETV2_CONFIGS", "MobileNetV2", "MobileNetV2Config",
        "ModelConfig", "ModelSpec", "ModelSummary", "Segmenter", "SegmenterConfig", "StageConfig", "build_network",
        "create_mobilenetv2", "fuse", "get_config", "list_models", "model_summary", "register",
    ],
    "efficientformer.weights": [
        "Checkpoint", "CheckpointError", "CheckpointMeta", "DEFAULT", "DataConfig", "DownloadError", "LAYOUTS",
        "LayoutError", "LoadReport", "WEIGHTS", "Weights", "cache_dir", "default_weights", "detect_layout",
        "fetch_weights", "get_weights", "list_weights", "load_checkpoint", "official_to_ours", "ours_to_official",
        "read_checkpoint", "read_metadata", "resolve_weights", "save_checkpoint", "write_state_dict",
    ],
    "efficientformer.data": [
        "AugmentedDataset", "BAD_IMAGE_REASONS", "BadFile", "DigitsDataset", "EpochSampler", "EvalTransform",
        "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_EXTENSIONS", "ImageError", "ImageFolder", "MaskFolder", "Mixup",
        "RandAugment", "RandAugmentConfig", "RandomErasing", "RunData", "SkippedSample", "TrainTransform",
        "VerifyReport", "collate_skip_none", "eval_dataset", "eval_transform", "imagenet_class_names", "load_image",
        "parse_rand_augment", "run_datasets", "sample_image_path", "verify_images",
    ],
    "efficientformer.train": [
        "ClassificationTask", "CosineSchedule", "DistillationLoss", "ModelEma", "NonFiniteLossError", "RECIPES",
        "SegmentJob", "SoftTargetCrossEntropy", "StepInfo", "TaskOutput", "TrainJob", "TrainRecipe", "TrainTask",
        "adaptive_clip_grad_", "create_optimizer", "get_recipe", "load_teacher", "param_groups", "run_eval",
        "run_segment_eval", "run_segment_predict", "run_segment_training", "run_training",
    ],
    "efficientformer.export": [
        "APPROXIMATE_ATOL", "CalibrationWarning", "CoreMLExport", "DEFAULT_CALIB_COUNT", "DEFAULT_OPSET",
        "ExecutorchExport", "ExportFormat", "ExportResult", "FORMATS", "Int8Export", "Int8Report", "OnnxExport",
        "OpenVinoExport", "ParityError", "ParityReport", "ParityUnavailable", "TfliteExport", "calibration_images",
        "check_coreml_parity", "check_executorch_parity", "check_onnx_parity", "check_openvino_parity", "check_parity",
        "check_tflite_parity", "export_coreml", "export_executorch", "export_model", "export_onnx", "export_openvino",
        "export_tflite", "parity_images", "quantize_executorch", "quantize_onnx",
    ],
    "efficientformer.bench": [
        "BenchConfig", "BenchResult", "BenchRow", "MESConstants", "PAPER_MES", "Timing", "mobile_efficiency_score",
        "run_bench", "time_interleaved",
    ],
    "efficientformer.search": [
        "DEFAULT_SPACE", "LatencyTable", "ParamCounter", "SPACES", "SandwichTask", "SearchJob", "SearchSpace",
        "SlimResult", "StageSpace", "Supernet", "TINY_SPACE", "build_lut", "decompose", "get_space",
        "load_subnet_weights", "load_supernet", "recalibrate_bn", "run_search", "save_supernet", "signature", "slim",
        "train_supernet",
    ],
    "efficientformer.compare": [
        "CompareConfig", "CompareResult", "CompareRow", "DEFAULT_MODELS", "markdown_table", "pareto_front",
        "run_compare", "write_report",
    ],
    "efficientformer.cli": ["COMMANDS", "EXIT_BUG", "EXIT_INTERRUPTED", "EXIT_USER_ERROR", "build_parser", "main"],
    "efficientformer.predict": ["Prediction", "class_names", "load_images", "predict", "prepare_model"],
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_each_package_exports_exactly_its_pinned_names(package):
    module = importlib.import_module(package)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), f"{package}.__all__ repeats a name"
    added, removed = sorted(set(exported) - set(PUBLIC[package])), sorted(set(PUBLIC[package]) - set(exported))
    assert not added and not removed, f"{package}: exported but not pinned {added}; pinned but not exported {removed}"
    missing = [name for name in exported if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it does not define: {missing}"


def test_every_module_all_names_only_what_it_has():
    """No stale entry in any module's `__all__` (a renamed function left behind)."""
    stale = {}
    for info in pkgutil.walk_packages(efficientformer.__path__, "efficientformer."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        names = getattr(module, "__all__", ())
        if [name for name in names if not hasattr(module, name)]:
            stale[info.name] = [name for name in names if not hasattr(module, name)]
    assert not stale, stale


def _documented_imports() -> list[tuple[str, str, list[str]]]:
    """(file, module, names) of every `from efficientformer... import a, b` in the README and docs/."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"^\s*from (efficientformer[\w.]*) import ([\w, ]+(?:\([\w,\s]+\))?)", text, re.M):
            names = [name.split(" as ")[0].strip() for name in match.group(2).strip("() ").split(",")]
            found.append((path.name, match.group(1), [name for name in names if name]))
    return found


def test_what_the_readme_and_docs_import_is_importable():
    documented = _documented_imports()
    assert documented, "the README shows no imports any more: this test no longer checks anything"
    broken = []
    for file, module_name, names in documented:
        module = importlib.import_module(module_name)
        broken += [f"{file}: from {module_name} import {name}" for name in names
                   if not hasattr(module, name) and importlib.util.find_spec(f"{module_name}.{name}") is None]
    assert not broken, broken


def test_what_the_readme_calls_on_the_package_exists():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    called = set(re.findall(r"\befficientformer\.([a-z_][a-z_0-9]*)\(", text))
    assert called, "the README calls nothing on `efficientformer.` any more: this test no longer checks anything"
    assert not sorted(name for name in called if name not in efficientformer.__all__)
