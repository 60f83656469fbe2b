"""Process trees (via psutil): find, check and stop a server or kernel and everything it started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import psutil


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children, ...); empty if ``pid`` is gone."""
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


def alive(pid: int) -> bool:
    """True while a process exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # access denied: it exists
        return True


def group_alive(pgid: int) -> bool:
    """True while any process of the process group exists."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError, AttributeError):
        os.killpg(pgid, sig)


def _processes(pids: set[int]) -> list[psutil.Process]:
    found = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            found.append(psutil.Process(pid))
    return found


def stop_tree(process: subprocess.Popen, grace: float = 0.0, known: set[int] = frozenset()) -> set[int]:
    """Stop ``process`` (the leader of its own session), its group and every descendant; return their pids.

    With ``grace`` > 0 the group first gets SIGTERM and ``grace`` seconds to shut down (JupyterLab then stops
    its kernels itself); then everything still there gets SIGKILL: the group, every descendant found now or
    listed in ``known`` (kernels run in sessions of their own), and we wait until they are gone.
    """
    pgid = process.pid  # start_new_session: the process leads its own group
    pids = descendants(process.pid) | set(known)
    if grace > 0 and process.poll() is None:
        _signal_group(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    pids |= descendants(process.pid)
    _signal_group(pgid, signal.SIGKILL)
    remaining = _processes(pids)
    for proc in remaining:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(remaining, timeout=5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    return {pgid, *pids}


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL ``process``, its group and every descendant at once, and wait until they are gone."""
    stop_tree(process, grace=0.0)


def sweep_marked(variable: str, token: str) -> list[str]:
    """SIGKILL every process whose environment has ``variable=token``; return what was found (name and pid).

    A run's processes carry its token; one that escaped the process tree (a new session, a double fork
    whose parent is gone) is still found this way, unless it cleared its own environment.
    """
    found = []
    for process in psutil.process_iter(["pid", "name"]):
        if process.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if process.environ().get(variable) == token:
                found.append(process)
    for process in found:
        with contextlib.suppress(psutil.Error):
            process.suspend()
    for process in found:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(found, timeout=5)
    return [f"{p.info['name']} (pid {p.pid})" for p in found]
