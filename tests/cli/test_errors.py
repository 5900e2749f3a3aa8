"""User errors are one red line with exit code 2; anything else is a bug: its traceback, a line saying so, exit 1."""

from __future__ import annotations

import importlib
import pickle
import sys

import pytest

import efficientformer.cli.list_models
from efficientformer import create_model, errors, load_model
from efficientformer.cli import EXIT_BUG, EXIT_USER_ERROR, main
from efficientformer.data import embedded
from efficientformer.models.config import ModelConfig
from efficientformer.models.spec import spec_from_json


def one_error_line(err: str) -> str:
    """The 'error:' line that ends a user error's stderr (rich may wrap it: joined back); no traceback."""
    assert "Traceback" not in err and "bug" not in err and err.count("error:") == 1, err
    tail = err[err.index("error:"):]
    return tail.replace("\n", "")


def test_a_missing_optional_package_deep_in_training_is_one_line(tmp_path, monkeypatch, capsys):
    """The issue's case: `efficientformer train` without scikit-learn (the embedded dataset needs it)."""
    monkeypatch.setitem(sys.modules, "sklearn", None)  # as if not installed: the import fails
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    embedded._digits.cache_clear()
    assert main(["train", "--output", str(tmp_path / "run"), "--epochs", "1", "--model", "efficientformerv2_test",
                 "--device", "cpu"]) == EXIT_USER_ERROR
    text = one_error_line(capsys.readouterr().err)
    assert "needs scikit-learn" in text and "pip install 'efficientformer[demo]'" in text


def test_a_missing_runtime_found_by_require_is_one_line(tmp_path, monkeypatch, capsys):
    real_import = importlib.import_module

    def without_onnx(name, package=None):
        if name == "onnx" or name.startswith("onnx."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", without_onnx)
    assert main(["export", "--model", "efficientformerv2_test", "--format", "onnx",
                 "--output", str(tmp_path / "m.onnx")]) == EXIT_USER_ERROR
    text = one_error_line(capsys.readouterr().err)
    assert "onnx is not installed" in text and "pip install 'efficientformer[onnx]'" in text
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("argv,needle", [
    (["info", "efficientformerv2_xxl"], "unknown model 'efficientformerv2_xxl'; known models: "),  # no quotes around
    (["info", "s0", "--img-size", "100"], "img_size height 100 is not supported"),
    (["predict", "--weights", "/no/such/weights.safetensors"], "/no/such/weights.safetensors"),
    (["train", "--data", "/no/such/folder", "--epochs", "1"], "image folder or list file /no/such/folder does not"),
    (["train", "--set", "epochs=abc"], "TrainRecipe.epochs must be int, got 'abc'"),
    (["train", "--set", "betas=0.9"], "TrainRecipe.betas must be tuple[float, float], got 0.9"),
])
def test_user_errors_raised_deep_in_the_library_are_one_line(argv, needle, tmp_path, capsys):
    assert main([*argv, "--output", str(tmp_path / "run")] if argv[0] == "train" else argv) == EXIT_USER_ERROR
    assert needle in one_error_line(capsys.readouterr().err)


def test_an_unexpected_exception_is_a_bug_with_its_traceback(monkeypatch, capsys):
    def broken(args):
        return 1 / 0

    monkeypatch.setattr(efficientformer.cli.list_models, "run", broken)
    assert main(["list"]) == EXIT_BUG
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError: division by zero" in err
    assert "in broken" in err  # the frame where it happened
    assert "bug in efficientformer" in err.replace("\n", " ") and "report it" in err
    with pytest.raises(ZeroDivisionError):  # --debug lets it through, as it does a user error
        main(["--debug", "list"])


def test_a_builtin_error_is_a_bug_even_of_a_type_that_used_to_be_a_user_error(monkeypatch, capsys):
    def broken(args):
        raise KeyError("stages.9")

    monkeypatch.setattr(efficientformer.cli.list_models, "run", broken)
    assert main(["list"]) == EXIT_BUG
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'stages.9'" in err


def test_library_callers_keep_catching_the_builtins():
    with pytest.raises(ValueError, match="drop_path_rate must be in"):
        create_model("efficientformerv2_test", drop_path_rate=1.5)
    try:
        create_model("efficientformerv2_nope")
    except KeyError as error:  # an unknown name is a KeyError, as it was, and a ValueError and a UserError
        assert isinstance(error, ValueError) and isinstance(error, errors.UserError)
    else:
        pytest.fail("no error for an unknown model")
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_model("/tmp/nope.safetensors")
    for parse in (ModelConfig.from_json, spec_from_json):
        with pytest.raises(errors.ConfigError, match="not valid JSON"):
            parse("{not json")


def test_every_error_type_is_a_user_error_that_survives_pickling():
    """Exceptions cross process boundaries (data loader workers, subprocesses) as pickles of (type, args)."""
    for name in errors.__all__:
        kind = getattr(errors, name)
        assert issubclass(kind, errors.UserError), name
        error = kind(f"{name}: bad value 'x'")
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is kind and str(again) == str(error) == f"{name}: bad value 'x'"
    assert issubclass(errors.CheckpointError, ValueError) and issubclass(errors.MissingDependencyError, ImportError)
    assert issubclass(errors.MissingFileError, FileNotFoundError) and issubclass(errors.WriteError, OSError)
