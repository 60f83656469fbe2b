"""Run a prepared submission with nbclient's public API, report each cell, and hand the judge's exports out.

    python -m course_utils.tools.runner submission.ipynb --cell-timeout S [--exports FILE]   (inside the sandbox)

nbclient executes the notebook (``NotebookClient.execute_cell``): a cell that runs past ``--cell-timeout``
is interrupted (``interrupt_on_timeout``) and the next cells go on; a kernel that dies raises
``DeadKernelError`` and the remaining cells are "not run". Each cell's verdict comes from the kernel's
``execute_reply``, handed over by the ``on_cell_executed`` hook, not from the outputs it showed. Around every
graded cell a fingerprint of the kernel's machinery (``kernel_probe``, compared by ``kernel_checks.compare``)
marks a change for review. Outputs beyond ``COURSE_GRADE_OUTPUT_KB`` per cell are dropped as they arrive
(``output`` is overridden). One JSON line per cell (``kernel_checks.CellRecord``) goes to the results pipe,
which the grader reads.

The points of an exercise the judge knows (``course_utils.judge``) are decided outside this sandbox, from data
exported here. ``--exports FILE`` names a JSON file the grader put in the run folder: the prelude that defines
``course_export`` and one export cell per graded task. The runner reads it and deletes it before the kernel
starts, so the student's code never sees it. After the notebook's cells, each export runs as one more cell
(with the cell timeout) that calls the student's functions with the judge's inputs and writes plain data to a
file in a fresh folder; the runner reads that file as soon as the cell's reply arrives, before any later code
of the student's runs, removes it, and writes its bytes (base64) as an ``export`` record to the results pipe.
Why the kernel cannot forge or rewrite what leaves: the pipe's write end was opened by the launcher and handed
only to this process (the kernel is started with every other file descriptor closed), and this process is
non-dumpable (``protect_process``): a process of the same uid can neither open its descriptors through /proc
nor read or write its memory. A file is accepted only from a cell whose own reply says it finished; a file
planted earlier is removed before that cell runs. What the kernel can still do is lie *while* the export
runs (it is the student's process); that is why the judge receives plain data only, loads it into its own
objects, and measures what matters (accuracy) itself.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from dataclasses import asdict
from queue import Empty

# jsonschema imports the optional rfc3987_syntax at import time, which builds a grammar (1 to 3 s of every run);
# nbformat's notebook schema uses no IRI formats, so the grading process goes without it.
sys.modules.setdefault("rfc3987_syntax", None)

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbclient.exceptions import DeadKernelError  # noqa: E402
from nbclient.util import run_sync  # noqa: E402

from . import kernel_checks as checks  # noqa: E402
from .kernel_checks import CellRecord, exception_line, write_record  # noqa: E402

TIMEOUT_NAME = "CellTimeout"


class GradingClient(NotebookClient):
    """nbclient's client that keeps each cell's execute_reply and at most the output limit of each cell."""

    def __init__(self, nb, **kwargs):
        super().__init__(nb, on_cell_executed=self._keep_reply, **kwargs)
        self.replies: dict[int, dict] = {}
        self.output_bytes: dict[int, int] = {}
        self.truncated: set[int] = set()

    def _keep_reply(self, cell, cell_index, execute_reply):
        self.replies[cell_index] = execute_reply.get("content", {}) if isinstance(execute_reply, dict) else {}

    def output(self, outs, msg, display_id, cell_index):
        """nbclient's output handler, dropping what a cell prints beyond the output limit."""
        used = self.output_bytes.get(cell_index, 0) + len(json.dumps(msg.get("content", {}), default=str))
        self.output_bytes[cell_index] = used
        if used > checks.OUTPUT_LIMIT and msg.get("msg_type") != "error":
            self.truncated.add(cell_index)
            return None
        return super().output(outs, msg, display_id, cell_index)


def kernel_process(client: NotebookClient):
    """The kernel's Popen (for its exit status and peak address space), or None."""
    provisioner = getattr(client.km, "provisioner", None)
    return getattr(provisioner, "process", None)


def probe(client: NotebookClient, preload: tuple[str, ...], timeout: float) -> dict:
    """The kernel's fingerprint (kernel_probe.state) from a silent execute; raises Empty on timeout."""
    expressions = {checks.PROBE_KEY: checks.probe_expression(preload)}
    msg_id = client.kc.execute("", silent=True, store_history=False, user_expressions=expressions)
    deadline = time.monotonic() + timeout
    while True:
        msg = run_sync(client.kc.get_shell_msg)(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg.get("content", {}).get("user_expressions", {})


def check(client: NotebookClient, record: CellRecord, when: str) -> None:
    """Compare the machinery with the baseline now; a change goes into ``record.tamper``."""
    try:
        expressions = probe(client, (), timeout=60)
    except Empty:
        record.tamper.append(f"the kernel did not answer the grader's check {when}")
        return
    except Exception as exc:  # noqa: BLE001 - a dead kernel or a broken connection
        record.tamper.append(f"the grader's check failed {when} ({type(exc).__name__})")
        return
    checks.judge_probe(record, expressions, when)


def run_cell(client: GradingClient, cell, index: int, record: CellRecord, cell_timeout: float) -> bool:
    """Execute one code cell and fill ``record`` from its reply; False when the kernel died."""
    start = time.perf_counter()
    alive = True
    try:
        client.execute_cell(cell, index)
    except DeadKernelError:
        alive = False
    except Exception as exc:  # noqa: BLE001 - anything nbclient raises is this cell's failure, not ours
        record.reason, record.message = "runner", f"the cell could not be run ({type(exc).__name__})"
    record.seconds = round(time.perf_counter() - start, 3)
    process = kernel_process(client)
    record.vm_peak_kb = checks.read_vm_peak(getattr(process, "pid", None))
    record.output_truncated = index in client.truncated
    reply = client.replies.get(index)
    if not alive or (process is not None and process.poll() is not None):
        record.kernel_died, record.kernel_exit = True, process.poll() if process is not None else None
        record.reason = "kernel-died"
        record.message = "the kernel died while running this cell (os._exit, a crash, or a limit)"
    elif reply is not None:
        record.status = reply.get("status")
        record.ename, record.evalue = str(reply.get("ename", "")), str(reply.get("evalue", ""))
        record.error_shown = any(output.get("output_type") == "error" for output in cell.get("outputs", []))
        record.timed_out = record.ename == TIMEOUT_NAME
    cell.outputs = []  # judged: free what it printed
    return not record.kernel_died


def verdict(record: CellRecord, cell_timeout: float) -> None:
    """The cell's verdict from its reply and the checks."""
    if record.reason:
        pass
    elif record.timed_out:
        record.reason = "timeout"
        record.message = f"Timeout of {cell_timeout:g} seconds exceeded while running this cell; it was interrupted"
    elif record.status is None:
        record.reason, record.message = "no-reply", "the kernel sent no reply for this cell"
    elif record.status != "ok":
        record.reason = "error" if record.error_shown else "hidden-error"
        record.message = exception_line(record.ename, record.evalue)
        if not record.error_shown:
            record.tamper.append("an error in this cell was hidden from the output (traceback display changed)")
    else:
        record.verdict = "pass"
    if record.tamper and record.graded:
        record.verdict, record.reason = "review", record.reason or "tampered"


def read_exports(path: str | None) -> dict:
    """The export plan the grader left at ``path`` (prelude, tasks, limit), deleted once read; {} without one."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            plan = json.load(handle)
    finally:
        if os.path.exists(path):
            os.unlink(path)
    return plan if isinstance(plan, dict) else {}


def export_cell(prelude: str, code: str, target: str):
    """The cell that runs one task's export in the kernel, writing to ``target``."""
    setup = f"import os as _os\n_os.environ['COURSE_EXPORT_PATH'] = {target!r}\n"
    return nbformat.v4.new_code_cell(setup + prelude + code)


def run_exports(client: GradingClient, nb, plan: dict, alive: bool, cell_timeout: float) -> None:
    """Run each task's export after the notebook and write its bytes (or why there are none) as an export record."""
    folder = tempfile.mkdtemp(prefix="exports-")
    limit = int(plan.get("limit", 256 * 1024**2))
    try:
        for task in plan.get("tasks", []):
            grade_id = str(task.get("grade_id", ""))
            target = os.path.join(folder, f"{len(nb.cells)}.pt")
            if os.path.lexists(target):
                os.unlink(target)
            record = CellRecord(cell=-1, graded=False)
            data, message = None, ""
            if not alive:
                message = "not run: the kernel had died in an earlier cell"
            else:
                cell = export_cell(str(plan.get("prelude", "")), str(task.get("export", "")), target)
                nb.cells.append(cell)
                alive = run_cell(client, cell, len(nb.cells) - 1, record, cell_timeout)
                verdict(record, cell_timeout)
                data, message = take_export(target, record, limit)
            write_record({"event": "export", "grade_id": grade_id, "data": data, "message": message})
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def take_export(target: str, record: CellRecord, limit: int) -> tuple[str | None, str]:
    """The export file's bytes as base64 when its cell finished, else None and why; the file is removed."""
    try:
        if record.verdict != "pass":
            return None, record.message or "the export did not finish"
        try:  # never follow a link, never wait on a pipe: the kernel can put anything at that path
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None, "the export cell finished without exporting anything"
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None, "the export is not a regular file"
            data = handle.read(limit + 1)
        if len(data) > limit:
            return None, f"the export is over the limit of {limit // 1024**2} MB"
        return base64.b64encode(data).decode("ascii"), ""
    finally:
        if os.path.lexists(target):
            os.unlink(target)


def run(path: str, cell_timeout: float, exports: str | None = None) -> int:
    """Run every code cell of the notebook at ``path``, writing one record per cell; 0 when the run finished."""
    checks.protect_process()
    plan = read_exports(exports)
    nb = nbformat.read(path, as_version=4)
    client = GradingClient(
        nb,
        timeout=cell_timeout,
        kernel_name="python3",
        allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout={"ename": TIMEOUT_NAME, "evalue": f"over {cell_timeout:g} s", "traceback": []},
        iopub_timeout=10,
        resources={"metadata": {"path": "."}},
    )
    with client.setup_kernel():
        start_checks(client)
        number, alive = 0, True
        for index, cell in enumerate(nb.cells):
            if cell.get("cell_type") != "code":
                continue
            record = CellRecord(cell=number, graded=isinstance(cell.get("metadata", {}).get("grade"), dict))
            number += 1
            if not alive:
                record.reason, record.message = "not-run", "not run: the kernel had died in an earlier cell"
            else:
                if record.graded:
                    check(client, record, "before it ran")
                alive = run_cell(client, cell, index, record, cell_timeout)
                if alive and record.graded and record.status == "ok":
                    check(client, record, "after it ran")
            verdict(record, cell_timeout)
            write_record(asdict(record))
        if plan:
            run_exports(client, nb, plan, alive, cell_timeout)
    return 0


def start_checks(client: NotebookClient) -> None:
    """The baseline fingerprint, taken before the first cell (the modules the instructor's cells import loaded)."""
    checks.take_baseline(lambda preload, timeout: probe(client, preload, timeout=timeout))


def main(argv: list[str] | None = None) -> int:
    """The command line inside the sandbox: run one notebook, report every cell."""
    parser = argparse.ArgumentParser(prog="python -m course_utils.tools.runner", description=__doc__.split("\n")[0])
    parser.add_argument("notebook")
    parser.add_argument("--cell-timeout", type=float, default=300)
    parser.add_argument("--exports", default=None, help="the judge's export plan (JSON); deleted once read")
    args = parser.parse_args(argv)
    return run(args.notebook, args.cell_timeout, args.exports)


if __name__ == "__main__":
    sys.exit(main())
