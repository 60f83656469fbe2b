"""Process trees (via psutil): find, check and stop a server or kernel and everything it started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass

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


def kill_all(found: list[psutil.Process], timeout: float = 5.0) -> None:
    """SIGKILL every process in ``found`` and wait (at most ``timeout`` s) until they are gone.

    Each is stopped (SIGSTOP) first, so that none starts a new process while the list is gone through; the one
    kill loop of the course (process trees, marked processes).
    """
    for process in found:
        with contextlib.suppress(psutil.Error):
            process.suspend()
    for process in found:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(found, timeout=timeout)


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
    kill_all(_processes(pids))
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
    kill_all(found)
    return [f"{p.info['name']} (pid {p.pid})" for p in found]


# ------------------------------------------------------------------------------- memory of a tree
@dataclass
class MemoryUse:
    """Memory a process tree holds: its processes' proportional share (PSS) and its files kept in memory."""

    processes: int = 0  # bytes: sum of PSS (RSS where PSS cannot be read) over the tree
    files: int = 0  # bytes: memfd files and the tree's private tmpfs folders
    count: int = 0  # processes counted

    @property
    def total(self) -> int:
        """Everything counted, in bytes."""
        return self.processes + self.files

    def describe(self) -> str:
        """'5.1 GB (4.0 GB in 12 processes, 1.1 GB of files in memory)'."""
        gb = 1024**3
        return (
            f"{self.total / gb:.1f} GB ({self.processes / gb:.1f} GB in {self.count} processes, "
            f"{self.files / gb:.1f} GB of files in memory)"
        )


def tree_memory(root: int, memory_folders: tuple[str, ...] = ()) -> MemoryUse:
    """Memory held by ``root`` and every descendant, plus memfd files they hold open and ``memory_folders``.

    ``memory_folders`` are tmpfs paths as the tree sees them (its own mount namespace, reached through
    /proc/PID/root): their used blocks count, deleted-but-open files included. A page both mapped and in
    such a file counts twice: the sum errs on the high side, never the low.
    """
    pids = [root, *sorted(descendants(root))]
    use, seen = MemoryUse(), set()
    for pid in pids:
        size = _pss(pid)
        if size is None:
            continue
        use.processes += size
        use.count += 1
        use.files += _memfd_bytes(pid, seen)
    inside = next((pid for pid in pids[1:] if os.path.isdir(f"/proc/{pid}/root")), None)
    for folder in memory_folders if inside is not None else ():
        with contextlib.suppress(OSError):
            info = os.statvfs(f"/proc/{inside}/root{folder}")
            use.files += (info.f_blocks - info.f_bfree) * info.f_frsize
    return use


def _pss(pid: int) -> int | None:
    """Proportional set size of ``pid`` in bytes (its RSS where smaps cannot be read); None if it is gone."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
        for line in handle:
            if line.startswith(b"Pss:"):
                return int(line.split()[1]) * 1024
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None


def _memfd_bytes(pid: int, seen: set) -> int:
    """Bytes of memfd files (memory-backed, named nowhere) that ``pid`` holds open, each file counted once."""
    total = 0
    with contextlib.suppress(OSError):
        for name in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{name}").startswith("/memfd:"):
                    info = os.stat(f"/proc/{pid}/fd/{name}")
                    if (info.st_dev, info.st_ino) not in seen:
                        seen.add((info.st_dev, info.st_ino))
                        total += info.st_blocks * 512
    return total
