"""Grading one submission, step by step: prepare, run, judge, notes, TOTAL (``grade_submission``).

1. prepare: the submission is read and prepared in a limited child process (``notebook_reader``; the grader
   never parses a student's JSON itself) against the source notebook;
2. run: the prepared copy runs in the sandbox (``grade_run.run_in_sandbox``);
3. judge: a row per test cell, from the judge's verdicts on the run's exports for an exercise the judge knows,
   else from the kernel's reply to each test cell (``grade_rows``);
4. notes and TOTAL: what else the run showed, and the sum (``grade_rows.review_notes``, ``run_notes``).

What every submission of a class shares (the tests, the source notebook, the run's inputs) is computed once,
in a ``ClassContext``; the options are the run's ``GradeSettings``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from . import judged as judging
from .exercises import GradedCell
from .grade_report import Row, plain
from .grade_rows import Who, cell_rows, judged_rows, review_notes, rows_all, run_notes, total_row
from .grade_run import RunInputs, RunResult, resolve_isolation, run_in_sandbox
from .grade_settings import GradeSettings
from .notebook_reader import ReadNotebook, read_prepared
from .submissions import SubmissionProblem, defined_functions, hidden_lines, import_bindings, preload_modules


@dataclass(frozen=True)
class ClassContext:
    """What every submission of one class is graded against: the exercise's tests and source, the run's inputs."""

    tests: list[GradedCell]
    source: Path
    by_judge: bool
    secret_lines: list[str]  # lines of the hidden tests, redacted from messages (with --hidden)
    inputs: RunInputs  # ``hidden`` lists what every run keeps invisible; the submission's own path is added

    @classmethod
    def of(cls, settings: GradeSettings, reference, source: Path, tests: list[GradedCell], **inputs) -> ClassContext:
        """The context of ``settings.exercise`` from its source notebook ``reference`` (at ``source``)."""
        by_judge = judging.judged(settings.exercise)
        run_inputs = RunInputs(
            preload=tuple(preload_modules(reference)),
            bindings=import_bindings(reference),
            defined=defined_functions(reference),
            exports=judging.export_plan(settings.exercise) if by_judge else None,
            **inputs,
        )
        secret = hidden_lines(tests) if settings.hidden else []
        return cls(tests, Path(source), by_judge, secret, run_inputs)

    @property
    def possible(self) -> float:
        """The points of every test cell together."""
        return sum(t.points for t in self.tests)


def prepare_step(path: Path, settings: GradeSettings, context: ClassContext) -> ReadNotebook | tuple[str, str, str]:
    """The prepared submission, or (status, message, TOTAL note) when it cannot be run."""
    hidden = settings.hidden and not context.by_judge
    try:
        return read_prepared(path, context.source, settings.exercise, hidden)
    except SubmissionProblem as exc:
        return exc.status, str(exc), f"{exc.status}: {exc}"
    except OSError as exc:
        return "invalid-notebook", f"could not read the file: {exc.strerror or exc}", "could not read the file"


def run_step(path: Path, prepared: ReadNotebook, settings: GradeSettings, context: ClassContext) -> RunResult:
    """The sandboxed run of the prepared notebook (a run the grader could not start comes back 'crashed')."""
    inputs = replace(context.inputs, hidden=(path, *context.inputs.hidden))
    try:
        return run_in_sandbox(prepared.text, settings, None, inputs)
    except Exception as exc:  # a full disk, a sandbox that cannot start: report it, grade the rest
        return RunResult({}, "crashed", f"could not run the notebook: {type(exc).__name__}: {exc}")


def log_run(label: str, result: RunResult, settings: GradeSettings, log: Callable[[str], None] | None) -> None:
    """The instructor's console: the memory a run held, and the end of a crashed run's output (never the report's)."""
    if log is not None and result.memory_peak:
        used = result.memory_peak / 1024**3
        limit = settings.limits.total_memory_gb
        log(f"    {plain(label)}: held at most {used:.2f} GB in all (--total-memory-limit {limit:g})")
    if result.status == "crashed" and log is not None:
        tail = [plain(line) for line in result.log.strip().splitlines() if line.strip()][-5:]
        log(
            f"    {plain(label)}: the run's last output (not in the report):\n      "
            + "\n      ".join(tail or ["(none)"])
        )


def grade_submission(
    who: Who,
    path: Path,
    settings: GradeSettings,
    context: ClassContext,
    note: str = "",
    log: Callable[[str], None] | None = None,
) -> list[Row]:
    """Rows for one submission (``who``: student, label, exercise): one per test cell, then TOTAL. Never raises
    for a bad submission. ``note`` starts the TOTAL note; ``log`` gets what only the instructor may see."""
    isolated = resolve_isolation(settings.isolation).isolated
    base = [n for n in (note, "" if isolated else "NOT ISOLATED (see the report header)") if n]

    def total(rows: list[Row], notes: list[str], seconds: float | None = None, review: bool = False) -> Row:
        return total_row(who, rows, context.possible, "; ".join(base + notes), seconds, review)

    prepared = prepare_step(path, settings, context)
    if isinstance(prepared, tuple):
        status, message, why = prepared
        rows = rows_all(who, context.tests, status, message)
        return rows + [total(rows, [why])]
    if not prepared.code_cell_of and not context.by_judge:
        rows = rows_all(who, context.tests, "deleted", "", prepared.deleted)
        return rows + [total(rows, ["every test cell was deleted"])]
    result = run_step(path, prepared, settings, context)
    log_run(who[1], result, settings, log)
    if context.by_judge:
        rows = judged_rows(who, context.tests, prepared, result, settings)
    else:
        rows = cell_rows(who, context.tests, prepared, result, settings, context.secret_lines)
    notes, review = review_notes(prepared, result, rows, context.by_judge)
    notes += run_notes(result, rows, settings)
    return [*rows, total(rows, notes, result.seconds, review)]
