"""Supervising a sandboxed run from outside: start it, read its results and log, watch its memory, end it all."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

from .sandbox_bwrap import LAUNCHER, bwrap_args
from .sandbox_launch import _tasks_of
from .sandbox_plan import (
    EXPORTS_LIMIT,
    NOBODY,
    RESULTS_FD_VARIABLE,
    RESULTS_LIMIT,
    TOKEN_VARIABLE,
    WATCH_SECONDS,
    WORK,
    Isolation,
    Limits,
    Outcome,
    Plan,
    sandbox_env,
)

_RUNNING: set = set()  # sandboxes running now (their outer process), for stop_all
_RUNNING_LOCK = threading.Lock()


def run(plan: Plan, isolation: Isolation, timeout: float) -> Outcome:
    """Run ``plan`` under ``isolation`` for at most ``timeout`` seconds; every process it started is gone after."""
    token = secrets.token_hex(8)
    host_tmp = Path(tempfile.mkdtemp(prefix="course-sandbox-"))
    read_results, write_results = os.pipe()
    opened: list[int] = [write_results]
    try:
        if isolation.kind == "bwrap":
            work = WORK
            fds = {}
            for name, content in plan.files.items():
                source = host_tmp / "in" / name
                source.parent.mkdir(parents=True, exist_ok=True)
                source.write_bytes(content)
                fds[name] = os.open(source, os.O_RDONLY)
                opened.append(fds[name])
        else:
            work = str(host_tmp / "work")
            for sub in ("run", "home", "tmp"):
                Path(work, sub).mkdir(parents=True)
            for name, content in plan.files.items():
                Path(work, "run", name).parent.mkdir(parents=True, exist_ok=True)
                Path(work, "run", name).write_bytes(content)
        env = sandbox_env(work, plan.env)
        env[TOKEN_VARIABLE] = token
        env[RESULTS_FD_VARIABLE] = str(write_results)
        config = {
            "command": plan.command,
            "cwd": f"{work}/run",
            "env": env,
            "limits": asdict(plan.limits),
            "results_fd": write_results,
            "drop_to": NOBODY if isolation.privileged else None,
            "chown": [work, "/tmp", "/dev/shm"] if isolation.privileged else [],
            "subreaper": isolation.kind != "bwrap",
            "startup_dirs": [f"{env['IPYTHONDIR']}", f"{env['HOME']}/.ipython", f"{env['JUPYTER_CONFIG_DIR']}"],
            "nproc_base": _tasks_of(NOBODY) if isolation.privileged else _tasks_of(os.getuid()),
            "root": os.geteuid() == 0,
        }
        launcher = [sys.executable, "-I", str(LAUNCHER), "launch", json.dumps(config)]
        argv = bwrap_args(isolation, plan, fds, work) + launcher if isolation.kind == "bwrap" else launcher
        memory_folders = (work, "/tmp", "/dev/shm") if isolation.kind == "bwrap" else ()
        return _supervise(argv, read_results, opened, timeout, plan.limits, token, memory_folders)
    finally:
        for fd in opened:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.close(read_results)
        shutil.rmtree(host_tmp, ignore_errors=True)


def stop_all() -> None:
    """Kill every sandbox running now (Ctrl-C of a batch): each run then ends as its supervisor reports."""
    from .processes import kill_tree

    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for process in running:
        kill_tree(process)


def _watch(process: subprocess.Popen, timeout: float, limits: Limits, memory_folders: tuple) -> tuple[bool, str, int]:
    """Wait for ``process`` at most ``timeout`` s, adding up its tree's memory; (timed out, why stopped, peak bytes).

    The run is stopped (its whole tree killed) when it holds more than ``limits.total_memory_gb`` in all: every
    process's PSS, memfd files and the sandbox's tmpfs folders (``processes.tree_memory``).
    """
    from .processes import kill_tree, tree_memory

    limit = int(limits.total_memory_gb * 1024**3)
    deadline, peak = time.monotonic() + timeout, 0
    while True:
        try:
            process.wait(timeout=max(0.0, min(WATCH_SECONDS, deadline - time.monotonic())))
            return False, "", peak
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() >= deadline:
            return True, "", peak
        use = tree_memory(process.pid, memory_folders)
        peak = max(peak, use.total)
        if use.total > limit:
            kill_tree(process)
            return False, f"held {use.describe()}", peak


def _supervise(
    argv, read_results: int, opened: list[int], timeout: float, limits: Limits, token: str, memory_folders=()
) -> Outcome:
    """Run ``argv`` to its end (or ``timeout``), collecting result records and log; every process is gone after."""
    records: list[dict] = []
    state = {"bytes": 0, "export_bytes": 0, "truncated": False}
    log = bytearray()
    keep = max(4096, limits.output_kb * 1024)
    start = time.perf_counter()
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        pass_fds=tuple(opened),
        start_new_session=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
    )
    for fd in opened:  # only the child holds the write end now: the pipe ends when every holder is gone
        with contextlib.suppress(OSError):
            os.close(fd)
    opened.clear()
    readers = [
        threading.Thread(target=_read_records, args=(read_results, records, state), daemon=True),
        threading.Thread(target=_read_log, args=(process, log, keep), daemon=True),
    ]
    for reader in readers:
        reader.start()
    from .processes import kill_tree, sweep_marked  # psutil: only on the grader's side

    timed_out, stopped, peak = False, "", 0
    with _RUNNING_LOCK:
        _RUNNING.add(process)
    try:
        timed_out, stopped, peak = _watch(process, timeout, limits, memory_folders)
    finally:  # the whole tree, however it ended (Ctrl-C too); under bwrap that is PID 1 of the namespace, so all
        kill_tree(process)
        with _RUNNING_LOCK:
            _RUNNING.discard(process)
    seconds = time.perf_counter() - start
    for reader in readers:
        reader.join(timeout=5)
    survivors = sweep_marked(TOKEN_VARIABLE, token)
    with contextlib.suppress(OSError):
        process.stdout.close()
    text = bytes(log[-keep:]).decode("utf-8", errors="replace")
    return Outcome(records, process.returncode, timed_out, seconds, text, survivors, state["truncated"], stopped, peak)


def _read_records(read_results: int, records: list[dict], state: dict) -> None:
    """Parse the result lines of the pipe into ``records``, counting bytes in ``state`` (beyond the limits: dropped)."""
    with os.fdopen(os.dup(read_results), "rb") as stream:
        for line in stream:  # the judge's exports (large, few) and everything else are limited apart
            export = line.startswith(b'{"event": "export"')
            key, limit = ("export_bytes", EXPORTS_LIMIT) if export else ("bytes", RESULTS_LIMIT)
            state[key] += len(line)
            if state[key] > limit:
                state["truncated"] = True
                continue
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)


def _read_log(process: subprocess.Popen, log: bytearray, keep: int) -> None:
    """Read the run's stdout and stderr into ``log``, keeping about its last ``keep`` bytes."""
    for chunk in iter(lambda: process.stdout.read1(65536), b""):
        log.extend(chunk)
        if len(log) > 2 * keep:
            del log[: len(log) - keep]
