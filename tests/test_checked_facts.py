"""Every checked output, in every lesson and exercise, states a fact that holds, in words.

A `# NBVAL_CHECK_OUTPUT` cell's committed output is what nbval compares. Each of its lines that ends in a truth
value must say what holds ("the frozen body is unchanged after training: True"), never print a bare True or False,
and never record a check that failed (a committed ": False" would make nbval *require* the failure).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) + sorted(
    (ROOT / "notebooks" / "exercises" / "source").glob("*.ipynb")
)
TRUTH = re.compile(r"(True|False)\s*$")


def checked_lines(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "# NBVAL_CHECK_OUTPUT" in c.source]
    return [line for c in cells for o in c.outputs for line in o.get("text", "").splitlines()]


def problems(lines: list[str]) -> list[str]:
    """Checked lines that do not state a fact in words, or that record a failed check."""
    found = []
    for line in lines:
        match = TRUTH.search(line)
        if not match:
            continue
        label = line[: match.start()].rstrip().rstrip(":").strip()
        if match.group(1) == "False":
            found.append(f"a check that does not hold: {line!r}")
        elif len(label.split()) < 2:
            found.append(f"a truth value without a statement of what holds: {line!r}")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_checked_line_states_a_fact_that_holds(path):
    assert problems(checked_lines(path)) == []


def test_lessons_check_something():
    assert all(checked_lines(p) for p in NOTEBOOKS if p.parent.name == "notebooks")


def test_the_guard_catches_what_it_guards_against():
    assert problems(["the frozen body is unchanged after training: True", "shape: (3, 64, 64)"]) == []
    assert len(problems(["True", "ok: True", "heads equal within 1e-3: False"])) == 3
