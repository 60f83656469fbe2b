"""Style is checked, not debated: ruff's linter and formatter, configured in pyproject.toml, pass on the whole tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_ruff_lint_passes():
    result = ruff("check", "--no-cache", ".")
    assert result.returncode == 0, "ruff check found problems (`ruff check --fix .` mends most):\n" + result.stdout


def test_ruff_format_is_applied():
    result = ruff("format", "--no-cache", "--check", ".")
    assert result.returncode == 0, "files need `ruff format .`:\n" + result.stdout
