"""Run an untrusted command (a submission's pytest and kernel) in a sandbox, under limits, leaving nothing behind.

Two kinds of isolation, chosen by ``choose_isolation``:

``bwrap`` (Linux with bubblewrap): new mount, PID, network (loopback only), IPC and UTS namespaces; the
root file system is a fresh read-only tmpfs that holds only what the command needs, bound read-only
(system folders, the Python installation, the folders the caller names); paths the caller lists as hidden
are covered with empty tmpfs even when they lie inside those. The only writable places are tmpfs of
``Limits.disk_mb`` each: the work folder (the command's files are copied into it; HOME, TMPDIR, IPYTHONDIR and
the Jupyter folders live there), /tmp and /dev/shm; they vanish with the sandbox. Its process is PID 1 of the
new PID namespace: when it ends, the kernel kills every process inside, double-forked daemons included. It runs as
uid/gid 65534 ("nobody"): started by root, bubblewrap keeps only CAP_SETUID/SETGID/CHOWN and the launcher
switches to the real unprivileged uid; started by anyone else, a user namespace maps the caller to 65534.

``none`` (no bubblewrap, macOS, no user namespaces): NOT isolated. The command sees the whole machine with
the grader's rights; what remains is a fresh HOME/TMPDIR/IPYTHONDIR per run, the same resource limits, and
cleanup: the launcher is a child subreaper on Linux (orphans come back to it) and kills every descendant when
the command ends; the grader then sweeps any process still carrying the run's token in its environment.

In both, the grader's side (``_watch``) adds up the memory of the whole run every ``WATCH_SECONDS``: the
proportional set size of every process in it, memfd files they hold, and (under bubblewrap) what its tmpfs
folders hold; above ``Limits.total_memory_gb`` it kills the run and says so (``Outcome.memory_stopped``).
Between two looks a run can overshoot by what it allocates in that time, each process still under RLIMIT_AS.

In both, ``launch`` (``sandbox_launch.py`` run as a script, ``python -I sandbox_launch.py launch CONFIG``) sets the
limits, makes itself non-dumpable (no same-uid process can read its memory or open its file descriptors),
starts the command with the results pipe as its only extra file descriptor, reaps orphans, reports files
left in IPython's startup folders, and ends every process left. Results come back only through that pipe:
files in the work folder are writable by the submission and never trusted. The judge's exports come back the
same way (``export`` records the runner writes; their bytes are limited apart, by ``EXPORTS_LIMIT``).

This module is the facade the grader imports; the parts live beside it: ``sandbox_plan`` (limits, plan, outcome,
the environment inside), ``sandbox_bwrap`` (the bubblewrap command line), ``sandbox_run`` (supervision from outside)
and ``sandbox_launch`` (the launcher inside: the standard library only, as it runs with ``python -I``).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # the launcher's former command line, ``python -I sandbox.py launch CONFIG``: still works
    import runpy

    runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_launch.py"), run_name="__main__")

from .sandbox_bwrap import LAUNCHER, _bwrap_version, bwrap_args, find_bwrap  # noqa: E402
from .sandbox_launch import launch, set_limits  # noqa: E402
from .sandbox_plan import (  # noqa: E402
    EXPORTS_LIMIT,
    ISOLATION_VARIABLE,
    NOBODY,
    RESULTS_FD_VARIABLE,
    RESULTS_LIMIT,
    SYSTEM_DIRS,
    TOKEN_VARIABLE,
    WATCH_SECONDS,
    WORK,
    Isolation,
    Limits,
    Outcome,
    Plan,
    python_paths,
    sandbox_env,
)
from .sandbox_run import run, stop_all  # noqa: E402

__all__ = [
    "EXPORTS_LIMIT",
    "ISOLATION_VARIABLE",
    "LAUNCHER",
    "NOBODY",
    "RESULTS_FD_VARIABLE",
    "RESULTS_LIMIT",
    "SYSTEM_DIRS",
    "TOKEN_VARIABLE",
    "WATCH_SECONDS",
    "WORK",
    "Isolation",
    "Limits",
    "Outcome",
    "Plan",
    "bwrap_args",
    "choose_isolation",
    "find_bwrap",
    "launch",
    "python_paths",
    "run",
    "sandbox_env",
    "set_limits",
    "stop_all",
]


def choose_isolation(mode: str = "auto", probe: Plan | None = None, bwrap: str | None = None) -> Isolation:
    """Isolation for this machine: mode 'bwrap' (required), 'none' (forced) or 'auto' (bwrap when it works).

    The check runs ``probe`` (by default a Python that imports nothing) under bubblewrap, first as root
    without a user namespace (when we are root), then with one; 'bwrap' raises RuntimeError if neither works.
    """
    if mode not in ("auto", "bwrap", "none"):
        raise ValueError(f"isolation must be auto, bwrap or none, not {mode!r}")
    if mode == "none":
        return Isolation("none", "NOT ISOLATED: bubblewrap was turned off (--isolation none)")
    why = ""
    bwrap = bwrap or find_bwrap()
    if not sys.platform.startswith("linux"):
        why = f"bubblewrap needs Linux; this is {sys.platform}"
    elif bwrap is None:
        why = "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    else:
        probe = probe or Plan([sys.executable, "-I", "-c", "print('sandbox ok')"], read_only=python_paths())
        tried = []
        for privileged in [True, False] if os.geteuid() == 0 else [False]:
            candidate = Isolation("bwrap", "", bwrap, privileged)
            try:
                outcome = run(probe, candidate, timeout=60)
            except OSError as exc:
                tried.append(f"{bwrap}: {exc.strerror or exc}")
                continue
            if outcome.exit_code == 0 and not outcome.timed_out:
                version = _bwrap_version(bwrap)
                how = "root drops to uid 65534" if privileged else "user namespace, uid 65534"
                return Isolation(
                    "bwrap",
                    f"isolated with {version} ({how}; read-only course, no network, private /tmp and home)",
                    bwrap,
                    privileged,
                )
            last = outcome.log.strip().splitlines()[-1][:200] if outcome.log.strip() else f"exit {outcome.exit_code}"
            tried.append(last)
        why = "bubblewrap is installed but cannot run here: " + " / ".join(tried)
    if mode == "bwrap":
        raise RuntimeError(f"--isolation bwrap: {why}")
    return Isolation(
        "none",
        f"NOT ISOLATED: {why}. Student code ran with the grader's rights and could read or change any file it "
        "can reach; only limits, a fresh home folder and process cleanup applied",
    )
