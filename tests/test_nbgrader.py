"""Real nbgrader (PyPI `nbgrader`) takes the course's exercises as they are.

A temporary nbgrader course holds copies of the source notebooks (`source/<exercise>/<exercise>.ipynb`), with no
configuration beyond the course id and a cell timeout: nbgrader's default solution stub
(`# YOUR CODE HERE` / `raise NotImplementedError()`) is the course's own, so no replacement text needs
normalising. `nbgrader generate_assignment` must write the same cells as `course release` (every cell's type and
source), and `nbgrader autograde` must give a solution submitted as a student every point of every graded cell
(read from nbgrader's gradebook through its API), and an untouched student copy none. Slow: nbgrader runs every
exercise notebook in a kernel of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils.tools import exercises
from course_utils.tools.exercises import BEGIN_SOLUTION, END_SOLUTION, graded_cells, source_paths, student_copy

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
SOURCES = source_paths()
IDS = [p.stem for p in SOURCES]
STUDENT, BLANK = "solution-student", "blank-student"
BLANK_EXERCISE = "ex3_unfreeze_discriminative"  # one untouched copy is enough to show that a score is earned


def nbgrader(args: list[str], course: Path) -> subprocess.CompletedProcess:
    """Run nbgrader's own command line in the course folder, against the checkout's data (quick profile)."""
    env = {**os.environ, "COURSE_ROOT": str(ROOT), "COURSE_PROFILE": "quick", "OMP_NUM_THREADS": "1"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # nbgrader runs `alembic`
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """An nbgrader course with every exercise as an assignment, generated (release copies written)."""
    course = tmp_path_factory.mktemp("nbgrader") / "course"
    for path in SOURCES:
        (course / "source" / path.stem).mkdir(parents=True)
        shutil.copy2(path, course / "source" / path.stem / path.name)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        "c.CourseDirectory.course_id = 'transfer-course'\n"
        "c.Execute.timeout = 600  # seconds per cell (nbgrader's default, 30, is too short for a busy laptop)\n",
        encoding="utf-8",
    )
    for path in SOURCES:
        nbgrader(["generate_assignment", path.stem, "--create"], course)
    return course


def _cells(nb) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in nb.cells]


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_nbgraders_student_copy_is_course_releases(course, path):
    released = nbformat.read(course / "release" / path.stem / path.name, as_version=4)
    ours = student_copy(nbformat.read(path, as_version=4), str(path))
    assert _cells(released) == _cells(ours)
    committed = nbformat.read(exercises.student_path(path), as_version=4)
    assert _cells(committed) == _cells(ours)
    graded = {cell.grade_id: cell.points for cell in graded_cells(nbformat.read(path, as_version=4))}
    meta = [cell.metadata.get("nbgrader", {}) for cell in released.cells]
    assert {m["grade_id"]: m["points"] for m in meta if m.get("grade")} == graded


def _as_typed_by_a_student(path: Path, released) -> nbformat.NotebookNode:
    """nbgrader's release copy with each answer cell's stub replaced by the source's solution (markers dropped)."""
    source = nbformat.read(path, as_version=4)
    nb = nbformat.from_dict(released)
    answers = {
        c.metadata["nbgrader"]["grade_id"]: c for c in source.cells if c.metadata.get("nbgrader", {}).get("solution")
    }
    assert answers, path.name
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            lines = answers[meta["grade_id"]].source.split("\n")
            cell.source = "\n".join(line for line in lines if line.strip() not in (BEGIN_SOLUTION, END_SOLUTION))
    return nb


@pytest.fixture(scope="module")
def gradebook(course) -> dict:
    """Every exercise's solution (and one untouched copy) submitted and autograded: scores by student, exercise."""
    from nbgrader.api import Gradebook

    for path in SOURCES:
        released = nbformat.read(course / "release" / path.stem / path.name, as_version=4)
        submissions = {STUDENT: _as_typed_by_a_student(path, released)}
        if path.stem == BLANK_EXERCISE:
            submissions[BLANK] = released
        for student, nb in submissions.items():
            folder = course / "submitted" / student / path.stem
            folder.mkdir(parents=True)
            nbformat.write(nb, folder / path.name)
        nbgrader(["autograde", path.stem, "--create"], course)
    scores = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for path in SOURCES:
            for student in (STUDENT, BLANK) if path.stem == BLANK_EXERCISE else (STUDENT,):
                submission = gb.find_submission(path.stem, student)
                cells = {g.name: (g.score, g.max_score) for nb in submission.notebooks for g in nb.grades}
                scores[student, path.stem] = (submission.score, submission.max_score, cells)
    return scores


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_nbgrader_autograde_gives_the_solution_full_marks(gradebook, path):
    score, max_score, cells = gradebook[STUDENT, path.stem]
    graded = {cell.grade_id: cell.points for cell in graded_cells(nbformat.read(path, as_version=4))}
    assert max_score == sum(graded.values())
    assert cells == {grade_id: (points, points) for grade_id, points in graded.items()}
    assert score == max_score


def test_nbgrader_autograde_gives_an_untouched_student_copy_nothing(gradebook):
    score, max_score, cells = gradebook[BLANK, BLANK_EXERCISE]
    assert max_score > 0 and score == 0
    assert all(got == 0 for got, _ in cells.values()) and len(cells) >= 3
