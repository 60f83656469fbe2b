"""Grade a folder of submitted exercise notebooks with nbval and write a CSV and Markdown report.

    course grade SUBMISSIONS_DIR --exercise NAME [--hidden] [--timeout S] [-o REPORT]

Each submission (every .ipynb under SUBMISSIONS_DIR; the student is the first folder below it, or the
file name when the notebook lies directly in it) is copied to a temporary folder, its graded test cells
are replaced by the instructor's version from notebooks/exercises/source/NAME.ipynb (hidden tests
included with --hidden), and the copy runs under ``pytest --nbval-lax`` in its own process with a time
limit. A test cell scores its points when nbval passes it. Submissions are only read, never written.

Edited test cells are graded with the original (the report says so); deleted test cells score 0; a
notebook that is not valid JSON, belongs to another exercise, never ends or kills its kernel gets a row
with the reason, and the batch goes on. The exit status is non-zero only when nothing could be graded:
an unknown exercise, a missing folder, or no notebooks in it.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from ..paths import atomic_write_text, project_root
from .exercises import ExerciseError, GradedCell, exercise_name, grade_meta, graded_cells, normalized, source_path
from .notebook_tools import ANSI, last_exception
from .processes import kill_tree

DEFAULT_TIMEOUT = 600
MESSAGE_LIMIT = 600
REPORT_FIELDS = ["student", "submission", "exercise", "test", "status", "points", "points_possible", "note", "message"]


@dataclass
class Row:
    """One line of the report: a student's result on one test cell (test 'TOTAL' for the sum)."""

    student: str
    submission: str
    exercise: str
    test: str
    status: str  # pass | fail | deleted | timeout | crashed | invalid-notebook | wrong-exercise | total
    points: float
    points_possible: float
    note: str = ""
    message: str = ""


@dataclass
class Prepared:
    """A submission turned into the notebook to run, and what was found for each test cell."""

    nb: object
    code_cell_of: dict[str, int] = field(default_factory=dict)  # test id -> nbval cell number
    notes: dict[str, str] = field(default_factory=dict)  # test id -> 'edited ...' etc.
    deleted: set[str] = field(default_factory=set)


class SubmissionProblem(Exception):
    """The submission cannot be run; ``status`` and the message go into the report."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------------------------ finding
def find_submissions(folder: Path) -> list[tuple[str, Path]]:
    """(student, path) for each .ipynb under ``folder``, sorted; checkpoints are skipped."""
    found = []
    for path in sorted(folder.rglob("*.ipynb")):
        relative = path.relative_to(folder)
        if ".ipynb_checkpoints" in relative.parts or any(part.startswith(".") for part in relative.parts):
            continue
        student = relative.parts[0] if len(relative.parts) > 1 else path.stem
        found.append((student, path))
    return found


# ---------------------------------------------------------------------------------------- preparing
def prepare(raw: bytes, exercise: str, tests: list[GradedCell], hidden: bool) -> Prepared:
    """The notebook to run: the submission with the instructor's test cells put back, outputs cleared."""
    try:
        text = raw.decode("utf-8")
        json.loads(text)
    except UnicodeDecodeError as exc:
        raise SubmissionProblem(
            "invalid-notebook", f"not UTF-8 text ({exc.reason}); ask the student to save it again from Jupyter"
        ) from None
    except json.JSONDecodeError as exc:
        raise SubmissionProblem(
            "invalid-notebook",
            f"not a valid notebook: not valid JSON ({exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}; a cut-off upload or a file edited by hand?)",
        ) from None
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat's own errors, or anything a malformed notebook raises
        first = str(exc).strip().split("\n")[0][:200]
        raise SubmissionProblem(
            "invalid-notebook", f"not a valid notebook: valid JSON, but not a notebook Jupyter can open ({first})"
        ) from None
    if not isinstance(getattr(nb, "cells", None), list):
        raise SubmissionProblem("invalid-notebook", "not a valid notebook (no list of cells)")
    named = exercise_name(nb)
    if named and named != exercise:
        raise SubmissionProblem("wrong-exercise", f"this notebook is exercise {named!r}, not {exercise!r}")

    by_id, by_source = {}, {}
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        meta = grade_meta(cell)
        if meta is not None:
            by_id.setdefault(meta["id"], index)
        by_source.setdefault(normalized(cell.get("source", "")), index)
    prepared = Prepared(nb)
    located = {}
    for test in tests:
        if test.grade_id in by_id:
            index = by_id[test.grade_id]
        elif normalized(test.released_source) in by_source:
            index = by_source[normalized(test.released_source)]
            prepared.notes[test.grade_id] = "test cell had lost its metadata; matched by its source"
        else:
            prepared.deleted.add(test.grade_id)
            continue
        located[index] = test
        if normalized(nb.cells[index].source) != normalized(test.released_source):
            prepared.notes[test.grade_id] = "test cell was edited; graded with the original test"
    if not located and not named:
        raise SubmissionProblem(
            "wrong-exercise", f"none of the test cells of {exercise!r} were found; is this the right notebook?"
        )

    code_number = 0
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        if index in located:
            test = located[index]
            cell.source = test.full_source if hidden else test.released_source
            cell.metadata = nbformat.NotebookNode({"grade": {"id": test.grade_id, "points": test.points}})
            prepared.code_cell_of[test.grade_id] = code_number
        code_number += 1
    nb.metadata.pop("widgets", None)
    return prepared


# ------------------------------------------------------------------------------------------ running
@dataclass
class RunResult:
    """What one nbval run gave: per nbval cell number (outcome, message), or why there are none."""

    cells: dict[int, tuple[str, str]]
    status: str  # ok | timeout | crashed
    detail: str = ""
    seconds: float = 0.0


def clean_message(text: str) -> str:
    """The exception line(s) at the end of an nbval failure, without colours, at most MESSAGE_LIMIT characters."""
    text = ANSI.sub("", text or "")
    if "Kernel dead on test start" in text:
        return "not run: the kernel had died in an earlier cell"
    if "Timeout of" in text and "exceeded" in text:
        match = re.search(r"Timeout of [\d.]+ seconds exceeded[^\n]*", text)
        return match.group(0) if match else "cell timed out"
    lines, start = last_exception(text)
    message = "\n".join(lines[start:]).strip() if start is not None else (lines[-1] if lines else "")
    return message[:MESSAGE_LIMIT] + ("..." if len(message) > MESSAGE_LIMIT else "")


def parse_junit(path: Path) -> dict[int, tuple[str, str]]:
    """nbval cell number -> ('pass'|'fail'|'skipped', message) from a pytest junit XML file."""
    results = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        match = re.search(r"Cell (\d+)", case.get("name", ""))
        if not match:
            continue
        outcome, message = "pass", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, message = "fail", clean_message(child.text or child.get("message") or "")
                break
            if child.tag == "skipped":
                outcome, message = "skipped", clean_message(child.get("message") or child.text or "skipped")
        results[int(match.group(1))] = (outcome, message)
    return results


def run_nbval(
    nb, workdir: Path, timeout: float, profile: str = "quick", cell_timeout: float | None = None
) -> RunResult:
    """Run ``nb`` under pytest --nbval-lax in ``workdir``, in its own process, killed after ``timeout`` s.

    nbval interrupts a single cell after ``cell_timeout`` s (default: half of ``timeout``) and goes on with
    the next cells, so an endless loop late in a notebook still leaves the earlier results; the process
    limit is the backstop for everything else.
    """
    cell_timeout = max(1, int(cell_timeout if cell_timeout is not None else timeout / 2))
    notebook = workdir / "submission.ipynb"
    nbformat.write(nb, notebook)
    (workdir / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # no repo addopts, conftest or rootdir
    junit = workdir / "junit.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(workdir / "pytest.ini"),
        "--rootdir",
        str(workdir),
        "-o",
        "addopts=",
        "-p",
        "no:cacheprovider",
        "-p",
        "course_utils.tools.nbval_guard",
        "--nbval-lax",
        "--nbval-current-env",
        f"--nbval-cell-timeout={cell_timeout}",
        f"--junitxml={junit}",
        "-q",
        "--color=no",
        str(notebook),
    ]
    env = dict(os.environ, COURSE_PROFILE=profile, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    log = workdir / "pytest.log"  # a file, not a pipe: a process the notebook leaves behind cannot block us
    start = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(process)
            process.wait()
            return RunResult(
                {},
                "timeout",
                f"did not finish within {timeout:g} s (an endless loop?); stopped",
                time.perf_counter() - start,
            )
    seconds = time.perf_counter() - start
    tail = ANSI.sub("", log.read_text(encoding="utf-8", errors="replace"))[-MESSAGE_LIMIT:]
    if not junit.is_file():
        return RunResult(
            {}, "crashed", f"nbval stopped before reporting (exit {process.returncode}): {tail.strip()}", seconds
        )
    try:
        cells = parse_junit(junit)
    except ET.ParseError as exc:
        return RunResult({}, "crashed", f"unreadable nbval report ({exc})", seconds)
    return RunResult(cells, "ok", "", seconds)


# ------------------------------------------------------------------------------------------ grading
def grade_submission(
    student: str,
    path: Path,
    exercise: str,
    tests: list[GradedCell],
    hidden: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    profile: str = "quick",
    label: str | None = None,
    cell_timeout: float | None = None,
) -> list[Row]:
    """Rows for one submission: one per test cell, then a TOTAL row. Never raises for a bad submission."""
    label = label or path.name
    possible = sum(t.points for t in tests)

    def rows_all(status: str, message: str, deleted: set[str] = frozenset(), notes: dict | None = None) -> list[Row]:
        out = []
        for t in tests:
            if t.grade_id in deleted:
                out.append(Row(student, label, exercise, t.grade_id, "deleted", 0, t.points, "test cell deleted", ""))
            else:
                out.append(
                    Row(
                        student,
                        label,
                        exercise,
                        t.grade_id,
                        status,
                        0,
                        t.points,
                        (notes or {}).get(t.grade_id, ""),
                        message,
                    )
                )
        return out

    try:
        raw = path.read_bytes()
        prepared = prepare(raw, exercise, tests, hidden)
    except SubmissionProblem as exc:
        rows = rows_all(exc.status, str(exc))
        return rows + [_total(student, label, exercise, rows, possible, f"{exc.status}: {exc}")]
    except OSError as exc:
        rows = rows_all("invalid-notebook", f"could not read the file: {exc}")
        return rows + [_total(student, label, exercise, rows, possible, "could not read the file")]

    if not prepared.code_cell_of:
        rows = rows_all("deleted", "", prepared.deleted)
        return rows + [_total(student, label, exercise, rows, possible, "every test cell was deleted")]

    try:
        with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
            result = run_nbval(prepared.nb, Path(tmp), timeout, profile, cell_timeout)
    except Exception as exc:  # a notebook nbformat cannot write back, a full disk: report it, grade the rest
        result = RunResult({}, "crashed", f"could not run the notebook: {type(exc).__name__}: {exc}")
    if result.status != "ok":
        rows = rows_all(result.status, result.detail, prepared.deleted, prepared.notes)
        return rows + [_total(student, label, exercise, rows, possible, f"{result.status}: {result.detail[:200]}")]

    rows = []
    for t in tests:
        if t.grade_id in prepared.deleted:
            rows.append(Row(student, label, exercise, t.grade_id, "deleted", 0, t.points, "test cell deleted", ""))
            continue
        outcome, message = result.cells.get(prepared.code_cell_of[t.grade_id], ("fail", "nbval did not run this cell"))
        if outcome == "skipped":
            outcome, message = "fail", f"not run: {message}"
        points = t.points if outcome == "pass" else 0
        rows.append(
            Row(
                student,
                label,
                exercise,
                t.grade_id,
                outcome,
                points,
                t.points,
                prepared.notes.get(t.grade_id, ""),
                message,
            )
        )
    dead = [m for _, m in result.cells.values() if "kernel died" in m.lower() or "kernel had died" in m.lower()]
    stopped = [m for _, m in result.cells.values() if m.startswith("Timeout of")]
    note = "; ".join(
        (["the kernel died during the run"] if dead else [])
        + ([f"a cell was stopped: {stopped[0]}"] if stopped else [])
    )
    return rows + [_total(student, label, exercise, rows, possible, note, result.seconds)]


def _total(
    student: str,
    label: str,
    exercise: str,
    rows: list[Row],
    possible: float,
    note: str = "",
    seconds: float | None = None,
) -> Row:
    edited = sum(1 for r in rows if "edited" in r.note)
    deleted = sum(1 for r in rows if r.status == "deleted")
    notes = [note] if note else []
    notes += [f"{edited} test cell(s) edited"] if edited else []
    notes += [f"{deleted} test cell(s) deleted"] if deleted else []
    notes += [f"ran in {seconds:.0f} s"] if seconds is not None else []
    return Row(student, label, exercise, "TOTAL", "total", sum(r.points for r in rows), possible, "; ".join(notes), "")


def grade_folder(
    folder: Path,
    exercise: str,
    hidden: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    profile: str = "quick",
    sources: Path | None = None,
    log=print,
    cell_timeout: float | None = None,
) -> list[Row]:
    """Grade every submission in ``folder``, one after the other; raises ExerciseError if nothing can be graded."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ExerciseError(f"{folder} is not a folder of submissions")
    reference = nbformat.read(source_path(exercise, sources), as_version=4)
    tests = graded_cells(reference, exercise)
    if not tests:
        raise ExerciseError(f"the source of {exercise!r} has no graded test cells")
    submissions = find_submissions(folder)
    if not submissions:
        raise ExerciseError(f"no .ipynb files under {folder}")
    rows = []
    for number, (student, path) in enumerate(submissions, 1):
        label = str(path.relative_to(folder))
        log(f"[{number}/{len(submissions)}] {student}: {label} ...")
        student_rows = grade_submission(student, path, exercise, tests, hidden, timeout, profile, label, cell_timeout)
        total = student_rows[-1]
        log(f"    {total.points:g}/{total.points_possible:g}" + (f"  ({total.note})" if total.note else ""))
        rows += student_rows
    return rows


# ------------------------------------------------------------------------------------------- report
def report_csv(rows: list[Row]) -> str:
    """The report as CSV text (one row per student and test, plus a TOTAL row per student)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        data = asdict(row)
        data["points"], data["points_possible"] = f"{row.points:g}", f"{row.points_possible:g}"
        writer.writerow(data)
    return buffer.getvalue()


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def report_markdown(rows: list[Row], exercise: str, hidden: bool) -> str:
    """The report as Markdown: a summary per student, then every test cell's result and message."""
    totals = [r for r in rows if r.test == "TOTAL"]
    lines = [
        f"# Grades: {exercise}" + (" (with hidden tests)" if hidden else ""),
        "",
        "| student | submission | points | of | notes |",
        "|---|---|---:|---:|---|",
    ]
    lines += [
        f"| {_md(r.student)} | {_md(r.submission)} | {r.points:g} | {r.points_possible:g} | {_md(r.note)} |"
        for r in totals
    ]
    lines += [
        "",
        "## Test cells",
        "",
        "| student | test | result | points | note | message |",
        "|---|---|---|---:|---|---|",
    ]
    for r in rows:
        if r.test != "TOTAL":
            lines.append(
                f"| {_md(r.student)} | {r.test} | {r.status} | {r.points:g}/{r.points_possible:g} | {_md(r.note)} "
                f"| {_md(r.message)} |"
            )
    return "\n".join(lines) + "\n"


def write_report(rows: list[Row], stem: Path, exercise: str, hidden: bool) -> tuple[Path, Path]:
    """Write STEM.csv and STEM.md atomically; return both paths."""
    stem = Path(stem)
    if stem.suffix in (".csv", ".md"):
        stem = stem.with_suffix("")
    csv_path, md_path = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".md")
    atomic_write_text(csv_path, report_csv(rows))
    atomic_write_text(md_path, report_markdown(rows, exercise, hidden))
    return csv_path, md_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course grade", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "submissions", type=Path, help="folder of submitted notebooks (STUDENT.ipynb or STUDENT/*.ipynb)"
    )
    parser.add_argument("--exercise", required=True, help="exercise name, e.g. ex1_freeze_and_head")
    parser.add_argument("--hidden", action="store_true", help="also run the hidden tests of the source notebook")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per submission (default %(default)s)"
    )
    parser.add_argument(
        "--cell-timeout",
        type=float,
        default=None,
        help="seconds one cell may run before nbval interrupts it and goes on (default: half of --timeout)",
    )
    parser.add_argument("--profile", default="quick", choices=["quick", "full"], help="COURSE_PROFILE for the runs")
    parser.add_argument(
        "--sources", type=Path, default=None, help="folder of source notebooks (default notebooks/exercises/source)"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="report path without extension; writes .csv and .md (default build/grades/EXERCISE)",
    )
    args = parser.parse_args(argv)
    try:
        rows = grade_folder(
            args.submissions,
            args.exercise,
            args.hidden,
            args.timeout,
            args.profile,
            args.sources,
            cell_timeout=args.cell_timeout,
        )
    except (ExerciseError, OSError, nbformat.ValidationError, json.JSONDecodeError) as exc:
        print(f"error: could not grade: {exc}", file=sys.stderr)
        return 2
    stem = args.output or project_root() / "build" / "grades" / args.exercise
    try:
        csv_path, md_path = write_report(rows, stem, args.exercise, args.hidden)
    except OSError as exc:
        print(f"error: could not write the report to {stem}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {csv_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
