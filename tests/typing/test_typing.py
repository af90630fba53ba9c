"""The decorator is ParamSpec-preserving: mypy sees the original signature and return type."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def run_mypy(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--python-version",
            "3.11",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            str(path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def test_decorated_functions_keep_their_types():
    result = run_mypy(HERE / "sample_cached.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_cached_methods_keep_their_types():
    result = run_mypy(HERE / "sample_methods.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_wrong_calls_are_type_errors():
    result = run_mypy(HERE / "sample_errors.py")
    expected = {
        i + 1: line.split("# ERR ")[1].strip()
        for i, line in enumerate((HERE / "sample_errors.py").read_text().splitlines())
        if "# ERR " in line
    }
    found = {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r"sample_errors\.py:(\d+): error: .*\[([\w-]+)\]", result.stdout)
    }
    assert found == expected, result.stdout
