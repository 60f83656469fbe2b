"""What the grading runner (``runner.py``) keeps per cell and how it checks the kernel's machinery.

- ``CellRecord``: what happened to one cell, written as one JSON line (``write_record``) to the file descriptor
  in ``COURSE_GRADE_RESULTS_FD`` as soon as the cell is done, so a run stopped by the overall time limit keeps
  the cells that finished. Messages hold the exception line only (``exception_line``: ``ename: evalue``),
  never a traceback, so the source of hidden tests never reaches them.
- The machinery checks: ``probe_expression`` asks the kernel for its fingerprint (``kernel_probe.state``),
  ``take_baseline`` keeps the one taken before the first cell, and ``judge_probe`` (with ``compare``) puts
  anything changed since (an input transformer, a traceback hook, a patched checks function...) into the
  record's ``tamper`` list, which makes a graded cell ``review``.
- ``protect_process``: the kernel runs with the runner's uid, and could otherwise open the runner's file
  descriptors through /proc or read its memory.

Importing the module changes nothing (its functions are tested on their own).
"""

from __future__ import annotations

import ast
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty

PROBE_KEY = "course_grader_probe"
PACKAGE_DIR = str(Path(__file__).resolve().parents[1])
PROBE_TEXT_LIMIT = 4 * 1024 * 1024  # an honest answer is ~150 KB; a bigger one is refused unread

_RESULTS_FD = int(os.environ["COURSE_GRADE_RESULTS_FD"]) if os.environ.get("COURSE_GRADE_RESULTS_FD") else None
OUTPUT_LIMIT = int(os.environ.get("COURSE_GRADE_OUTPUT_KB", "256")) * 1024
_PRELOAD = tuple(filter(None, os.environ.get("COURSE_GRADE_PRELOAD", "").split(",")))
try:
    _BINDINGS = {str(k): str(v) for k, v in json.loads(os.environ.get("COURSE_GRADE_BINDINGS") or "{}").items()}
except (ValueError, AttributeError):
    _BINDINGS = {}
try:  # helper functions of the instructor's cells: name -> sha256 of their source
    _DEFINED = {str(k): str(v) for k, v in json.loads(os.environ.get("COURSE_GRADE_DEFINED") or "{}").items()}
except (ValueError, AttributeError):
    _DEFINED = {}


def protect_process() -> None:
    """Make this process non-dumpable (Linux): a same-uid process can then neither read its memory nor open its fds."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0
        except (OSError, AttributeError):
            pass


@dataclass
class CellRecord:
    """What happened to one cell; written as a JSON line when the cell is done."""

    cell: int
    graded: bool
    verdict: str = "fail"  # pass | fail | review
    reason: str = ""  # error | hidden-error | timeout | kernel-died | not-run | no-reply | tampered | ...
    message: str = ""
    status: str | None = None  # the kernel's execute_reply status
    ename: str = ""
    evalue: str = ""
    tamper: list[str] = field(default_factory=list)
    timed_out: bool = False
    kernel_died: bool = False
    kernel_exit: int | None = None
    vm_peak_kb: int | None = None
    output_truncated: bool = False
    error_shown: bool = False
    seconds: float = 0.0
    event: str = "cell"


class _State:
    """The baseline of the current notebook's kernel (one per runner process)."""

    baseline: dict | None = None
    baseline_error: str = ""
    first_seen: dict = {}


STATE = _State()


def write_record(record: dict) -> None:
    """One JSON line to the results pipe (nothing when run outside the grader)."""
    if _RESULTS_FD is None:
        return
    data = (json.dumps(record) + "\n").encode()
    try:
        while data:
            data = data[os.write(_RESULTS_FD, data) :]
    except OSError:
        pass


def exception_line(ename: str, evalue: str) -> str:
    """'Name: value' as the kernel reported it (no traceback, so no source lines)."""
    ename, evalue = str(ename or "").strip(), str(evalue or "").strip()
    return f"{ename}: {evalue}" if evalue else ename


def read_vm_peak(pid: int | None) -> int | None:
    """The peak address space (VmPeak, KB) of process ``pid``, or None."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def probe_expression(preload: tuple[str, ...] = ()) -> str:
    """The user_expression that makes the kernel evaluate ``kernel_probe.state`` (importing ``preload`` first)."""
    module = "__import__('course_utils.tools.kernel_probe', fromlist=['state'])"
    return f"{module}.state({PACKAGE_DIR!r}, {preload!r}, {_BINDINGS!r}, {tuple(_DEFINED)!r})"


def take_baseline(run_probe) -> None:
    """The kernel's fingerprint before the first cell, into STATE (or why there is none); ``run_probe(preload,
    timeout)`` asks the kernel and returns its user_expressions."""
    STATE.baseline, STATE.baseline_error, STATE.first_seen = None, "", {}
    try:
        STATE.baseline = parse_probe(run_probe(_PRELOAD, 120))
        if STATE.baseline is None:
            STATE.baseline_error = "the kernel did not answer the grader's first check"
    except Empty:
        STATE.baseline_error = "the kernel did not answer the grader's first check in time"
    except Exception as exc:  # noqa: BLE001 - a kernel that died at once: the cells report it
        STATE.baseline_error = f"the grader's first check failed ({type(exc).__name__})"


def parse_probe(expressions: dict) -> dict | None:
    """The fingerprint in the kernel's user_expressions, or None when it is missing, failed or too big."""
    value = expressions.get(PROBE_KEY, {}) if isinstance(expressions, dict) else {}
    if not isinstance(value, dict) or value.get("status") != "ok":
        return None
    text = value.get("data", {}).get("text/plain", "")
    if not isinstance(text, str) or len(text) > PROBE_TEXT_LIMIT:
        return None
    try:
        parsed = json.loads(ast.literal_eval(text))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def compare(
    baseline: dict, now: dict, first_seen: dict, package_dir: str = PACKAGE_DIR, defined: dict | None = None
) -> list[str]:
    """What changed since the baseline: keys whose value differs, course_utils loaded from elsewhere, foreign code,
    and names the instructor's cells imported that now stand for something else."""
    defined = _DEFINED if defined is None else defined
    changed = [
        key for key, value in baseline.items() if now.get(key) != value and not key.startswith(("binding.", "defined."))
    ]
    for key, value in now.items():
        if key.startswith("defined."):
            name = key[len("defined.") :]
            if value not in ("missing", defined.get(name)):
                changed.append(f"the instructor's function {name!r} was redefined")
            continue
        if key.startswith("binding."):
            if value not in ("ok", "missing", "unknown"):
                changed.append(f"the name {key[len('binding.') :]!r} {value}, not what the notebook imported")
            continue
        if key in baseline:
            continue
        if key.startswith("foreign."):
            changed.append(f"{key[len('foreign.') :]} (defined in {value})")
        elif key.startswith("file.") and value and not str(value).startswith(package_dir + os.sep):
            changed.append(f"{key[len('file.') :]} loaded from {value}")
        elif key == "ipython.startup-files" and value:
            changed.append(f"IPython startup files {value}")
        elif "-instance." in key:  # a method set on the object itself: there was none at the start
            changed.append(key)
        elif key in first_seen:
            if first_seen[key] != value:
                changed.append(key)
        else:
            first_seen[key] = value
    return sorted(changed)


def judge_probe(record: CellRecord, expressions: dict, when: str) -> None:
    """Add to ``record.tamper`` what changed since the baseline, per the kernel's answer ``expressions``."""
    if STATE.baseline is None:
        record.tamper.append(STATE.baseline_error or "no baseline check of the kernel")
        return
    now = parse_probe(expressions)
    if now is None:
        record.tamper.append(f"the kernel did not return the grader's check {when}")
        return
    for key in compare(STATE.baseline, now, STATE.first_seen):
        entry = f"{key} ({when})"
        if key not in " ".join(record.tamper):
            record.tamper.append(entry)
