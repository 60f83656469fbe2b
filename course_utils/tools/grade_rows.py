"""Turning one submission's run into report rows: a row per test cell, the notes, and the TOTAL row.

An exercise the judge knows gets its rows from the judge's verdicts on the run's exports (``judged.rows``); any
other exercise from the kernel's own reply to each test cell (``cell_rows``). ``run_notes`` says what else the
run showed (a changed machinery, a limit that was hit, a timeout...), and ``total_row`` adds it all up.
"""

from __future__ import annotations

import signal

from . import judged as judging
from .exercises import GradedCell
from .grade_report import Row
from .grade_run import RunResult
from .grade_settings import GradeSettings
from .notebook_reader import ReadNotebook
from .sandbox import Limits
from .submissions import redact

MESSAGE_LIMIT = 600
Who = tuple[str, str, str]  # (student, label, exercise): the first three fields of every row


def limit_hint(record: dict, limits: Limits) -> str:
    """Which resource limit a failed cell most likely hit, in words ('' when none)."""
    lowered = f"{record.get('ename', '')}: {record.get('evalue', '')}".lower()
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


def cut(message: str) -> str:
    """``message`` cut at MESSAGE_LIMIT characters ('...' says it was)."""
    return message[:MESSAGE_LIMIT] + ("..." if len(message) > MESSAGE_LIMIT else "")


def cell_message(record: dict, limits: Limits, secret_lines: list[str]) -> str:
    """A test cell's message in the report: its exception line, a changed machinery, a limit hit; redacted, cut."""
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
    return cut(redact(message, secret_lines))


def rows_all(
    who: Who, tests: list[GradedCell], status: str, message: str, deleted=frozenset(), notes: dict | None = None
) -> list[Row]:
    """The same status and message for every test cell (a deleted one says so instead)."""
    out = []
    for t in tests:
        if t.grade_id in deleted:
            out.append(Row(*who, t.grade_id, "deleted", 0, t.points, "test cell deleted", ""))
        else:
            out.append(Row(*who, t.grade_id, status, 0, t.points, (notes or {}).get(t.grade_id, ""), message))
    return out


def not_run_message(result: RunResult, settings: GradeSettings) -> str:
    """Why a test cell has no record: the run was stopped, or ended before it."""
    if result.status == "timeout":
        return f"not finished: the run was stopped after --timeout {settings.timeout:g} s"
    if result.status == "memory":
        return f"not finished: the run was stopped at --total-memory-limit {settings.limits.total_memory_gb:g} GB"
    return f"not run: {result.detail or 'the runner did not run this cell'}"


def cell_rows(
    who: Who, tests: list[GradedCell], prepared: ReadNotebook, result: RunResult, settings: GradeSettings, secret: list
) -> list[Row]:
    """Rows decided in the kernel (an exercise without a judge module): a test cell's points from its verdict."""
    rows = []
    for t in tests:
        if t.grade_id in prepared.deleted:
            rows.append(Row(*who, t.grade_id, "deleted", 0, t.points, "test cell deleted", ""))
            continue
        record = result.records.get(prepared.code_cell_of[t.grade_id])
        note = prepared.notes.get(t.grade_id, "")
        if record is None:
            status = "timeout" if result.status == "timeout" else "crashed"
            rows.append(Row(*who, t.grade_id, status, 0, t.points, note, not_run_message(result, settings)))
            continue
        verdict = record.get("verdict", "fail")
        status = verdict if verdict in ("pass", "fail", "review") else "fail"
        if status == "review":
            note = "; ".join(filter(None, [note, "review: the grading machinery was changed"]))
        points = t.points if status == "pass" else 0
        message = cell_message(record, settings.limits, secret)
        rows.append(Row(*who, t.grade_id, status, points, t.points, note, message))
    return rows


def judged_rows(
    who: Who, tests: list[GradedCell], prepared: ReadNotebook, result: RunResult, settings: GradeSettings
) -> list[Row]:
    """Rows decided by the judge from the run's exports; the graded cells' own results are hints in the notes."""
    if result.status == "timeout":
        missing = f"the run was stopped after --timeout {settings.timeout:g} s before this task's export"
    elif result.status == "memory":
        limit = settings.limits.total_memory_gb
        missing = f"the run was stopped at --total-memory-limit {limit:g} GB before this export"
    else:
        missing = f"the run ended before this task's export ({result.detail or 'no export came back'})"
    cells = {g: result.records.get(n) for g, n in prepared.code_cell_of.items()}
    rows = judging.rows(who, settings.exercise, tests, result.exports, cells, prepared.notes, prepared.deleted, missing)
    for row in rows:
        row.message = cut(row.message)
    return rows


def review_notes(prepared: ReadNotebook, result: RunResult, rows: list[Row], by_judge: bool) -> tuple[list[str], bool]:
    """The notes that send a submission to review (a changed machinery, start-up files, edited instructor cells)."""
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
    if prepared.edited:
        review = True
        notes.append(
            f"REVIEW: the instructor's {', '.join(prepared.edited[:3])} edited or removed; the tests ran after it"
        )
    if any(r.status == "review" for r in rows):
        notes.append("REVIEW: the machinery that runs or checks cells was changed; read the notebook")
    return notes, review


def run_notes(result: RunResult, rows: list[Row], settings: GradeSettings) -> list[str]:
    """The notes on how the run went: stopped, crashed, a dead kernel, a limit hit, survivors."""
    limits, records, notes = settings.limits, list(result.records.values()), []
    if result.status == "timeout":
        done = sum(1 for r in rows if r.status in ("pass", "fail", "review"))
        notes.append(f"timeout: stopped after {settings.timeout:g} s; the {done} test cell(s) that finished are kept")
    elif result.status == "memory":
        notes.append(f"stopped: {result.detail}")
    elif result.status == "crashed":
        notes.append(f"crashed: {result.detail}")
    if any(r.get("kernel_died") for r in records):
        hint = limit_hint(next(r for r in records if r.get("kernel_died")), limits)
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
    return notes


def total_row(
    who: Who, rows: list[Row], possible: float, note: str = "", seconds: float | None = None, review: bool = False
) -> Row:
    """The TOTAL row: the points of ``rows``, ``note`` and how many test cells were edited or deleted."""
    edited = sum(1 for r in rows if "edited" in r.note)
    deleted = sum(1 for r in rows if r.status == "deleted")
    notes = [note] if note else []
    notes += [f"{edited} test cell(s) edited"] if edited else []
    notes += [f"{deleted} test cell(s) deleted"] if deleted else []
    notes += [f"ran in {seconds:.0f} s"] if seconds else []
    status = "review" if review else "total"
    return Row(*who, "TOTAL", status, sum(r.points for r in rows), possible, "; ".join(notes), "")


def refused_rows(
    student: str, label: str, exercise: str, tests: list[GradedCell], reason: str, note: str, status: str = "refused"
) -> list[Row]:
    """Rows for an entry that is not graded at all (a symbolic link, a special file; ``status`` says why)."""
    who = (student, label, exercise)
    rows = [Row(*who, t.grade_id, status, 0, t.points, "", reason) for t in tests]
    total = total_row(who, rows, sum(t.points for t in tests), f"{status}: {reason}")
    total.note = "; ".join(filter(None, [note, total.note]))
    return rows + [total]
