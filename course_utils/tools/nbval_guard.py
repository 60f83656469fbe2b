"""pytest plugin for the grader: judge each cell by the kernel's own reply, watch the machinery, report as it goes.

Loaded with ``-p course_utils.tools.nbval_guard`` next to ``--nbval-lax``. It

- fails a cell at once when its kernel dies, instead of waiting out the timeout (nbval would wait);
- records the kernel's ``execute_reply`` of every cell: a cell passes only when that reply says ``ok``. nbval
  looks at the error *output* a cell shows, which a notebook can hide (``showtraceback`` replaced), while
  the reply status is set by the kernel from the exception itself;
- fingerprints the kernel's machinery (``kernel_probe.state``) before the first cell and around every graded
  test cell (cell metadata ``grade``); anything changed since the baseline (an input transformer, a
  traceback hook, a patched checks function...) makes the cell ``review``;
- caps what each cell prints at ``COURSE_GRADE_OUTPUT_KB``, and tracks the kernel's peak address space and
  exit status, so that a limit that was hit can be named;
- writes one JSON line per cell, as soon as the cell is done, to the file descriptor in
  ``COURSE_GRADE_RESULTS_FD``: a run stopped by the overall time limit keeps the cells that finished. The
  messages hold the exception line only (``ename: evalue``), never a traceback, so the source of hidden
  tests never reaches them through us.

Loaded as a plugin, it first makes the pytest process non-dumpable (Linux): the kernel runs with the same uid,
and may otherwise open this process's file descriptors through /proc or read its memory. Importing the module
changes nothing else (its functions are tested on their own).
"""

from __future__ import annotations

import ast
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import Empty

# jsonschema imports the optional rfc3987_syntax at import time, which builds a grammar (1 to 3 s of every run);
# nbformat's notebook schema uses no IRI formats, so the grading process goes without it.
sys.modules.setdefault("rfc3987_syntax", None)

import pytest  # noqa: E402
from nbval.kernel import RunningKernel  # noqa: E402

POLL_SECONDS = 1.0
PROBE_KEY = "course_grader_probe"
PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


def protect_process() -> None:
    """Make this process non-dumpable (Linux): a same-uid process can then neither read its memory nor open its fds."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0
        except (OSError, AttributeError):
            pass


_RESULTS_FD = int(os.environ["COURSE_GRADE_RESULTS_FD"]) if os.environ.get("COURSE_GRADE_RESULTS_FD") else None
_OUTPUT_LIMIT = int(os.environ.get("COURSE_GRADE_OUTPUT_KB", "256")) * 1024
_PRELOAD = tuple(filter(None, os.environ.get("COURSE_GRADE_PRELOAD", "").split(",")))
try:
    _BINDINGS = {str(k): str(v) for k, v in json.loads(os.environ.get("COURSE_GRADE_BINDINGS") or "{}").items()}
except (ValueError, AttributeError):
    _BINDINGS = {}
try:  # helper functions of the instructor's cells: name -> sha256 of their source
    _DEFINED = {str(k): str(v) for k, v in json.loads(os.environ.get("COURSE_GRADE_DEFINED") or "{}").items()}
except (ValueError, AttributeError):
    _DEFINED = {}
PROBE_TEXT_LIMIT = 4 * 1024 * 1024  # an honest answer is ~150 KB; a bigger one is refused unread


class KernelDied(RuntimeError):
    """The kernel process ended while a cell was running."""


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
    """The plugin's state for the current notebook (one per pytest process)."""

    baseline: dict | None = None
    baseline_error: str = ""
    first_seen: dict = {}
    record: CellRecord | None = None
    msg_id: str | None = None
    output_bytes: dict = {}
    last_vm_peak: int | None = None
    kernel_pid: int | None = None


STATE = _State()


def write_record(record: dict) -> None:
    """One JSON line to the results pipe (nothing when the plugin runs outside the grader)."""
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


# ------------------------------------------------------------------------------- kernel side effects
def _kernel_process(kernel: RunningKernel):
    manager = getattr(kernel, "km", None)
    provisioner = getattr(manager, "provisioner", None)
    return getattr(provisioner, "process", None) or getattr(manager, "kernel", None)


def _read_vm_peak(pid: int | None) -> int | None:
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


def _note_vm(kernel: RunningKernel) -> None:
    process = _kernel_process(kernel)
    peak = _read_vm_peak(getattr(process, "pid", None))
    if peak:
        STATE.last_vm_peak = max(STATE.last_vm_peak or 0, peak)


def _cap_output(msg: dict) -> None:
    """Blank the content of a cell's output messages beyond the output limit (the cell still runs)."""
    kind = msg.get("msg_type")
    if kind not in ("stream", "display_data", "execute_result", "error", "update_display_data"):
        return
    parent = msg.get("parent_header", {}).get("msg_id")
    content = msg.get("content", {})
    size = len(json.dumps(content, default=str))
    used = STATE.output_bytes.get(parent, 0) + size
    STATE.output_bytes[parent] = used
    if used > _OUTPUT_LIMIT:
        if kind == "stream":
            content["text"] = ""
        elif kind == "error":
            content["traceback"] = []
        else:
            content["data"] = {"text/plain": ""}
        if STATE.record is not None:
            STATE.record.output_truncated = True


_original_get_message = RunningKernel.get_message


def _get_message(self, stream, timeout=None):
    """RunningKernel.get_message that checks every second that the kernel is still alive, and caps output."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = POLL_SECONDS if deadline is None else max(0.0, min(POLL_SECONDS, deadline - time.monotonic()))
        try:
            msg = _original_get_message(self, stream, timeout=step)
        except Empty:
            _note_vm(self)
            if not self.is_alive():
                if STATE.record is not None:
                    STATE.record.kernel_died = True
                    process = _kernel_process(self)
                    STATE.record.kernel_exit = process.poll() if process is not None else None
                raise KernelDied("Kernel died while running this cell (os._exit, out of memory, or a crash)") from None
            if deadline is not None and time.monotonic() >= deadline:
                raise
            continue
        if stream == "iopub":
            _cap_output(msg)
            if (
                msg.get("msg_type") == "error"
                and STATE.record is not None
                and msg.get("parent_header", {}).get("msg_id") == STATE.msg_id
            ):
                STATE.record.error_shown = True
        return msg


def _probe_expression(preload: tuple[str, ...] = ()) -> str:
    module = "__import__('course_utils.tools.kernel_probe', fromlist=['state'])"
    return f"{module}.state({PACKAGE_DIR!r}, {preload!r}, {_BINDINGS!r}, {tuple(_DEFINED)!r})"


def _execute_cell_input(self, cell_input, allow_stdin=None):
    """nbval's execute, with the probe as a user_expression (the kernel evaluates it after the cell, if it ran)."""
    expressions = {PROBE_KEY: _probe_expression()} if STATE.record is not None and STATE.record.graded else {}
    msg_id = self.kc.execute(
        cell_input, store_history=False, allow_stdin=allow_stdin, stop_on_error=False, user_expressions=expressions
    )
    STATE.msg_id = msg_id
    return msg_id


def _reply_for(kernel: RunningKernel, msg_id: str, timeout: float | None) -> dict:
    """The shell reply to ``msg_id`` (raises Empty on timeout)."""
    while True:
        msg = kernel.get_message(stream="shell", timeout=timeout)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


def _await_reply(self, msg_id, timeout=None):
    """nbval's await_reply, keeping the reply of the current cell."""
    try:
        msg = _reply_for(self, msg_id, timeout)
    except Empty:
        if STATE.record is not None and msg_id == STATE.msg_id:
            STATE.record.timed_out = True
        raise
    content = msg.get("content", {})
    if content.get("status") == "aborted":
        raise RuntimeError("Kernel aborted execution request")
    if STATE.record is not None and msg_id == STATE.msg_id:
        record = STATE.record
        record.status = content.get("status")
        record.ename, record.evalue = str(content.get("ename", "")), str(content.get("evalue", ""))
        if record.graded and record.status == "ok":
            _judge_probe(record, content.get("user_expressions", {}), "while it ran")


_original_init = RunningKernel.__init__


def _init(self, *args, **kwargs):
    """Start the kernel as nbval does, then take the baseline fingerprints before any cell runs."""
    _original_init(self, *args, **kwargs)
    process = _kernel_process(self)
    STATE.kernel_pid = getattr(process, "pid", None)
    take_baseline(lambda preload, timeout: _probe(self, preload, timeout=timeout))


def take_baseline(run_probe) -> None:
    """The kernel's fingerprint before the first cell, into STATE (or why there is none); ``run_probe(preload,
    timeout)`` asks the kernel (nbval's kernel or an nbclient client: the runner uses this too)."""
    STATE.baseline, STATE.baseline_error, STATE.first_seen = None, "", {}
    try:
        STATE.baseline = _parse_probe(run_probe(_PRELOAD, 120))
        if STATE.baseline is None:
            STATE.baseline_error = "the kernel did not answer the grader's first check"
    except Empty:
        STATE.baseline_error = "the kernel did not answer the grader's first check in time"
    except Exception as exc:  # noqa: BLE001 - a kernel that died at once: the cells report it
        STATE.baseline_error = f"the grader's first check failed ({type(exc).__name__})"


def _probe(kernel: RunningKernel, preload: tuple[str, ...], timeout: float) -> dict:
    """Run the probe alone (an empty, silent execute) and return its user_expressions."""
    msg_id = kernel.kc.execute(
        "", silent=True, store_history=False, user_expressions={PROBE_KEY: _probe_expression(preload)}
    )
    return _reply_for(kernel, msg_id, timeout).get("content", {}).get("user_expressions", {})


def _parse_probe(expressions: dict) -> dict | None:
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


def _judge_probe(record: CellRecord, expressions: dict, when: str) -> None:
    if STATE.baseline is None:
        record.tamper.append(STATE.baseline_error or "no baseline check of the kernel")
        return
    now = _parse_probe(expressions)
    if now is None:
        record.tamper.append(f"the kernel did not return the grader's check {when}")
        return
    for key in compare(STATE.baseline, now, STATE.first_seen):
        entry = f"{key} ({when})"
        if key not in " ".join(record.tamper):
            record.tamper.append(entry)


def install() -> None:
    """Put the guard's versions of nbval's kernel methods in place (what loading the plugin does)."""
    RunningKernel.get_message = _get_message
    RunningKernel.execute_cell_input = _execute_cell_input
    RunningKernel.await_reply = _await_reply
    RunningKernel.__init__ = _init


def pytest_configure(config):
    """Loaded as a plugin: protect this process, then watch every kernel nbval starts."""
    protect_process()
    install()


# ------------------------------------------------------------------------------------- pytest hooks
def _is_cell(item) -> bool:
    return type(item).__name__ == "IPyNbCell" and hasattr(item, "cell_num")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Around each nbval cell: a record, the probe before a graded cell, one JSON line when it is done."""
    if not _is_cell(item):
        yield
        return
    graded = isinstance(item.cell.get("metadata", {}).get("grade"), dict)
    record = CellRecord(cell=item.cell_num, graded=graded)
    STATE.record, STATE.msg_id = record, None
    item._grade_reports = {}
    start = time.perf_counter()
    yield
    record.seconds = round(time.perf_counter() - start, 3)
    _note_vm_item(item)
    record.vm_peak_kb = STATE.last_vm_peak
    _finish(record, item._grade_reports, float(getattr(item.config.option, "nbval_cell_timeout", 0) or 0))
    write_record(asdict(record))
    STATE.record = None


def _note_vm_item(item) -> None:
    kernel = getattr(item.parent, "kernel", None)
    if kernel is not None and hasattr(kernel, "km"):
        _note_vm(kernel)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Before a graded cell runs: check the machinery (a change made by an earlier cell shows here)."""
    if _is_cell(item) and STATE.record is not None and STATE.record.graded:
        kernel = item.parent.kernel
        if kernel is not None and kernel.is_alive():
            try:
                _judge_probe(STATE.record, _probe(kernel, (), timeout=60), "before it ran")
            except Empty:
                STATE.record.tamper.append("the kernel did not answer the grader's check before the cell")
            except KernelDied:
                pass  # nbval reports the dead kernel itself
            except Exception as exc:  # noqa: BLE001 - a broken connection, say
                STATE.record.tamper.append(f"the grader's check failed before the cell ({type(exc).__name__})")
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report; make a cell whose kernel reply was not 'ok' fail in pytest's eyes too."""
    outcome = yield
    if not _is_cell(item):
        return
    report = outcome.get_result()
    item._grade_reports[call.when] = (report.outcome, _nbval_reason(call))
    record = STATE.record
    if call.when == "call" and record is not None and report.passed and record.status not in (None, "ok"):
        report.outcome = "failed"
        shown = exception_line(record.ename, record.evalue)
        report.longrepr = f"the kernel reported an error the notebook did not show: {shown}"


def _nbval_reason(call) -> str:
    """A short reason from nbval's exception, never its text with the cell's source."""
    if call.excinfo is None:
        return ""
    exc = call.excinfo.value
    text = str(exc)
    if isinstance(exc, KernelDied):
        return "kernel-died"
    if "Kernel dead on test start" in text:
        return "kernel-dead-before"
    if "Timeout of" in text:
        return "timeout"
    if type(exc).__name__ == "NbCellError":
        return "error"
    if call.when == "setup":
        return f"setup: {type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}"
    return f"{type(exc).__name__}"


def _finish(record: CellRecord, reports: dict, cell_timeout: float) -> None:
    """The cell's verdict from the kernel's reply, nbval's outcome and the probes."""
    setup = reports.get("setup", ("passed", ""))
    call = reports.get("call")
    if setup[0] != "passed" and call is None:
        record.reason = "not-run"
        record.message = (
            f"not run: the kernel did not start ({setup[1][len('setup: ') :]})"
            if setup[1].startswith("setup:")
            else "not run"
        )
        return
    outcome, reason = call if call else ("failed", "")
    if reason == "kernel-dead-before":
        record.reason, record.message = "not-run", "not run: the kernel had died in an earlier cell"
    elif record.kernel_died or reason == "kernel-died":
        record.kernel_died = True
        record.reason = "kernel-died"
        record.message = "the kernel died while running this cell (os._exit, a crash, or a limit)"
    elif record.timed_out or (record.status == "error" and record.ename == "KeyboardInterrupt" and reason == "timeout"):
        record.timed_out = True
        record.reason = "timeout"
        record.message = f"Timeout of {cell_timeout:g} seconds exceeded while running this cell; it was interrupted"
    elif record.status is None:
        record.reason = "no-reply"
        record.message = "the kernel sent no reply for this cell"
    elif record.status != "ok":
        record.reason = "error" if record.error_shown else "hidden-error"
        record.message = exception_line(record.ename, record.evalue)
        if not record.error_shown:
            record.tamper.append("an error in this cell was hidden from the output (traceback display changed)")
    elif outcome != "passed" and reason not in ("", "error"):
        record.reason, record.message = reason, f"nbval failed the cell ({reason})"
    elif outcome != "passed":
        record.reason, record.message = "error", "the cell showed an error"
    else:
        record.verdict, record.reason = "pass", ""
    if record.tamper and record.graded:
        record.verdict = "review"
        record.reason = record.reason or "tampered"
