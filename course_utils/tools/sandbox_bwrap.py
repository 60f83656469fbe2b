"""The bubblewrap side of the sandbox: finding bubblewrap and building its command line for a plan."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .sandbox_plan import NOBODY, SYSTEM_DIRS, WORK, Isolation, Plan, python_paths

LAUNCHER = Path(__file__).resolve().with_name("sandbox_launch.py")  # run inside; bound read-only into every sandbox


def find_bwrap() -> str | None:
    """The bubblewrap executable on PATH (or /usr/bin/bwrap), or None."""
    return shutil.which("bwrap") or ("/usr/bin/bwrap" if os.access("/usr/bin/bwrap", os.X_OK) else None)


def _bwrap_version(bwrap: str) -> str:
    try:
        return subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "bubblewrap"


def bwrap_args(isolation: Isolation, plan: Plan, fds: dict[str, int], work: str = WORK) -> list[str]:
    """The bubblewrap command line (up to ``--``) for ``plan``; ``fds`` are open files to copy into the run folder."""
    args = [
        isolation.bwrap or "bwrap",
        "--unshare-pid",
        "--unshare-net",  # a new network namespace with only loopback: the kernel protocol works, nothing else
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "grader",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--clearenv",
    ]
    if isolation.privileged:
        args += ["--cap-drop", "ALL"]
        args += [arg for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_CHOWN") for arg in ("--cap-add", cap)]
    else:
        args += ["--unshare-user", "--disable-userns", "--uid", str(NOBODY), "--gid", str(NOBODY)]
    bound: list[Path] = []
    created: set[str] = {"/"}
    args += _system_binds(bound, created)
    args += ["--proc", "/proc", "--dev", "/dev"]
    size = str(int(plan.limits.disk_mb * 1024 * 1024))
    for folder in (work, "/tmp", "/dev/shm"):  # the only writable places, each a tmpfs of Limits.disk_mb
        args += ["--size", size, "--tmpfs", folder]
    for sub in ("run", "home", "tmp"):
        args += ["--dir", f"{work}/{sub}"]
    created |= {"/proc", "/dev", work, "/tmp"}
    args += _read_only_binds(plan, bound, created) + _hiding(plan.hidden, bound)
    for name, fd in fds.items():
        args += ["--file", str(fd), f"{work}/run/{name}"]
    args += ["--remount-ro", "/", "--chdir", f"{work}/run", "--setenv", "PATH", "/usr/bin:/bin", "--"]
    return args


def _system_binds(bound: list[Path], created: set[str]) -> list[str]:
    """The system folders, read-only (symlinks as symlinks); adds them to ``bound`` and ``created``."""
    args: list[str] = []
    for name in SYSTEM_DIRS:
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args += ["--ro-bind", str(host), str(host)]
            bound.append(host)
        created.add(str(host))
    return args


def _read_only_binds(plan: Plan, bound: list[Path], created: set[str]) -> list[str]:
    """Python, the launcher, ``plan.read_only`` and ``plan.mounts``, read-only, with the folders that lead to them."""
    args: list[str] = []
    visible = [*python_paths(), LAUNCHER, *plan.read_only]  # the launcher, and the Python that runs it, always
    targets = [(Path(p), Path(p)) for p in visible] + [(Path(h), Path(i)) for i, h in plan.mounts.items()]
    for host, inside in sorted(_outermost(targets), key=lambda pair: len(pair[1].parts)):
        if host == inside and any(_inside(inside, b) for b in bound):
            continue  # already visible (under /usr, say)
        for parent in reversed(inside.parents):
            if str(parent) not in created and not any(_inside(parent, b) for b in bound):
                args += ["--perms", "0755", "--dir", str(parent)]
                created.add(str(parent))
        args += ["--ro-bind", str(host), str(inside)]
        bound.append(inside)
        created.add(str(inside))
    return args


def _hiding(hidden: list[Path], bound: list[Path]) -> list[str]:
    """Empty read-only tmpfs over hidden folders (/dev/null over files) that would be visible through ``bound``."""
    args: list[str] = []
    for path in hidden:
        for shown in [_absolute(path), _absolute(path).resolve()]:
            if any(_inside(shown, b) for b in bound):
                if shown.is_dir():
                    args += ["--tmpfs", str(shown), "--remount-ro", str(shown)]
                elif shown.exists():
                    args += ["--ro-bind", "/dev/null", str(shown)]
    return args


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _outermost(pairs: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """The (host, inside) pairs that exist, without repeats and without same-path binds nested in another one."""
    same = [host for host, inside in pairs if host == inside and host.exists()]
    out = []
    for host, inside in pairs:
        nested = host == inside and any(other != host and _inside(host, other) for other in same)
        if host.exists() and not nested and (host, inside) not in out:
            out.append((host, inside))
    return out
