"""The grader's side of the judge: which exercises it scores, the export plan sent in, and the rows it decides.

For an exercise the judge knows (``judged``: listed in ``judge.MODULES`` and its module exists), a test row's
points are the judge's verdict on the data the run exported (``judge.score``); the notebook's own graded cells
are the students' self-checks, and what they reported is kept in the row's note as a hint. An exercise without
a judge module keeps the in-kernel verdicts (``grade.py``).
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import json

from .. import judge
from .exercises import GradedCell
from .grade_report import Row

EXPORTS_FILE = "judge-exports.json"  # in the run folder; the runner reads and deletes it before the kernel starts
HINT_LIMIT = 160


def judged(exercise: str) -> bool:
    """True when the judge scores ``exercise``: it is in ``judge.MODULES`` and that module exists.

    The one switch between judged points and the in-kernel verdicts. A module that exists but fails to import
    raises here (a broken judge is never silently replaced by the in-kernel cells).
    """
    if exercise not in judge.MODULES:
        return False
    if importlib.util.find_spec(f"{judge.__name__}.{judge.MODULES[exercise]}") is None:
        return False
    judge.tasks(exercise)  # imports it: an error in the judge's module surfaces now
    return True


def export_plan(exercise: str) -> bytes:
    """The JSON the runner reads: the prelude and each task's export code, in the notebook's order."""
    tasks = [{"grade_id": t.grade_id, "export": t.export} for t in judge.tasks(exercise).values()]
    plan = {"prelude": judge.export_prelude(), "tasks": tasks, "limit": judge.EXPORT_LIMIT}
    return json.dumps(plan).encode("utf-8")


def decode_exports(records: list[dict]) -> dict[str, tuple[bytes | None, str]]:
    """grade id -> (exported bytes or None, why none) from the runner's export records (the last one of each id)."""
    out: dict[str, tuple[bytes | None, str]] = {}
    for record in records:
        if record.get("event") != "export":
            continue
        data, message = record.get("data"), str(record.get("message", ""))
        try:
            raw = base64.b64decode(data, validate=True) if isinstance(data, str) else None
        except (binascii.Error, ValueError):
            raw, message = None, "the export could not be decoded"
        out[str(record.get("grade_id", ""))] = (raw, message)
    return out


def self_check(record: dict | None, deleted: bool) -> str:
    """A short hint on what the notebook's own graded cell reported (it never decides points here)."""
    if deleted:
        return "self-check cell deleted"
    if record is None:
        return "self-check not run"
    verdict = record.get("verdict")
    if verdict == "pass":
        return "self-check passed"
    if verdict == "review":
        return "self-check: the machinery was changed (" + "; ".join(record.get("tamper", [])[:2]) + ")"
    message = str(record.get("message", ""))
    return "self-check failed" + (f": {message.splitlines()[0][:HINT_LIMIT]}" if message else "")


def rows(
    key: tuple[str, str, str],
    exercise: str,
    tests: list[GradedCell],
    exports: dict[str, tuple[bytes | None, str]],
    cells: dict[str, dict | None],
    notes: dict[str, str],
    deleted: set[str],
    missing: str,
) -> list[Row]:
    """One row per test, its points from the judge; ``key`` is (student, label, exercise shown).

    ``cells`` holds the self-check records by grade id, ``notes`` the preparation's notes (edited cells),
    ``missing`` says why a task has no export when the run did not reach it.
    """
    student, label, shown = key
    out = []
    for test in tests:
        data, why = exports.get(test.grade_id, (None, missing))
        if data is None:
            verdict = judge.Verdict(False, f"nothing was exported: {why or missing}")
        else:
            verdict = judge.score(exercise, test.grade_id, data)
        hint = self_check(cells.get(test.grade_id), test.grade_id in deleted)
        note = "; ".join(filter(None, [notes.get(test.grade_id, ""), hint]))
        status = "pass" if verdict.passed else "fail"
        points = test.points if verdict.passed else 0
        out.append(Row(student, label, shown, test.grade_id, status, points, test.points, note, verdict.message))
    return out
