"""House rules inside the test suite, not only in CI: the import contract holds, no source file is over the cap."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "efficientformer"
MAX_LINES = 400  # STYLE.md: no file over ~400 lines


def test_import_contract_holds():
    pytest.importorskip("importlinter", reason="the import contract needs import-linter (pip install -e '.[test]')")
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert command, "import-linter is installed but its lint-imports command is not on PATH"
    result = subprocess.run([command, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout and "layered architecture KEPT" in result.stdout


def test_no_source_file_over_the_line_cap():
    sizes = {path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
             for path in SOURCE.rglob("*.py")}
    assert len(sizes) > 50  # the walk found the package
    too_long = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}
    assert not too_long, f"split these files (at most {MAX_LINES} lines each): {too_long}"
