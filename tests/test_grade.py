"""The grader on a folder of submissions built here from exercise 1: scores, reasons, and submissions left untouched."""

from __future__ import annotations

import csv
import hashlib
import json

import nbformat
import pytest

from course_utils.tools import grade
from course_utils.tools.exercises import graded_cells, source_path, strip_hidden, student_path

EXERCISE = "ex1_freeze_and_head"
SOURCE = source_path(EXERCISE)
TESTS = graded_cells(nbformat.read(SOURCE, as_version=4))
POINTS = {t.grade_id: t.points for t in TESTS}
WRONG_OPTIMIZER = """
def head_optimizer(model, lr=0.01):
    return torch.optim.Adam(model.parameters(), lr=lr)  # every parameter, frozen ones too
"""


def _cell(nb, marker: str):
    matches = [cell for cell in nb.cells if cell.cell_type == "code" and marker in cell.source]
    assert len(matches) == 1, marker
    return matches[0]


def _submission(done=(), replace=None, delete=(), edit=None):
    """The student copy with the source's solution for each function in ``done``, and the given changes."""
    source, nb = nbformat.read(SOURCE, as_version=4), nbformat.read(student_path(SOURCE), as_version=4)
    for name in done:
        _cell(nb, f"def {name}(").source = strip_hidden(_cell(source, f"def {name}(").source)
    for name, text in (replace or {}).items():
        _cell(nb, f"def {name}(").source = text.strip()
    nb.cells = [cell for cell in nb.cells if cell.get("metadata", {}).get("grade", {}).get("id") not in delete]
    for grade_id, text in (edit or {}).items():
        _cell(nb, f"Graded test {grade_id} ").source = text
    return nb


def _hard_coded_three_classes() -> str:
    source = _cell(nbformat.read(SOURCE, as_version=4), "def setup_transfer_learning(").source
    return source.replace(", num_classes)", ", 3)")  # passes the visible tests (3 classes), not the hidden ones


def _write(folder, name, nb):
    nbformat.write(nb, folder / name)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade the fixture folder once (with --hidden) through the command line; return rows by student and the files."""
    folder = tmp_path_factory.mktemp("submissions")
    every = ("setup_transfer_learning", "head_optimizer", "train_head")
    _write(folder, "alice.ipynb", _submission(done=every))  # correct
    _write(
        folder,
        "bob.ipynb",
        _submission(  # partly correct: hard-codes 3 classes, wrong optimizer, no training loop
            replace={"setup_transfer_learning": _hard_coded_three_classes(), "head_optimizer": WRONG_OPTIMIZER}
        ),
    )
    (folder / "carol.ipynb").write_text(json.dumps(nbformat.v4.new_notebook())[:-20], encoding="utf-8")  # invalid JSON
    _write(
        folder,
        "dave.ipynb",
        _submission(  # one test cell deleted; a wrong optimizer, and its test edited to pass
            done=every[:1],
            replace={"head_optimizer": WRONG_OPTIMIZER},
            delete={"ex1_body_pretrained"},
            edit={"ex1_optimizer": "print('ok')"},
        ),
    )
    dies = _submission(done=every[:1])
    _cell(dies, "def head_optimizer(").source += "\nimport os\nos._exit(1)  # the kernel dies here"
    (folder / "gina").mkdir()
    _write(folder / "gina", "ex1_freeze_and_head.ipynb", dies)  # student/notebook layout
    wrong = _submission(done=every)
    wrong.metadata["exercise"]["name"] = "ex2_feature_cache"
    _write(folder, "frank.ipynb", wrong)  # wrong exercise
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}
    report = tmp_path_factory.mktemp("report") / "grades"
    status = grade.main([str(folder), "--exercise", EXERCISE, "--hidden", "--timeout", "240", "-o", str(report)])
    assert status == 0
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}
    with open(report.with_suffix(".csv"), newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    by_student = {}
    for row in rows:
        by_student.setdefault(row["student"], {})[row["test"]] = row
    return {
        "rows": rows,
        "by": by_student,
        "before": before,
        "after": after,
        "md": report.with_suffix(".md").read_text(encoding="utf-8"),
    }


def _total(graded, student):
    return float(graded["by"][student]["TOTAL"]["points"])


def test_the_report_has_one_row_per_student_and_test_cell_and_a_total(graded):
    assert sorted(graded["by"]) == ["alice", "bob", "carol", "dave", "frank", "gina"]
    for student, rows in graded["by"].items():
        assert set(rows) == set(POINTS) | {"TOTAL"}, student
        assert _total(graded, student) == sum(float(r["points"]) for t, r in rows.items() if t != "TOTAL")
        assert float(rows["TOTAL"]["points_possible"]) == sum(POINTS.values())
    for student in graded["by"]:
        assert f"| {student} |" in graded["md"]


def test_grading_never_changes_a_submission(graded):
    assert graded["after"] == graded["before"]


def test_a_correct_submission_scores_full_points(graded):
    assert _total(graded, "alice") == sum(POINTS.values())
    assert {r["status"] for t, r in graded["by"]["alice"].items() if t != "TOTAL"} == {"pass"}


def test_hidden_tests_catch_a_solution_that_only_fits_the_visible_tests(graded):
    bob = graded["by"]["bob"]
    assert bob["ex1_head_shape"]["status"] == "fail" and bob["ex1_only_head_trainable"]["status"] == "fail"
    assert bob["ex1_body_pretrained"]["status"] == "pass"
    assert "in the optimizer but frozen" in bob["ex1_optimizer"]["message"]
    assert "Where to look: head_optimizer" in bob["ex1_optimizer"]["message"]
    assert bob["ex1_frozen_stays_frozen"]["message"].startswith("NotImplementedError")
    assert _total(graded, "bob") == POINTS["ex1_body_pretrained"]


def test_invalid_json_is_a_row_with_a_reason(graded):
    carol = graded["by"]["carol"]
    assert {r["status"] for t, r in carol.items() if t != "TOTAL"} == {"invalid-notebook"}
    assert "not valid JSON" in carol["ex1_head_shape"]["message"]
    assert _total(graded, "carol") == 0


def test_a_deleted_test_cell_scores_zero_with_a_reason(graded):
    dave = graded["by"]["dave"]
    assert dave["ex1_body_pretrained"]["status"] == "deleted" and dave["ex1_body_pretrained"]["points"] == "0"
    assert "deleted" in dave["TOTAL"]["note"]


def test_an_edited_test_cell_is_graded_with_the_original(graded):
    dave = graded["by"]["dave"]
    assert dave["ex1_optimizer"]["status"] == "fail"
    assert "edited" in dave["ex1_optimizer"]["note"] and "edited" in dave["TOTAL"]["note"]
    assert "in the optimizer but frozen" in dave["ex1_optimizer"]["message"]
    assert _total(graded, "dave") == POINTS["ex1_head_shape"] + POINTS["ex1_only_head_trainable"]


def test_a_kernel_that_dies_fails_the_rest_and_the_batch_goes_on(graded):
    gina = graded["by"]["gina"]
    assert gina["TOTAL"]["submission"] == "gina/ex1_freeze_and_head.ipynb"
    assert "kernel died" in gina["TOTAL"]["note"]
    assert gina["ex1_optimizer"]["status"] == "fail" and "kernel" in gina["ex1_optimizer"]["message"].lower()
    expected = POINTS["ex1_head_shape"] + POINTS["ex1_only_head_trainable"] + POINTS["ex1_body_pretrained"]
    assert _total(graded, "gina") == expected


def test_a_submission_for_another_exercise_is_not_run(graded):
    frank = graded["by"]["frank"]
    assert {r["status"] for t, r in frank.items() if t != "TOTAL"} == {"wrong-exercise"}
    assert "ex2_feature_cache" in frank["ex1_head_shape"]["message"]


def test_an_endless_loop_is_interrupted_earlier_results_kept_and_the_next_submission_graded(tmp_path):
    folder = tmp_path / "subs"
    folder.mkdir()
    looping = _submission(done=("setup_transfer_learning",))
    _cell(looping, "def head_optimizer(").source += "\nwhile True:\n    pass"
    _write(folder, "a_loop.ipynb", looping)
    (folder / "b_empty.ipynb").write_text("", encoding="utf-8")
    rows = grade.grade_folder(folder, EXERCISE, timeout=120, cell_timeout=8, log=lambda *_: None)
    loop = {r.test: r for r in rows if r.student == "a_loop"}
    task1 = ("ex1_head_shape", "ex1_only_head_trainable", "ex1_body_pretrained")
    assert all(loop[t].status == "pass" for t in task1)
    assert loop["TOTAL"].points == sum(POINTS[t] for t in task1)
    assert "stopped: Timeout of 8 seconds" in loop["TOTAL"].note
    assert {r.status for r in rows if r.student == "b_empty" and r.test != "TOTAL"} == {"invalid-notebook"}


def test_a_run_past_the_time_limit_is_killed_with_its_kernel(tmp_path):
    import psutil

    looping = _submission()
    _cell(looping, "import torch").source += "\nwhile True:\n    pass"
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    result = grade.run_nbval(looping, tmp_path, timeout=8, cell_timeout=600)
    assert result.status == "timeout" and "8 s" in result.detail
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.status() != "zombie"]
    assert left == []
    survivors = []  # pytest and its kernel both run in tmp_path; neither may outlive the limit
    for process in psutil.process_iter():
        try:
            if process.cwd() == str(tmp_path) and process.status() != "zombie":
                survivors.append(process.cmdline())
        except psutil.Error:
            pass
    assert survivors == [], "a process of the killed run is still alive"


def test_prepare_puts_back_the_released_or_the_hidden_tests():
    nb = _submission(edit={"ex1_head_shape": "pass"})
    raw = nbformat.writes(nb).encode()
    for hidden in (False, True):
        prepared = grade.prepare(raw, EXERCISE, TESTS, hidden)
        code = [cell for cell in prepared.nb.cells if cell.cell_type == "code"]
        for test in TESTS:
            cell = code[prepared.code_cell_of[test.grade_id]]
            assert cell.source == (test.full_source if hidden else test.released_source)
        assert "edited" in prepared.notes["ex1_head_shape"]


def test_nothing_to_grade_exits_non_zero(tmp_path, capsys):
    assert grade.main([str(tmp_path), "--exercise", EXERCISE]) == 2
    assert "no .ipynb" in capsys.readouterr().err
    assert grade.main([str(tmp_path / "missing"), "--exercise", EXERCISE]) == 2
    (tmp_path / "x.ipynb").write_text("{}", encoding="utf-8")
    assert grade.main([str(tmp_path), "--exercise", "no_such_exercise"]) == 2
    assert "Known exercises" in capsys.readouterr().err


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"", "not valid JSON"),
        (b'{"cells": [', "not valid JSON"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"{}", "not a notebook Jupyter can open"),
        (b"[]", "not a notebook Jupyter can open"),
    ],
)
def test_a_broken_file_is_an_invalid_notebook_with_the_reason(raw, reason):
    with pytest.raises(grade.SubmissionProblem, match=reason) as caught:
        grade.prepare(raw, EXERCISE, TESTS, hidden=False)
    assert caught.value.status == "invalid-notebook"
