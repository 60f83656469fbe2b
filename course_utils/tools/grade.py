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

Modules: ``submissions`` (find, prepare; what the source notebook says), ``notebook_reader`` (reading in a
limited child), ``sandbox`` (isolation, limits, cleanup), ``processes`` (process trees and their memory),
``batch`` (a class in parallel), ``runner``, ``kernel_checks`` and ``kernel_probe`` (running cells inside the run),
``judged`` (the judge's exports and rows),
``grade_report`` (CSV, Markdown, escaping); this one runs and grades, and is the command line.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import nbformat

from .. import judge
from ..paths import PACKAGE_DIR, data_dir, file_sha256, project_root
from . import judged as judging
from . import sandbox
from .batch import default_jobs, run_all
from .exercises import ExerciseError, GradedCell, graded_cells, source_dir, source_path
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
from .notebook_reader import read_prepared
from .sandbox import Isolation, Limits
from .submissions import (  # noqa: F401 - finding and preparing submissions, importable from here too
    Collected,
    Prepared,
    SubmissionProblem,
    collect,
    defined_functions,
    edited_scaffolding,
    find_submissions,
    hidden_lines,
    import_bindings,
    preload_modules,
    prepare,
    read_submission,
    redact,
)

DEFAULT_TIMEOUT = 600
MESSAGE_LIMIT = 600


# ------------------------------------------------------------------------------------------ running
@dataclass
class RunResult:
    """One sandboxed run: per code cell number (outcome, message), and how the run ended.

    outcome is 'pass', 'fail' or 'review'; status is 'ok' (the runner finished), 'timeout' (stopped at the
    overall limit; finished cells are kept), 'memory' (stopped at the memory limit of the whole submission;
    finished cells are kept) or 'crashed' (ended before reporting every cell).
    """

    cells: dict[int, tuple[str, str]]
    status: str
    detail: str = ""
    seconds: float = 0.0
    records: dict[int, dict] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    survivors: list[str] = field(default_factory=list)
    isolation: Isolation | None = None
    log: str = ""
    memory_peak: int = 0  # bytes: the most the whole run held (processes and files in memory)
    exports: dict[str, tuple[bytes | None, str]] = field(default_factory=dict)  # the judge's data by grade id


def stage_weights(folder: Path) -> Path:
    """A TORCH_HOME in ``folder`` holding verified copies (readable by all) of the course's cached checkpoints."""
    from ..weights import SPECS, hub_checkpoint_dir

    target = Path(folder) / "torch" / "hub" / "checkpoints"
    target.mkdir(parents=True, exist_ok=True)
    source = hub_checkpoint_dir()
    for spec in SPECS.values():
        path = source / spec.filename
        if path.is_file() and spec.matches(file_sha256(path)):
            shutil.copyfile(path, target / spec.filename)
            os.chmod(target / spec.filename, 0o644)
    for path in (target.parent.parent, target.parent, target):
        os.chmod(path, 0o755)
    return Path(folder) / "torch"


def course_mounts() -> list[Path]:
    """What a kernel needs read-only: Python and its packages, the course_utils package, the datasets."""
    paths = sandbox.python_paths() + [PACKAGE_DIR]
    data = data_dir()
    if data.is_dir():
        paths.append(data)
    fashion = Path("/usr/share/datasets/fashion-mnist")  # Debian's package, where data/ may link to
    if fashion.is_dir():
        paths.append(fashion)
    return paths


@lru_cache(maxsize=4)
def isolation_for(mode: str = "auto") -> Isolation:
    """The isolation this machine gives (checked once per process and mode with a real sandboxed Python)."""
    probe = sandbox.Plan(
        [sys.executable, "-c", "import course_utils.tools.runner, nbclient, ipykernel"],
        env={"PYTHONPATH": str(PACKAGE_DIR.parent)},
        read_only=course_mounts(),
    )
    return sandbox.choose_isolation(mode, probe)


def default_isolation_mode() -> str:
    """$COURSE_GRADE_ISOLATION (auto, bwrap or none), else auto."""
    return os.environ.get(sandbox.ISOLATION_VARIABLE, "auto").strip() or "auto"


def runner_command(cell_timeout: int, exports: bool = False) -> list[str]:
    """The command that runs submission.ipynb inside the sandbox: runner.py (nbclient's public API).

    ``exports``: the runner also runs the judge's exports (judged.EXPORTS_FILE).
    """
    command = [sys.executable, "-m", "course_utils.tools.runner", "submission.ipynb"]
    return command + [f"--cell-timeout={cell_timeout}"] + ([f"--exports={judging.EXPORTS_FILE}"] if exports else [])


def run_nbval(
    nb,
    workdir: Path | None,
    timeout: float,
    profile: str = "quick",
    cell_timeout: float | None = None,
    *,
    isolation: Isolation | None = None,
    limits: Limits | None = None,
    hidden: list[Path] = (),
    preload: list[str] = (),
    weights_home: Path | None = None,
    bindings: dict[str, str] | None = None,
    defined: dict[str, str] | None = None,
    exports: bytes | None = None,
) -> RunResult:
    """Run ``nb`` (a notebook, or its JSON bytes) with ``runner.py`` (nbclient) in a sandbox.

    The runner interrupts a single cell after ``cell_timeout`` s (default: half of ``timeout``) and goes on with
    the next cells, so an endless loop late in a notebook still leaves the earlier results; the overall
    limit is the backstop, and the cells that finished before it are kept. ``workdir`` holds the run's
    temporary files on the grader's side (the staged weights); ``hidden`` paths stay invisible inside.
    ``exports`` (``judged.export_plan``) makes the runner export the judge's data after the notebook
    (``RunResult.exports``). The judge's package folder is never visible inside.
    """
    isolation = isolation or isolation_for(default_isolation_mode())
    limits = limits or Limits()
    cell_timeout = max(1, int(cell_timeout if cell_timeout is not None else timeout / 2))
    notebook_bytes = nb if isinstance(nb, bytes) else nbformat.writes(nb).encode("utf-8")
    with tempfile.TemporaryDirectory(prefix="grade-", dir=workdir) as tmp:
        torch_home = weights_home or stage_weights(Path(tmp))
        command = runner_command(cell_timeout, exports is not None)
        files = {"submission.ipynb": notebook_bytes}
        if exports is not None:
            files[judging.EXPORTS_FILE] = exports
        plan = sandbox.Plan(
            command,
            files=files,
            env={
                "COURSE_PROFILE": profile,
                "MPLBACKEND": "Agg",
                "PYTHONPATH": str(PACKAGE_DIR.parent),
                "COURSE_DATA_DIR": str(data_dir()),
                "COURSE_CACHE_DIR": "{work}/tmp/course-cache",
                "COURSE_OFFLINE": "1",
                "TORCH_HOME": "/opt/course-torch" if isolation.isolated else str(torch_home),
                "COURSE_GRADE_OUTPUT_KB": str(limits.output_kb),
                "COURSE_GRADE_PRELOAD": ",".join(preload),
                "COURSE_GRADE_BINDINGS": json.dumps(bindings or {}),
                "COURSE_GRADE_DEFINED": json.dumps(defined or {}),
            },
            read_only=course_mounts(),
            mounts={"/opt/course-torch": torch_home} if isolation.isolated else {},
            hidden=[Path(p) for p in hidden] + [source_dir(), project_root() / ".git", judge.JUDGE_DIR],
            limits=limits,
        )
        try:
            outcome = sandbox.run(plan, isolation, timeout)
        except OSError as exc:
            return RunResult({}, "crashed", f"could not start the sandbox: {exc}", isolation=isolation)
    records = {int(r["cell"]): r for r in outcome.records if r.get("event") == "cell" and "cell" in r}
    events = [r for r in outcome.records if r.get("event") not in ("cell", "export")]
    cells = {number: (r.get("verdict", "fail"), r.get("message", "")) for number, r in records.items()}
    ended = next((e for e in events if e.get("event") == "end"), None)
    if outcome.memory_stopped:
        status = "memory"
        detail = (
            f"the memory limit of {limits.total_memory_gb:g} GB for the whole submission was reached "
            f"(--total-memory-limit): it {outcome.memory_stopped}"
        )
    elif outcome.timed_out:
        status, detail = "timeout", f"did not finish within {timeout:g} s (an endless loop?); stopped"
    elif ended is None or ended.get("exit") not in (0, 1):
        code = ended.get("exit") if ended else outcome.exit_code
        status, detail = "crashed", f"the grading run ended before reporting every cell (exit {code})"
    else:
        status, detail = "ok", ""
    return RunResult(
        cells,
        status,
        detail,
        outcome.seconds,
        records,
        events,
        outcome.survivors,
        isolation,
        outcome.log,
        outcome.memory_peak,
        judging.decode_exports(outcome.records),
    )


# ------------------------------------------------------------------------------------------ grading
def limit_hint(record: dict, limits: Limits) -> str:
    """Which resource limit a failed cell most likely hit, in words ('' when none)."""
    text = f"{record.get('ename', '')}: {record.get('evalue', '')}"
    lowered = text.lower()
    exit_code = record.get("kernel_exit")
    peak = record.get("vm_peak_kb") or 0
    if exit_code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return f"the CPU-time limit of {limits.cpu_seconds} s per process was reached (--cpu-limit)"
    if exit_code in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ) or "file too large" in lowered:
        return f"the file-size limit of {limits.file_mb:g} MB was reached (--file-limit)"
    if "no space left on device" in lowered:
        return f"the work folder's limit of {limits.disk_mb:g} MB was reached (--disk-limit)"
    memoryish = record.get("ename") == "MemoryError" or any(
        word in lowered for word in ("can't allocate memory", "cannot allocate memory", "bad_alloc", "out of memory")
    )
    near = peak >= 0.9 * limits.memory_gb * 1024 * 1024
    if memoryish or (record.get("kernel_died") and near):
        return f"the memory limit of {limits.memory_gb:g} GB per process was reached (--memory-limit)"
    if (
        "resource temporarily unavailable" in lowered
        or "can't start new thread" in lowered
        or record.get("ename") == "BlockingIOError"
    ):
        return f"the limit of {limits.processes} processes and threads was reached (--process-limit)"
    return ""


def _message(record: dict, limits: Limits, secret_lines: list[str]) -> str:
    message = str(record.get("message", ""))
    if record.get("verdict") == "review" and record.get("tamper"):
        message = "the grading machinery was changed: " + "; ".join(record["tamper"][:4])
        if record.get("message") and record.get("verdict") != "pass" and record.get("reason") != "tampered":
            message += f" (and the cell failed: {record['message']})"
    hint = limit_hint(record, limits) if record.get("verdict") != "pass" else ""
    if hint:
        message = f"{message} ({hint})" if message else hint
    if record.get("output_truncated"):
        message += f" [output cut at {limits.output_kb} KB]"
    message = redact(message, secret_lines)
    return message[:MESSAGE_LIMIT] + ("..." if len(message) > MESSAGE_LIMIT else "")


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
    *,
    isolation: Isolation | None = None,
    limits: Limits | None = None,
    invisible: list[Path] = (),
    preload: list[str] = (),
    weights_home: Path | None = None,
    extra_note: str = "",
    log=None,
    reference=None,
    source: Path | None = None,
) -> list[Row]:
    """Rows for one submission: one per test cell, then a TOTAL row. Never raises for a bad submission.

    ``log`` (the instructor's console) gets the end of the run's output when it crashed; the report never does,
    since that output may quote the hidden tests. With the source notebook as ``reference``, names its cells
    import are watched in the kernel, and an edited instructor cell (setup, parameters, data) is marked for review.
    The submission is read and prepared in a limited child process (``notebook_reader``) against ``source``
    (default: the exercise's source notebook); the grader never parses the student's JSON itself. For an
    exercise the judge knows (``judged.judged``) the points are the judge's verdicts on the run's exports, the
    notebook runs with the released test cells only (the hidden checks live in the judge), and what its graded
    cells reported is a hint in each row's note.
    """
    label = label or path.name
    possible = sum(t.points for t in tests)
    isolation = isolation or isolation_for(default_isolation_mode())
    limits = limits or Limits()
    secret_lines = hidden_lines(tests) if hidden else []
    by_judge = judging.judged(exercise)
    base_notes = [n for n in (extra_note, "" if isolation.isolated else "NOT ISOLATED (see the report header)") if n]

    def rows_all(status: str, message: str, deleted: set[str] = frozenset(), notes: dict | None = None) -> list[Row]:
        out = []
        for t in tests:
            if t.grade_id in deleted:
                out.append(Row(student, label, exercise, t.grade_id, "deleted", 0, t.points, "test cell deleted", ""))
            else:
                note = (notes or {}).get(t.grade_id, "")
                out.append(Row(student, label, exercise, t.grade_id, status, 0, t.points, note, message))
        return out

    def total(rows: list[Row], notes: list[str], seconds: float | None = None, review: bool = False) -> Row:
        return _total(student, label, exercise, rows, possible, "; ".join(base_notes + notes), seconds, review)

    try:
        prepared = read_prepared(path, Path(source or source_path(exercise)), exercise, hidden and not by_judge)
    except SubmissionProblem as exc:
        rows = rows_all(exc.status, str(exc))
        return rows + [total(rows, [f"{exc.status}: {exc}"])]
    except OSError as exc:
        rows = rows_all("invalid-notebook", f"could not read the file: {exc.strerror or exc}")
        return rows + [total(rows, ["could not read the file"])]

    if not prepared.code_cell_of and not by_judge:
        rows = rows_all("deleted", "", prepared.deleted)
        return rows + [total(rows, ["every test cell was deleted"])]

    try:
        result = run_nbval(
            prepared.text,
            None,
            timeout,
            profile,
            cell_timeout,
            isolation=isolation,
            limits=limits,
            hidden=[path, *invisible],
            preload=preload,
            weights_home=weights_home,
            bindings=import_bindings(reference) if reference is not None else None,
            defined=defined_functions(reference) if reference is not None else None,
            exports=judging.export_plan(exercise) if by_judge else None,
        )
    except Exception as exc:  # a full disk, a sandbox that cannot start: report it, grade the rest
        result = RunResult({}, "crashed", f"could not run the notebook: {type(exc).__name__}: {exc}")

    if log is not None and result.memory_peak:
        used = result.memory_peak / 1024**3
        log(f"    {plain(label)}: held at most {used:.2f} GB in all (--total-memory-limit {limits.total_memory_gb:g})")
    if result.status == "crashed" and log is not None:
        tail = [plain(line) for line in result.log.strip().splitlines() if line.strip()][-5:]
        log(
            f"    {plain(label)}: the run's last output (not in the report):\n      "
            + "\n      ".join(tail or ["(none)"])
        )
    if by_judge:
        rows = _judged_rows(student, label, exercise, tests, prepared, result, timeout, limits)
    else:
        rows = _cell_rows(student, label, exercise, tests, prepared, result, timeout, limits, secret_lines)
    notes, review = [], any(r.status == "review" for r in rows)
    records = list(result.records.values())
    tampering = sorted({entry for r in records for entry in r.get("tamper", []) if not r.get("graded")})
    if by_judge:
        tampering += sorted({entry for r in records for entry in r.get("tamper", []) if r.get("graded")})
    planted = [f for e in result.events if e.get("event") == "startup-files" for f in e.get("files", [])]
    if tampering:
        review = True
        notes.append("REVIEW: " + "; ".join(tampering[:3]))
    if planted:
        review = True
        notes.append("REVIEW: wrote IPython/Jupyter start-up or config files: " + ", ".join(planted[:3]))
    edited = prepared.edited if reference is not None else []
    if edited:
        review = True
        notes.append(f"REVIEW: the instructor's {', '.join(edited[:3])} edited or removed; the tests ran after it")
    if any(r.status == "review" for r in rows):
        notes.append("REVIEW: the machinery that runs or checks cells was changed; read the notebook")
    if result.status == "timeout":
        done = sum(1 for r in rows if r.status in ("pass", "fail", "review"))
        notes.append(f"timeout: stopped after {timeout:g} s; the {done} test cell(s) that finished are kept")
    elif result.status == "memory":
        notes.append(f"stopped: {result.detail}")
    elif result.status == "crashed":
        notes.append(f"crashed: {result.detail}")
    if any(r.get("kernel_died") for r in records):
        died = next(r for r in records if r.get("kernel_died"))
        hint = limit_hint(died, limits)
        notes.append("the kernel died during the run" + (f" ({hint})" if hint else ""))
    for record in records:
        hint = limit_hint(record, limits) if record.get("verdict") == "fail" and not record.get("graded") else ""
        if hint and not record.get("kernel_died"):
            notes.append(f"code cell {int(record.get('cell', 0)) + 1} failed: {hint}")
    stopped = [r for r in records if r.get("timed_out")]
    if stopped:
        notes.append(f"a cell was stopped: {stopped[0].get('message', '')}")
    unenforced = [x for e in result.events if e.get("event") == "limits-not-enforced" for x in e.get("limits", [])]
    if unenforced:
        notes.append("limits not enforced here: " + ", ".join(unenforced))
    if result.survivors:
        notes.append(f"{len(result.survivors)} process(es) outlived the run and were killed")
    rows = [*rows, total(rows, notes, result.seconds, review)]
    return rows


def _cell_rows(
    student: str,
    label: str,
    exercise: str,
    tests: list[GradedCell],
    prepared,
    result: RunResult,
    timeout: float,
    limits: Limits,
    secret_lines: list[str],
) -> list[Row]:
    """Rows decided in the kernel (an exercise without a judge module): a test cell's points from its verdict."""
    rows = []
    for t in tests:
        if t.grade_id in prepared.deleted:
            rows.append(Row(student, label, exercise, t.grade_id, "deleted", 0, t.points, "test cell deleted", ""))
            continue
        record = result.records.get(prepared.code_cell_of[t.grade_id])
        note = prepared.notes.get(t.grade_id, "")
        if record is None:
            status = "timeout" if result.status == "timeout" else "crashed"
            if result.status == "timeout":
                message = f"not finished: the run was stopped after --timeout {timeout:g} s"
            elif result.status == "memory":
                message = f"not finished: the run was stopped at --total-memory-limit {limits.total_memory_gb:g} GB"
            else:
                message = f"not run: {result.detail or 'the runner did not run this cell'}"
            rows.append(Row(student, label, exercise, t.grade_id, status, 0, t.points, note, message))
            continue
        verdict = record.get("verdict", "fail")
        status = verdict if verdict in ("pass", "fail", "review") else "fail"
        if status == "review":
            note = "; ".join(filter(None, [note, "review: the grading machinery was changed"]))
        points = t.points if status == "pass" else 0
        message = _message(record, limits, secret_lines)
        rows.append(Row(student, label, exercise, t.grade_id, status, points, t.points, note, message))
    return rows


def _judged_rows(
    student: str,
    label: str,
    exercise: str,
    tests: list[GradedCell],
    prepared,
    result: RunResult,
    timeout: float,
    limits: Limits,
) -> list[Row]:
    """Rows decided by the judge from the run's exports; the graded cells' own results are hints in the notes."""
    if result.status == "timeout":
        missing = f"the run was stopped after --timeout {timeout:g} s before this task's export"
    elif result.status == "memory":
        missing = f"the run was stopped at --total-memory-limit {limits.total_memory_gb:g} GB before this export"
    else:
        missing = f"the run ended before this task's export ({result.detail or 'no export came back'})"
    cells = {g: result.records.get(n) for g, n in prepared.code_cell_of.items()}
    rows = judging.rows(
        (student, label, exercise), exercise, tests, result.exports, cells, prepared.notes, prepared.deleted, missing
    )
    for row in rows:
        row.message = row.message[:MESSAGE_LIMIT] + ("..." if len(row.message) > MESSAGE_LIMIT else "")
    return rows


def _total(
    student: str,
    label: str,
    exercise: str,
    rows: list[Row],
    possible: float,
    note: str = "",
    seconds: float | None = None,
    review: bool = False,
) -> Row:
    edited = sum(1 for r in rows if "edited" in r.note)
    deleted = sum(1 for r in rows if r.status == "deleted")
    notes = [note] if note else []
    notes += [f"{edited} test cell(s) edited"] if edited else []
    notes += [f"{deleted} test cell(s) deleted"] if deleted else []
    notes += [f"ran in {seconds:.0f} s"] if seconds else []
    status = "review" if review else "total"
    return Row(student, label, exercise, "TOTAL", status, sum(r.points for r in rows), possible, "; ".join(notes), "")


def refused_rows(
    student: str, label: str, exercise: str, tests: list[GradedCell], reason: str, note: str, status: str = "refused"
) -> list[Row]:
    """Rows for an entry that is not graded at all (a symbolic link, a special file; ``status`` says why)."""
    rows = [Row(student, label, exercise, t.grade_id, status, 0, t.points, "", reason) for t in tests]
    total = _total(student, label, exercise, rows, sum(t.points for t in tests), f"{status}: {reason}")
    total.note = "; ".join(filter(None, [note, total.note]))
    return rows + [total]


def grade_folder(
    folder: Path,
    exercise: str,
    hidden: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    profile: str = "quick",
    sources: Path | None = None,
    log=print,
    cell_timeout: float | None = None,
    *,
    isolation: str | Isolation | None = None,
    limits: Limits | None = None,
    report: Path | None = None,
    jobs: int | None = None,
) -> Batch:
    """Grade every submission in ``folder``, ``jobs`` at a time; raises ExerciseError if nothing can be graded.

    ``isolation`` is 'auto', 'bwrap', 'none' or an Isolation (default: $COURSE_GRADE_ISOLATION, else auto);
    ``report`` is where the report will go (kept invisible to the submissions, like the sources); ``jobs``
    defaults to ``batch.default_jobs``. The rows come in the same order whatever ``jobs`` is. A submission
    that breaks the grader itself gets rows saying so, and Ctrl-C returns the rows graded so far (the
    Batch says it was interrupted).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ExerciseError(f"{folder} is not a folder of submissions")
    source = source_path(exercise, sources)
    reference = nbformat.read(source, as_version=4)
    tests = graded_cells(reference, exercise)
    if not tests:
        raise ExerciseError(f"the source of {exercise!r} has no graded test cells")
    by_judge = judging.judged(exercise)
    found = collect(folder)
    if not found.submissions and not found.refused:
        skipped = "; ".join(f"{plain(label)}: {reason}" for label, reason in found.skipped[:3])
        raise ExerciseError(f"no .ipynb files under {plain(folder)}" + (f" (not graded: {skipped})" if skipped else ""))
    if not isinstance(isolation, Isolation):
        try:
            isolation = isolation_for(isolation or default_isolation_mode())
        except RuntimeError as exc:
            raise ExerciseError(str(exc)) from None
    limits = limits or Limits()
    jobs = max(1, int(jobs or default_jobs(limits.total_memory_gb)))
    log(("isolation: " if isolation.isolated else "WARNING: ") + isolation.summary)
    log(f"limits: {limits.describe()}")
    for label, reason in found.skipped:
        log(f"  {plain(label)}: {plain(reason)}")
    entries = [(s, p, str(p.relative_to(folder)), None) for s, p in found.submissions]
    entries += [(s, Path(lbl), lbl, r) for s, lbl, r in found.refused]
    entries.sort(key=lambda e: os.fsencode(e[2]))
    warnings = _several_notebooks(entries, log)
    per_student = {s: sum(1 for e in entries if e[0] == s) for s, *_ in entries}
    invisible = [folder, Path(source).parent, *([Path(report).parent] if report else [])]
    preload = preload_modules(reference)
    log(f"grading {len(entries)} submission(s), {jobs} at a time")
    if by_judge:
        log(f"points: decided by the judge (course_utils/judge/{judge.MODULES[exercise]}.py) outside the sandbox")
    else:
        log(f"points: decided by the test cells in the kernel (the judge has no module for {exercise} yet)")
    with tempfile.TemporaryDirectory(prefix="grade-weights-") as stage:
        weights_home = stage_weights(Path(stage))

        def task(entry):
            """The rows of one entry: refused at once, or read, run and graded."""
            student, path, label, refusal = entry
            count = per_student[student]
            note = f"one of {count} notebooks of {student}" if count > 1 else ""
            if refusal is not None:
                return refused_rows(student, display_name(label), exercise, tests, refusal, note)
            return grade_submission(
                student,
                path,
                exercise,
                tests,
                hidden,
                timeout,
                profile,
                display_name(label),
                cell_timeout,
                isolation=isolation,
                limits=limits,
                invisible=invisible,
                preload=preload,
                weights_home=weights_home,
                extra_note=note,
                log=log,
                reference=reference,
                source=source,
            )

        def failed(index: int, exc: BaseException) -> list[Row]:
            """Rows for an entry on which the grader itself failed."""
            student, _path, label, _ = entries[index]
            reason = f"the grader itself failed on this submission ({type(exc).__name__}: {exc}); grade it by hand"
            return refused_rows(student, display_name(label), exercise, tests, reason, "", status="crashed")

        outcome = run_all(
            [functools.partial(task, entry) for entry in entries],
            jobs,
            [f"{plain(e[0])}: {display_name(e[2])}" for e in entries],
            log,
            failed,
            _summary,
        )
    rows = [row for result in outcome.results if result for row in result]
    not_graded = [display_name(e[2]) for e, result in zip(entries, outcome.results, strict=True) if result is None]
    return Batch(rows, isolation, limits, found.skipped, warnings, not_graded=not_graded)


def _several_notebooks(entries: list, log) -> list[str]:
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


def _summary(rows: list[Row]) -> str:
    """The progress line's end for one submission: its points and TOTAL note, display-safe."""
    last = rows[-1]
    return plain(f"{last.points:g}/{last.points_possible:g}" + (f"  ({last.note})" if last.note else ""))


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
    defaults = Limits()
    limits = parser.add_argument_group("isolation and limits (per submission)")
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
    args = parser.parse_args(argv)
    chosen = Limits(
        memory_gb=args.memory_limit,
        file_mb=args.file_limit,
        disk_mb=args.disk_limit,
        processes=args.process_limit,
        cpu_seconds=args.cpu_limit or int(2 * args.timeout),
        output_kb=args.output_limit,
        total_memory_gb=args.total_memory_limit,
    )
    stem = args.output or project_root() / "build" / "grades" / args.exercise
    try:
        batch = grade_folder(
            args.submissions,
            args.exercise,
            args.hidden,
            args.timeout,
            args.profile,
            args.sources,
            cell_timeout=args.cell_timeout,
            isolation=args.isolation,
            limits=chosen,
            report=stem,
            jobs=args.jobs,
        )
    except (ExerciseError, OSError, nbformat.ValidationError, json.JSONDecodeError) as exc:
        print(f"error: could not grade: {exc}", file=sys.stderr)
        return 2
    try:
        csv_path, md_path = write_report(batch, stem, args.exercise, args.hidden)
    except OSError as exc:
        print(f"error: could not write the report to {stem}: {exc}", file=sys.stderr)
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
