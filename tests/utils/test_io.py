"""The file helpers of utils: JSON and CSV through atomic writes, and optional imports naming their extra."""

from __future__ import annotations

import csv
import errno
import json
import os
import tempfile
from pathlib import Path

import pytest

from efficientformer.errors import MissingDependencyError, MissingFileError, WriteError
from efficientformer.utils import atomic_write, require, write_csv, write_json


def test_write_json_is_indented_with_a_final_newline_and_converts_with_default(tmp_path):
    path = write_json(tmp_path / "a.json", {"b": [1, 2], "path": Path("x/y")}, default=str)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and '\n  "b": [' in text
    assert json.loads(text) == {"b": [1, 2], "path": "x/y"}
    with pytest.raises(TypeError):  # without `default`, what JSON cannot hold is an error, and nothing is written
        write_json(tmp_path / "b.json", {"path": Path("x")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_write_csv_takes_the_union_of_the_keys_in_order(tmp_path):
    path = write_csv([{"epoch": 1, "top1": 5.0}, {"epoch": 2, "ema_top1": 6.0}], tmp_path / "m.csv")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows == [["epoch", "top1", "ema_top1"], ["1", "5.0", ""], ["2", "", "6.0"]]


def test_require_names_the_extra():
    assert require("json", "none") is json
    with pytest.raises(MissingDependencyError, match=r"no_such_module_xyz is not installed .*efficientformer\[onnx\]"):
        require("no_such_module_xyz", "onnx")
    with pytest.raises(ImportError):  # a program's own `except ImportError` still catches it
        require("no_such_module_xyz", "onnx")


def test_a_full_disk_is_a_write_error_naming_the_file_and_other_errors_pass_through(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(WriteError, match=f"cannot write {target}: No space left on device"):
        with atomic_write(target):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(OSError) as caught, atomic_write(target):  # not a write problem: left as it was
        raise ConnectionResetError(errno.ECONNRESET, "reset by peer")
    assert type(caught.value) is ConnectionResetError
    with pytest.raises(MissingFileError, match="directory .*nowhere does not exist"):
        write_json(tmp_path / "nowhere" / "a.json", {})
    assert list(tmp_path.iterdir()) == []  # no temporary file is left behind


def test_an_unwritable_directory_is_a_write_error(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(WriteError, match=f"cannot write {tmp_path / 'a.csv'}: Permission denied"):
        write_csv([{"a": 1}], tmp_path / "a.csv")
