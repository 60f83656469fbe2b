"""Run a prepared submission with nbclient's public API and judge each cell; the alternative to nbval_guard.

    python -m course_utils.tools.runner submission.ipynb --cell-timeout S   (inside the sandbox)

nbclient executes the notebook (``NotebookClient.execute_cell``): a cell that runs past ``--cell-timeout``
is interrupted (``interrupt_on_timeout``) and the next cells go on; a kernel that dies raises
``DeadKernelError`` and the remaining cells are "not run". Each cell's verdict comes from the kernel's
``execute_reply``, handed over by the ``on_cell_executed`` hook, not from the outputs it showed. Around every
graded cell the same fingerprint of the kernel's machinery as under nbval (``kernel_probe``, compared by
``nbval_guard.compare``) marks a change for review. Outputs beyond ``COURSE_GRADE_OUTPUT_KB`` per cell are
dropped as they arrive (``output`` is overridden). One JSON line per cell goes to the results pipe, in the
same format as ``nbval_guard`` writes, so that ``grade.py`` reads both alike.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from queue import Empty

sys.modules.setdefault("rfc3987_syntax", None)  # see nbval_guard: a slow optional import nothing here needs

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbclient.exceptions import DeadKernelError  # noqa: E402
from nbclient.util import run_sync  # noqa: E402

from . import nbval_guard as guard  # noqa: E402
from .nbval_guard import CellRecord, exception_line, write_record  # noqa: E402

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
        if used > guard._OUTPUT_LIMIT and msg.get("msg_type") != "error":
            self.truncated.add(cell_index)
            return None
        return super().output(outs, msg, display_id, cell_index)


def kernel_process(client: NotebookClient):
    """The kernel's Popen (for its exit status and peak address space), or None."""
    provisioner = getattr(client.km, "provisioner", None)
    return getattr(provisioner, "process", None)


def probe(client: NotebookClient, preload: tuple[str, ...], timeout: float) -> dict:
    """The kernel's fingerprint (kernel_probe.state) from a silent execute; raises Empty on timeout."""
    expressions = {guard.PROBE_KEY: guard._probe_expression(preload)}
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
    guard._judge_probe(record, expressions, when)


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
    record.vm_peak_kb = guard._read_vm_peak(getattr(process, "pid", None))
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
    """The cell's verdict from its reply and the checks (as nbval_guard._finish decides under nbval)."""
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


def run(path: str, cell_timeout: float) -> int:
    """Run every code cell of the notebook at ``path``, writing one record per cell; 0 when the run finished."""
    guard.protect_process()
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
    return 0


def start_checks(client: NotebookClient) -> None:
    """The baseline fingerprint, taken before the first cell (the modules the instructor's cells import loaded)."""
    guard.take_baseline(lambda preload, timeout: probe(client, preload, timeout=timeout))


def main(argv: list[str] | None = None) -> int:
    """The command line inside the sandbox: run one notebook, report every cell."""
    parser = argparse.ArgumentParser(prog="python -m course_utils.tools.runner", description=__doc__.split("\n")[0])
    parser.add_argument("notebook")
    parser.add_argument("--cell-timeout", type=float, default=300)
    args = parser.parse_args(argv)
    return run(args.notebook, args.cell_timeout)


if __name__ == "__main__":
    sys.exit(main())
