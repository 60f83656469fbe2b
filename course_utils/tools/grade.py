"""Grade a folder of submitted exercise notebooks, each in a sandbox, and write a CSV and Markdown report.

    course grade SUBMISSIONS_DIR --exercise NAME [--hidden] [--timeout S] [--jobs N] [-o REPORT] [limits...]

Each submission (every .ipynb under SUBMISSIONS_DIR, at most 16 folders down; the student is the
first folder below it, or the file name when the notebook lies directly in it) is read and prepared in a
child process with a memory and time limit (``notebook_reader``; the grader never parses a submission
itself): its graded test cells are replaced by the
instructor's version from the source notebook (--sources, default notebooks/exercises/source/NAME.ipynb;
hidden tests included with --hidden unless the judge scores the exercise), outputs cleared. The prepared copy runs
with nbclient's public API (``runner.py``) inside a sandbox (``sandbox.py``: bubblewrap on Linux, else a process
guard and a loud warning), under resource limits, with an overall time limit; every process it started is gone
before the next submission runs.
``--jobs`` submissions run at once (``batch``), each in its own sandbox; the report is the same whatever the
number. A supervisor adds up the memory of each whole submission (its processes and its files in memory) and
stops it above ``--total-memory-limit``.

How points are decided. For an exercise the judge knows (``judged.judged``: listed in ``judge.MODULES`` and its
module exists; the one switch), a test row's points are the judge's verdict (``judge.score``) on the data the
runner exported after the notebook: the student's functions called with the judge's inputs and budgets, the
data loaded outside the sandbox into the judge's own objects, accuracy measured by the judge itself. The
notebook's graded cells are then self-checks whose results are hints in the row's note; the sandbox sees only
the released test cells, never the hidden ones or the judge's folder; a changed machinery still marks the
submission ``review``. For any other exercise a test cell scores its points when the kernel's own reply says it
ran without error and the machinery that runs and judges cells was not changed; a changed machinery makes the
cell (and the submission) ``review``. Submissions are only read, never written.

Edited test cells are graded with the original (the report says so); deleted test cells score 0 (judged: a
deleted self-check changes nothing); a notebook that is not valid JSON, belongs to another exercise, is a
symbolic link, is too costly to read, never ends, kills its kernel or hits a limit gets a row with the reason,
and the batch goes on; so does one that breaks the grader itself. Every other file in the folder is named in
the log and the Markdown report with the reason it was not graded. Names and messages are shown escaped
(``grade_report.plain``). The exit status is non-zero only when nothing could be graded: an unknown exercise,
a missing folder, or no notebooks in it (2), when the report could not be written (1), or after Ctrl-C (130;
the report of what finished is written).

Modules, one step each: ``grade_settings`` (the options, one frozen ``GradeSettings``), ``submissions`` (find,
prepare; what the source notebook says), ``notebook_reader`` (reading in a limited child), ``grade_one`` (one
submission: prepare, run, judge, notes), ``grade_run`` (the sandboxed run), ``sandbox`` (isolation, limits,
cleanup), ``processes`` (process trees and their memory), ``runner``, ``kernel_checks`` and ``kernel_probe``
(running cells inside the run), ``judged`` (the judge's exports and rows), ``grade_rows`` (rows, notes, TOTAL),
``batch`` (a class in parallel), ``grade_report`` (CSV, Markdown, escaping); this one grades a class and is
the command line.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import nbformat

from .. import judge
from ..paths import project_root
from .batch import default_jobs, run_all
from .exercises import ExerciseError, graded_cells, source_path
from .grade_one import ClassContext, grade_submission
from .grade_report import (  # noqa: F401 - the report's names, importable from here too
    FORMULA_STARTS,
    Batch,
    Row,
    display_name,
    plain,
    report_csv,
    report_markdown,
    spreadsheet_safe,
    write_report,
)
from .grade_rows import refused_rows
from .grade_run import (  # noqa: F401 - running one submission, importable from here too
    RunResult,
    default_isolation_mode,
    isolation_for,
    resolve_isolation,
    run_in_sandbox,
    stage_weights,
)
from .grade_settings import DEFAULT_TIMEOUT, GradeSettings
from .notebook_reader import read_prepared  # noqa: F401
from .sandbox import Isolation, Limits  # noqa: F401 - Isolation importable from here too
from .submissions import (  # noqa: F401 - finding and preparing submissions, importable from here too
    Collected,
    SubmissionProblem,
    collect,
    hidden_lines,
    prepare,
    redact,
)

Entry = tuple[str, Path, str, str | None]  # (student, path, label, why it is refused or None)


def class_tests(settings: GradeSettings) -> tuple[Path, object, list]:
    """The exercise's source notebook: (its path, the notebook, its graded test cells); raises ExerciseError."""
    source = source_path(settings.exercise, settings.sources)
    reference = nbformat.read(source, as_version=4)
    tests = graded_cells(reference, settings.exercise)
    if not tests:
        raise ExerciseError(f"the source of {settings.exercise!r} has no graded test cells")
    return source, reference, tests


def class_entries(folder: Path) -> tuple[Collected, list[Entry]]:
    """What ``folder`` holds: the collected files, and the entries to grade (or refuse) in a stable order."""
    found = collect(folder)
    if not found.submissions and not found.refused:
        skipped = "; ".join(f"{plain(label)}: {reason}" for label, reason in found.skipped[:3])
        raise ExerciseError(f"no .ipynb files under {plain(folder)}" + (f" (not graded: {skipped})" if skipped else ""))
    entries = [(s, p, str(p.relative_to(folder)), None) for s, p in found.submissions]
    entries += [(s, Path(lbl), lbl, r) for s, lbl, r in found.refused]
    entries.sort(key=lambda e: os.fsencode(e[2]))
    return found, entries


def checked_settings(settings: GradeSettings) -> GradeSettings:
    """``settings`` with the isolation checked on this machine and the number of jobs decided."""
    try:
        isolation = resolve_isolation(settings.isolation)
    except RuntimeError as exc:
        raise ExerciseError(str(exc)) from None
    jobs = max(1, int(settings.jobs or default_jobs(settings.limits.total_memory_gb)))
    return replace(settings, isolation=isolation, jobs=jobs)


def log_start(settings: GradeSettings, found: Collected, entries: list[Entry], by_judge: bool, log: Callable) -> list:
    """The log's first lines: isolation, limits, what was skipped, students with several notebooks (the warnings,
    returned), how many run at once and who decides the points."""
    isolation = settings.isolation
    log(("isolation: " if isolation.isolated else "WARNING: ") + isolation.summary)
    log(f"limits: {settings.limits.describe()}")
    for label, reason in found.skipped:
        log(f"  {plain(label)}: {plain(reason)}")
    warnings = several_notebooks(entries, log)
    log(f"grading {len(entries)} submission(s), {settings.jobs} at a time")
    if by_judge:
        module = judge.MODULES[settings.exercise]
        log(f"points: decided by the judge (course_utils/judge/{module}.py) outside the sandbox")
    else:
        log(f"points: decided by the test cells in the kernel (the judge has no module for {settings.exercise} yet)")
    return warnings


def grade_folder(folder: Path, settings: GradeSettings, log: Callable[[str], None] = print) -> Batch:
    """Grade every submission in ``folder``, ``settings.jobs`` at a time; raises ExerciseError if nothing can be.

    The rows come in the same order whatever the number of jobs. A submission that breaks the grader itself
    gets rows saying so, and Ctrl-C returns the rows graded so far (the Batch says it was interrupted).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ExerciseError(f"{folder} is not a folder of submissions")
    source, reference, tests = class_tests(settings)
    found, entries = class_entries(folder)
    settings = checked_settings(settings)
    invisible = [folder, Path(source).parent, *([Path(settings.output).parent] if settings.output else [])]
    with tempfile.TemporaryDirectory(prefix="grade-weights-") as stage:
        weights = stage_weights(Path(stage))
        context = ClassContext.of(settings, reference, source, tests, hidden=tuple(invisible), weights_home=weights)
        warnings = log_start(settings, found, entries, context.by_judge, log)
        outcome = run_all(
            [functools.partial(grade_entry, entry, entries, settings, context, log) for entry in entries],
            settings.jobs,
            [f"{plain(e[0])}: {display_name(e[2])}" for e in entries],
            log,
            functools.partial(failed_entry, entries, settings, tests),
            summary,
        )
    rows = [row for result in outcome.results if result for row in result]
    not_graded = [display_name(e[2]) for e, result in zip(entries, outcome.results, strict=True) if result is None]
    return Batch(rows, settings.isolation, settings.limits, found.skipped, warnings, not_graded=not_graded)


def grade_entry(entry: Entry, entries: list[Entry], settings: GradeSettings, context: ClassContext, log) -> list[Row]:
    """The rows of one entry: refused at once, or read, run and graded."""
    student, path, label, refusal = entry
    count = sum(1 for e in entries if e[0] == student)
    note = f"one of {count} notebooks of {student}" if count > 1 else ""
    if refusal is not None:
        return refused_rows(student, display_name(label), settings.exercise, context.tests, refusal, note)
    return grade_submission((student, display_name(label), settings.exercise), path, settings, context, note, log)


def failed_entry(entries: list[Entry], settings: GradeSettings, tests: list, index: int, exc: BaseException) -> list:
    """Rows for an entry on which the grader itself failed."""
    student, _path, label, _ = entries[index]
    reason = f"the grader itself failed on this submission ({type(exc).__name__}: {exc}); grade it by hand"
    return refused_rows(student, display_name(label), settings.exercise, tests, reason, "", status="crashed")


def several_notebooks(entries: list[Entry], log: Callable) -> list[str]:
    """A warning (logged) for each student with more than one notebook."""
    per_student: dict[str, list[str]] = {}
    for student, _path, label, _refusal in entries:
        per_student.setdefault(student, []).append(display_name(label))
    warnings = []
    for student, labels in per_student.items():
        if len(labels) > 1:
            warnings.append(
                f"{student} has {len(labels)} notebooks ({', '.join(labels)}): each is graded; decide which counts"
            )
            log(f"WARNING: {plain(warnings[-1])}")
    return warnings


def summary(rows: list[Row]) -> str:
    """The progress line's end for one submission: its points and TOTAL note, display-safe."""
    last = rows[-1]
    return plain(f"{last.points:g}/{last.points_possible:g}" + (f"  ({last.note})" if last.note else ""))


def parser() -> argparse.ArgumentParser:
    """The command line of `course grade`."""
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
        help="seconds one cell may run before the runner interrupts it and goes on (default: half of --timeout)",
    )
    parser.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=None,
        metavar="N",
        help="submissions graded at once, each in its own sandbox (default: the cores available, at most as many "
        "as the free memory holds at --total-memory-limit each)",
    )
    parser.add_argument("--profile", default="quick", choices=["quick", "full"], help="COURSE_PROFILE for the runs")
    parser.add_argument(
        "--sources",
        type=Path,
        default=None,
        help="folder of source notebooks (default notebooks/exercises/source); never visible to submissions",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="report path without extension; writes .csv and .md (default build/grades/EXERCISE)",
    )
    add_limits(parser.add_argument_group("isolation and limits (per submission)"))
    return parser


def add_limits(limits: argparse._ArgumentGroup) -> None:
    """The options of isolation and resource limits."""
    defaults = Limits()
    limits.add_argument(
        "--isolation",
        choices=["auto", "bwrap", "none"],
        default=default_isolation_mode(),
        help="bwrap: require bubblewrap; none: run without it (NOT isolated); auto (default): bubblewrap when it "
        "works, else none with a warning in the report. Default from $COURSE_GRADE_ISOLATION",
    )
    limits.add_argument(
        "--memory-limit",
        type=float,
        default=defaults.memory_gb,
        metavar="GB",
        help="address space per process (default %(default)s; an exercise-1 kernel reserves about 4.5)",
    )
    limits.add_argument(
        "--total-memory-limit",
        type=float,
        default=defaults.total_memory_gb,
        metavar="GB",
        help="memory of the whole submission: all its processes and its files in memory; the run is stopped above "
        "it (default %(default)s)",
    )
    limits.add_argument(
        "--file-limit", type=float, default=defaults.file_mb, metavar="MB", help="largest file (default %(default)s)"
    )
    limits.add_argument(
        "--disk-limit",
        type=float,
        default=defaults.disk_mb,
        metavar="MB",
        help="the work folder: home, temp and the notebook (default %(default)s)",
    )
    limits.add_argument(
        "--process-limit",
        type=int,
        default=defaults.processes,
        metavar="N",
        help="processes and threads (default %(default)s)",
    )
    limits.add_argument(
        "--cpu-limit",
        type=int,
        default=None,
        metavar="S",
        help="CPU seconds per process (default: twice --timeout)",
    )
    limits.add_argument(
        "--output-limit",
        type=int,
        default=defaults.output_kb,
        metavar="KB",
        help="printed output kept per cell (default %(default)s)",
    )


def settings_from(args: argparse.Namespace) -> GradeSettings:
    """The one GradeSettings of a run, from the command line's arguments."""
    limits = Limits(
        memory_gb=args.memory_limit,
        file_mb=args.file_limit,
        disk_mb=args.disk_limit,
        processes=args.process_limit,
        cpu_seconds=args.cpu_limit or int(2 * args.timeout),
        output_kb=args.output_limit,
        total_memory_gb=args.total_memory_limit,
    )
    return GradeSettings(
        exercise=args.exercise,
        hidden=args.hidden,
        timeout=args.timeout,
        cell_timeout=args.cell_timeout,
        profile=args.profile,
        sources=args.sources,
        limits=limits,
        isolation=args.isolation,
        jobs=args.jobs,
        output=args.output or project_root() / "build" / "grades" / args.exercise,
    )


def main(argv: list[str] | None = None) -> int:
    """`course grade`: grade a folder and write the report; the exit status says whether anything was graded."""
    args = parser().parse_args(argv)
    settings = settings_from(args)
    try:
        batch = grade_folder(args.submissions, settings)
    except (ExerciseError, OSError, nbformat.ValidationError, json.JSONDecodeError) as exc:
        print(f"error: could not grade: {exc}", file=sys.stderr)
        return 2
    try:
        csv_path, md_path = write_report(batch, settings.output, settings.exercise, settings.hidden)
    except OSError as exc:
        print(f"error: could not write the report to {settings.output}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {csv_path} and {md_path}")
    if not batch.isolation.isolated:
        print(f"WARNING: {batch.isolation.summary}", file=sys.stderr)
    if batch.not_graded:
        print(f"interrupted: {len(batch.not_graded)} submission(s) not graded; grade them again", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
