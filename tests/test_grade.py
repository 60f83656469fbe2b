"""The grader on a folder of submissions built here from exercise 1: scores, reasons, and submissions left untouched.

Exercise 1 is scored by the judge (``course_utils/judge/ex1.py``) from data exported after the notebook ran; the
notebook's graded cells are the students' self-checks, and what they said is a hint in each row's note.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os

import nbformat
import pytest

from course_utils.tools import grade
from course_utils.tools.exercises import graded_cells, source_path, strip_hidden, student_path

pytestmark = pytest.mark.slow

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


LIAR = """
import torchvision


class HonestLooking(torchvision.models.MobileNetV2):
    \"\"\"Nothing frozen, but it reports only the head: as trainable, as parameters, and no BatchNorm statistics.\"\"\"

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        for name, param in super().named_parameters(prefix, recurse, remove_duplicate):
            if name.startswith("classifier.1."):
                yield name, param

    def parameters(self, recurse=True):
        for _, param in self.named_parameters():
            yield param

    def named_buffers(self, *args, **kwargs):
        return iter(())


def setup_transfer_learning(num_classes, backbone="mobilenet_v2", pretrained=True):
    model = load_backbone(backbone, pretrained=pretrained)
    if backbone == "mobilenet_v2":
        liar = HonestLooking()
        liar.load_state_dict(model.state_dict())
        liar.classifier[-1] = nn.Linear(1280, num_classes)
        return liar
    for param in model.parameters():
        param.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model
"""


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
    _write(folder, "mallory.ipynb", _submission(done=every[1:], replace={"setup_transfer_learning": LIAR}))
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}
    report = tmp_path_factory.mktemp("report") / "grades"
    status = grade.main([str(folder), "--exercise", EXERCISE, "--hidden", "--timeout", "240", "-o", str(report)])
    # (isolation: bubblewrap where it works, else the process guard; tests/test_grade_hostile.py covers both)
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
    assert sorted(graded["by"]) == ["alice", "bob", "carol", "dave", "frank", "gina", "mallory"]
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
    assert graded["by"]["alice"]["TOTAL"]["status"] == "total"  # nothing to review


def test_a_model_that_lies_about_its_parameters_gains_nothing_from_the_lie(graded):
    mallory = graded["by"]["mallory"]
    # the judge reads the parameters past the overridden methods: nothing was frozen, and the optimizer (built
    # from the lying parameters()) misses what is trainable; the self-checks refused the model too (a hint)
    assert mallory["ex1_only_head_trainable"]["status"] == "fail"
    assert "trainable but should be frozen" in mallory["ex1_only_head_trainable"]["message"]
    assert mallory["ex1_optimizer"]["status"] == "fail"
    assert "trainable but not in the optimizer" in mallory["ex1_optimizer"]["message"]
    for test in ("ex1_only_head_trainable", "ex1_optimizer"):
        assert "self-check failed" in mallory[test]["note"] and "HonestLooking" in mallory[test]["note"], test
    # what the data shows is right is scored as right: the shape, the pretrained body, the training loop
    for test in ("ex1_head_shape", "ex1_body_pretrained", "ex1_frozen_stays_frozen"):
        assert mallory[test]["status"] == "pass", test


def test_hidden_test_source_stays_out_of_the_report(graded):
    hidden = {line.strip() for t in TESTS for line in t.full_source.split("\n")} - {
        line.strip() for t in TESTS for line in t.released_source.split("\n")
    }
    report = graded["md"] + "".join(str(r) for r in graded["rows"])
    assert [line for line in hidden if len(line) > 20 and line in report] == []


def test_hidden_tests_catch_a_solution_that_only_fits_the_visible_tests(graded):
    bob = graded["by"]["bob"]
    assert bob["ex1_head_shape"]["status"] == "fail" and bob["ex1_only_head_trainable"]["status"] == "fail"
    assert bob["ex1_body_pretrained"]["status"] == "pass"
    assert "in the optimizer but frozen" in bob["ex1_optimizer"]["message"]
    assert "Where to look: head_optimizer" in bob["ex1_optimizer"]["message"]
    assert bob["ex1_frozen_stays_frozen"]["message"] == "nothing was exported: NotImplementedError"
    assert _total(graded, "bob") == POINTS["ex1_body_pretrained"]


def test_invalid_json_is_a_row_with_a_reason(graded):
    carol = graded["by"]["carol"]
    assert {r["status"] for t, r in carol.items() if t != "TOTAL"} == {"invalid-notebook"}
    assert "not valid JSON" in carol["ex1_head_shape"]["message"]
    assert _total(graded, "carol") == 0


def test_a_deleted_test_cell_is_a_deleted_self_check_and_the_judge_still_scores_the_task(graded):
    dave = graded["by"]["dave"]
    assert dave["ex1_body_pretrained"]["status"] == "pass" and dave["ex1_body_pretrained"]["points"] == "1"
    assert "self-check cell deleted" in dave["ex1_body_pretrained"]["note"]


def test_an_edited_test_cell_is_graded_with_the_original(graded):
    dave = graded["by"]["dave"]
    assert dave["ex1_optimizer"]["status"] == "fail"
    assert "edited" in dave["ex1_optimizer"]["note"] and "edited" in dave["TOTAL"]["note"]
    assert "in the optimizer but frozen" in dave["ex1_optimizer"]["message"]
    assert "self-check failed" in dave["ex1_optimizer"]["note"]  # the instructor's copy of the cell ran
    expected = POINTS["ex1_head_shape"] + POINTS["ex1_only_head_trainable"] + POINTS["ex1_body_pretrained"]
    assert _total(graded, "dave") == expected


def test_a_kernel_that_dies_fails_the_rest_and_the_batch_goes_on(graded):
    gina = graded["by"]["gina"]
    assert gina["TOTAL"]["submission"] == "gina/ex1_freeze_and_head.ipynb"
    assert "kernel died" in gina["TOTAL"]["note"]
    assert gina["ex1_optimizer"]["status"] == "fail" and "kernel" in gina["ex1_optimizer"]["message"].lower()
    # the judge's exports run after the notebook: a kernel that died on the way exports nothing
    assert "self-check passed" in gina["ex1_head_shape"]["note"] and gina["ex1_head_shape"]["points"] == "0"
    assert _total(graded, "gina") == 0


def test_a_submission_for_another_exercise_is_not_run(graded):
    frank = graded["by"]["frank"]
    assert {r["status"] for t, r in frank.items() if t != "TOTAL"} == {"wrong-exercise"}
    assert "ex2_feature_cache" in frank["ex1_head_shape"]["message"]


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


# ------------------------------------------------------------------ collecting and reporting (no runs)
def test_collect_refuses_links_and_special_files_and_names_what_it_skips(tmp_path):
    folder = tmp_path / "subs"
    (folder / "bob").mkdir(parents=True)
    for name in ("ann.ipynb", ".hidden.ipynb", "bob/a.ipynb", "bob/b.ipynb", ".ipynb_checkpoints/ann-checkpoint.ipynb"):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text("{}", encoding="utf-8")
    (folder / "link.ipynb").symlink_to(SOURCE)
    (folder / "dirlink").symlink_to(SOURCE.parent, target_is_directory=True)
    os.mkfifo(folder / "pipe.ipynb")
    (folder / ".DS_Store").write_bytes(b"\0")
    (folder / "readme.md").write_text("hello", encoding="utf-8")
    (folder / "._ann.ipynb").write_bytes(b"\0\5\26\7")
    found = grade.collect(folder)
    assert [(s, p.relative_to(folder).as_posix()) for s, p in found.submissions] == [
        (".hidden", ".hidden.ipynb"),
        ("ann", "ann.ipynb"),
        ("bob", "bob/a.ipynb"),
        ("bob", "bob/b.ipynb"),
    ]
    refused = {label: reason for _, label, reason in found.refused}
    assert set(refused) == {"link.ipynb", "dirlink", "pipe.ipynb"}
    assert "symbolic link" in refused["link.ipynb"] and "not a regular file" in refused["pipe.ipynb"]
    assert {label for label, _ in found.skipped} == {".DS_Store", "readme.md", "._ann.ipynb", ".ipynb_checkpoints/"}


@pytest.mark.parametrize(
    "value, safe",
    [("=1+1", "'=1+1"), ("+1", "'+1"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx")]
    + [("alice", "alice"), ("a=1", "a=1"), ("", "")],
)
def test_a_spreadsheet_formula_is_neutralised(value, safe):
    assert grade.spreadsheet_safe(value) == safe
    rows = grade.refused_rows(value, "x.ipynb", EXERCISE, TESTS, "a reason", "")
    read = list(csv.DictReader(io.StringIO(grade.report_csv(rows), newline="")))
    shown = grade.spreadsheet_safe(grade.plain(value))  # a tab or CR in a name is written as \t or \r first
    assert len(read) == len(rows) and {r["student"] for r in read} == {shown}
    assert not shown.startswith(grade.FORMULA_STARTS)


def test_a_report_without_isolation_says_so_in_its_header_and_on_every_total(tmp_path):
    unisolated = grade.Isolation("none", "NOT ISOLATED: bubblewrap is not installed")
    rows = grade.refused_rows("ann", "ann.ipynb", EXERCISE, TESTS, "a symbolic link", "")
    batch = grade.Batch(rows, unisolated, grade.Limits(), skipped=[(".DS_Store", "skipped: macOS folder metadata")])
    csv_path, md_path = grade.write_report(batch, tmp_path / "grades", EXERCISE, hidden=False)
    markdown = md_path.read_text(encoding="utf-8")
    assert markdown.index("WARNING: the submissions were NOT isolated") < markdown.index("| student |")
    assert "`.DS_Store`: skipped: macOS folder metadata" in markdown
    totals = [r for r in csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))) if r["test"] == "TOTAL"]
    assert totals and all(r["note"].startswith("NOT ISOLATED") for r in totals)


def test_a_hidden_test_line_in_a_message_is_redacted():
    lines = grade.hidden_lines(TESTS)
    assert lines and all(line not in t.released_source for t in TESTS for line in lines)
    leaked = f"RuntimeError: the test reads {lines[0]} and more"
    assert grade.redact(leaked, lines) == "RuntimeError: the test reads [hidden test] and more"


# -------------------------------------------------------------- the guard's verdicts (no kernel needed)
def _verdict(**fields):
    from course_utils.tools import runner

    record = runner.CellRecord(cell=3, graded=fields.pop("graded", True), **fields)
    runner.verdict(record, 8)
    return record


def test_a_cell_passes_only_when_the_kernel_says_ok():
    assert _verdict(status="ok").verdict == "pass"
    hidden = _verdict(status="error", ename="AssertionError", evalue="answer() should return 42", error_shown=False)
    assert hidden.verdict == "review" and hidden.reason == "hidden-error"  # no error was shown
    assert hidden.message == "AssertionError: answer() should return 42"
    shown = _verdict(status="error", ename="NameError", evalue="name 'x' is not defined", error_shown=True)
    assert (shown.verdict, shown.message) == ("fail", "NameError: name 'x' is not defined")
    assert _verdict(status=None, timed_out=True).message.startswith("Timeout of 8")
    assert _verdict(status=None).verdict == "fail"  # no reply at all: never a pass
    assert _verdict(status="ok", tamper=["shell.showtraceback (before it ran)"]).verdict == "review"
    assert _verdict(status="ok", tamper=["x"], graded=False).verdict == "pass"  # only graded cells are judged so


def test_a_changed_fingerprint_is_named():
    from course_utils.tools import kernel_checks

    baseline = {"shell.showtraceback": 1, "module.torch.equal": 2, "sys.excepthook": 3}
    first_seen = {}
    now = dict(baseline, **{"module.torchvision.models.x": 9, "file.course_utils.extra": "/elsewhere/extra.py"})
    moved = "course_utils.extra loaded from /elsewhere/extra.py"
    assert kernel_checks.compare(baseline, now, first_seen, "/course") == [moved]
    now.update({"shell.showtraceback": 4, "shell.InteractiveTB-instance.structured_traceback": 5})
    now["module.torchvision.models.x"] = 10  # changed since it was first seen
    assert kernel_checks.compare(baseline, now, first_seen, "/course") == [
        "course_utils.extra loaded from /elsewhere/extra.py",
        "module.torchvision.models.x",
        "shell.InteractiveTB-instance.structured_traceback",
        "shell.showtraceback",
    ]
