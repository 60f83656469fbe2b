"""Every exercise graded end to end as an instructor does it: `course grade` in the sandbox, points from the judge.

For each exercise a class of three: the solution (the source notebook handed in as it is), the untouched student
copy, and the untouched copy with a first cell that makes its kernel report every cell as successful (the attack
that gave an empty copy of any exercise full marks while the kernel's reply decided the points). The solution
earns every point, both copies none, and every row says the judge decided it. This is
the path the judge modules' own tests (which run notebooks without a sandbox) do not cover: the export plan
run by the sandboxed runner, the exports' size and time inside the limits, the report.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from helpers import ALWAYS_OK, ROOT, course

from course_utils import judge
from course_utils.tools import sandbox
from course_utils.tools.exercises import graded_cells

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

EXERCISES = sorted(judge.MODULES)
needs_bwrap = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and sandbox.find_bwrap()),
    reason="bubblewrap is not installed (CI installs it: .ci/run)",
)


@needs_bwrap
@pytest.mark.parametrize("exercise", EXERCISES)
def test_the_solution_earns_every_point_and_the_student_copy_none(exercise, tmp_path):
    source = ROOT / "notebooks" / "exercises" / "source" / f"{exercise}.ipynb"
    copy = source.parents[1] / source.name
    for student, notebook in (("solution", source), ("untouched", copy)):
        (tmp_path / "class" / student).mkdir(parents=True)
        shutil.copyfile(notebook, tmp_path / "class" / student / f"{exercise}.ipynb")
    always_ok = nbformat.read(copy, as_version=4)
    always_ok.cells.insert(0, nbformat.v4.new_code_cell(ALWAYS_OK.strip()))
    (tmp_path / "class" / "always_ok").mkdir()
    nbformat.write(always_ok, tmp_path / "class" / "always_ok" / f"{exercise}.ipynb")
    report = tmp_path / "report"
    done = course(
        "grade", str(tmp_path / "class"), "--exercise", exercise, "--jobs", "2", "-o", str(report), timeout=1200
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"points: decided by the judge (course_utils/judge/{judge.MODULES[exercise]}.py)" in done.stdout

    rows = list(csv.DictReader(Path(f"{report}.csv").read_text(encoding="utf-8").splitlines()))
    possible = sum(cell.points for cell in graded_cells(nbformat.read(source, as_version=4)))
    totals = {row["student"]: float(row["points"]) for row in rows if row["test"] == "TOTAL"}
    assert totals == {"solution": possible, "untouched": 0, "always_ok": 0}, [r for r in rows if r["status"] != "pass"]
    tasks = [row for row in rows if row["test"] != "TOTAL"]
    assert {row["test"] for row in tasks} == set(judge.tasks(exercise))
    assert all(row["status"] == "pass" for row in tasks if row["student"] == "solution")
    empty = [row for row in tasks if row["student"] != "solution"]
    assert all(row["status"] == "fail" and row["message"] for row in empty), empty
    # the forged replies fooled the self-checks, which are a hint now; the changed kernel is flagged for review
    status = {row["student"]: row["status"] for row in rows if row["test"] == "TOTAL"}
    assert status["always_ok"] == "review" and status["untouched"] == "total", status
    # What the judge says to the solution and the untouched copy (the judge modules' tests run only wrong solutions)
    said = {(row["student"], row["test"]): row["message"] for row in tasks}
    untouched = [message for (student, _), message in said.items() if student == "untouched"]
    assert all("NotImplementedError" in message for message in untouched), untouched
    if exercise == "ex1_freeze_and_head":  # its exports run after the cells: they say that nothing came out, and why
        assert all(message.startswith("nothing was exported") for message in untouched), untouched
    else:
        assert all("Where to look:" in message for message in untouched), untouched
    if exercise in ("ex2_feature_cache", "ex3_unfreeze_discriminative"):
        assert all(message.startswith("ok") for (student, _), message in said.items() if student == "solution")
    if exercise == "ex4_finetune_vs_random":  # the measured gap is reported, not graded
        assert "gap" in said["solution", "ex4_pretrained_vs_random"], said
