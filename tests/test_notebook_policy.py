"""Committed notebooks: outputs only in checked cells, a parameters cell first, listed in the README."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from course_utils.tools import notebook_tools

ROOT = Path(__file__).resolve().parents[1]
ALL_NOTEBOOKS = notebook_tools.notebook_paths([ROOT / "notebooks"])
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=ids(ALL_NOTEBOOKS))
def test_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    assert notebook_tools.problems(nb) == [], "run `make clean-notebooks` (or `make refresh-notebooks`)"


@pytest.mark.parametrize("path", LESSONS, ids=ids(LESSONS))
def test_lesson_starts_with_markdown_then_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first_code.metadata.get("tags", []), "the first code cell sets sizes from the profile"
    assert "pick(" in first_code.source or "course_profile" in first_code.source
    assert any(notebook_tools.is_checked(c) for c in nb.cells), "every lesson checks at least one fact"


@pytest.mark.parametrize("path", LESSONS, ids=ids(LESSONS))
def test_lesson_is_in_the_readme_course_map(path):
    readme = (ROOT / "README.md").read_text()
    assert f"notebooks/{path.name}" in readme, "add the lesson to the course map in README.md"


def test_lessons_are_numbered_in_order():
    numbers = [int(p.name[:2]) for p in LESSONS]
    assert numbers == list(range(len(numbers))) and numbers[0] == 0


def test_clean_strips_unchecked_outputs_and_numbers_checked_cells():
    nb = nbformat.v4.new_notebook()
    plain = nbformat.v4.new_code_cell(
        "print(1)", execution_count=4, outputs=[nbformat.v4.new_output("stream", text="1\n")]
    )
    checked = nbformat.v4.new_code_cell(
        "# NBVAL_CHECK_OUTPUT\nprint(2)", execution_count=9, outputs=[nbformat.v4.new_output("stream", text="2\n")]
    )
    nb.cells = [plain, checked]
    nb.metadata["widgets"] = {"state": {}}
    assert notebook_tools.problems(nb)
    assert notebook_tools.clean_notebook(nb) is True
    assert plain.outputs == [] and plain.execution_count is None
    assert checked.outputs[0]["text"] == "2\n" and checked.execution_count == 1
    assert notebook_tools.problems(nb) == [] and "widgets" not in nb.metadata
    assert notebook_tools.clean_notebook(nb) is False
