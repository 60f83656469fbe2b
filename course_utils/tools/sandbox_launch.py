"""Inside the sandbox: the launcher that sets limits, starts the command, reaps orphans and ends what is left.

Run as a script by the grader (``python -I sandbox_launch.py launch CONFIG``), inside bubblewrap or not: it
imports only the standard library (and psutil, lazily), never the course package, which the sandbox may not see.
It sets the resource limits, makes itself non-dumpable (no same-uid process can read its memory or open its file
descriptors), starts the command with the results pipe as its only extra file descriptor, reaps orphans, reports
files left in IPython's startup folders, and ends every process left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 1, 4, 36


def _tasks_of(uid: int) -> int:
    """Tasks (processes and threads) owned by ``uid`` now, from /proc (0 where there is none)."""
    count = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.stat(entry.path).st_uid == uid:
                        count += len(os.listdir(f"{entry.path}/task"))
    return count


# --------------------------------------------------------------------------------- inside: launcher
def _prctl(option: int, value: int) -> bool:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def set_limits(limits: dict, nproc_base: int = 0) -> list[str]:
    """Apply the resource limits to this process (and so to everything it starts); return those that failed."""
    import resource

    mib = 1024 * 1024
    wanted = [
        ("memory", "RLIMIT_AS", int(limits["memory_gb"] * 1024 * mib)),
        ("file size", "RLIMIT_FSIZE", int(limits["file_mb"] * mib)),
        ("processes", "RLIMIT_NPROC", int(limits["processes"]) + nproc_base),
        ("open files", "RLIMIT_NOFILE", int(limits["open_files"])),
        ("core files", "RLIMIT_CORE", 0),
    ]
    failed = []
    for what, name, value in wanted:
        try:
            resource.setrlimit(getattr(resource, name), (value, value))
        except (ValueError, OSError, AttributeError):
            failed.append(what)
    try:  # SIGXCPU at the soft limit (ends a Python process), SIGKILL two seconds later
        cpu = int(limits["cpu_seconds"])
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2))
    except (ValueError, OSError):
        failed.append("CPU time")
    return failed


def _write_record(fd: int, record: dict) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, (json.dumps(record) + "\n").encode())


def _startup_files(folders: list[str]) -> list[str]:
    """Code IPython or Jupyter would run at start: profile startup scripts and *_config.py/json under ``folders``."""
    found = set()
    for folder in folders:
        for root, _dirs, files in os.walk(folder):
            for name in files:
                path = os.path.join(root, name)
                startup = os.path.basename(root) == "startup" and name.endswith((".py", ".ipy"))
                if startup or name.endswith(("_config.py", "_config.json")):
                    found.add(os.path.realpath(path))
    return sorted(found)[:20]


def _kill_descendants() -> None:
    """SIGKILL every descendant of this process (a child subreaper: orphans are our children) until none is left."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency of the course
        return
    me = psutil.Process()
    for _ in range(100):
        found = me.children(recursive=True)
        if not found:
            return
        for process in found:  # stop first, so that none forks while we go through the list
            with contextlib.suppress(psutil.Error):
                process.suspend()
        for process in found:
            with contextlib.suppress(psutil.Error):
                process.kill()
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    time.sleep(0.01)
            except ChildProcessError:
                break


def launch(config: dict) -> int:
    """Inside the sandbox: drop privileges, set limits, run the command, reap orphans, end everything left."""
    fd = int(config["results_fd"])
    if config.get("drop_to") is not None and os.geteuid() == 0:
        uid = gid = int(config["drop_to"])
        for folder in config.get("chown", []):
            for root, dirs, files in os.walk(folder):
                for name in [root] + [os.path.join(root, n) for n in dirs + files]:
                    with contextlib.suppress(OSError):
                        os.lchown(name, uid, gid)
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    failed = set_limits(config["limits"], int(config.get("nproc_base", 0)))
    if config.get("root") and config.get("drop_to") is None:
        failed.append("processes")  # Linux does not apply RLIMIT_NPROC to root's processes
    _prctl(PR_SET_DUMPABLE, 0)
    if config.get("subreaper"):  # no PID namespace: orphans come back to us, and we end them if the grader dies
        _prctl(PR_SET_CHILD_SUBREAPER, 1)

        def end_all(signum, frame):
            _kill_descendants()
            os._exit(1)

        signal.signal(signal.SIGTERM, end_all)
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if failed:
        _write_record(fd, {"event": "limits-not-enforced", "limits": sorted(set(failed))})
    try:
        child = subprocess.Popen(
            config["command"], cwd=config["cwd"], env=config["env"], pass_fds=(fd,), stdin=subprocess.DEVNULL
        )
    except OSError as exc:
        _write_record(fd, {"event": "end", "exit": None, "error": f"could not start: {exc}"})
        return 127
    status = None
    while status is None:
        try:
            pid, wait_status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        if pid == child.pid:
            status = os.waitstatus_to_exitcode(wait_status)
    planted = _startup_files(config.get("startup_dirs", []))
    if planted:
        _write_record(fd, {"event": "startup-files", "files": planted})
    _write_record(fd, {"event": "end", "exit": status})
    if config.get("subreaper"):
        _kill_descendants()
    # Under bubblewrap we are PID 1: returning ends the namespace, and the kernel kills whatever is left.
    return 0 if status == 0 else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "launch":
        sys.exit(launch(json.loads(sys.argv[2])))
    print("usage: python -I sandbox_launch.py launch CONFIG_JSON (the grader starts this itself)", file=sys.stderr)
    sys.exit(2)
