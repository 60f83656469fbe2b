"""What a sandboxed run is given and gives back: limits, isolation, plan, outcome, and the environment inside."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

NOBODY = 65534  # uid and gid inside the sandbox
WORK = "/grade"  # the work folder inside the bubblewrap sandbox
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
TOKEN_VARIABLE = "COURSE_SANDBOX_TOKEN"
RESULTS_FD_VARIABLE = "COURSE_GRADE_RESULTS_FD"
ISOLATION_VARIABLE = "COURSE_GRADE_ISOLATION"  # auto | bwrap | none: what `course grade` uses unless told
RESULTS_LIMIT = 8 * 1024 * 1024  # bytes of result lines kept from one run
EXPORTS_LIMIT = 512 * 1024 * 1024  # bytes of the judge's export records (base64 state dicts) kept from one run
WATCH_SECONDS = 0.25  # how often the supervisor adds up a run's memory


@dataclass(frozen=True)
class Limits:
    """Per-submission resource limits (per process where the OS counts per process)."""

    memory_gb: float = 8.0  # address space of each process (RLIMIT_AS); an exercise-1 kernel reserves 4.1 GB
    file_mb: float = 256.0  # largest file a process may write (RLIMIT_FSIZE)
    disk_mb: float = 1024.0  # size of the work folder, /tmp and /dev/shm (each a tmpfs under bubblewrap)
    processes: int = 256  # processes and threads of the sandbox's uid (RLIMIT_NPROC)
    cpu_seconds: int = 1200  # CPU time of each process (RLIMIT_CPU)
    output_kb: int = 256  # printed output kept per cell, and of the run's log
    open_files: int = 1024  # RLIMIT_NOFILE
    total_memory_gb: float = 6.0  # the whole submission: every process (PSS) and its files in memory (supervised)

    def describe(self) -> str:
        """One line for reports: every limit with its unit."""
        return (
            f"memory {self.total_memory_gb:g} GB per submission in all (processes and files in memory) and "
            f"{self.memory_gb:g} GB of address space per process, files up to {self.file_mb:g} MB, work folder "
            f"{self.disk_mb:g} MB, {self.processes} processes/threads, CPU {self.cpu_seconds} s per process, "
            f"output {self.output_kb} KB per cell"
        )


@dataclass(frozen=True)
class Isolation:
    """How runs are isolated: ``kind`` 'bwrap' or 'none', and a line saying so for the report."""

    kind: str
    summary: str
    bwrap: str | None = None
    privileged: bool = False  # bwrap started by root without a user namespace; the launcher drops to NOBODY

    @property
    def isolated(self) -> bool:
        return self.kind == "bwrap"


@dataclass
class Plan:
    """What to run and what it may see. Paths in ``env`` may use ``{work}`` for the work folder."""

    command: list[str]
    files: dict[str, bytes] = field(default_factory=dict)  # name in the run folder -> content
    env: dict[str, str] = field(default_factory=dict)
    read_only: list[Path] = field(default_factory=list)  # visible read-only at the same path
    mounts: dict[str, Path] = field(default_factory=dict)  # path inside -> host path, read-only
    hidden: list[Path] = field(default_factory=list)  # never visible, even inside a read-only path
    limits: Limits = field(default_factory=Limits)


@dataclass
class Outcome:
    """What one sandboxed run gave: the result lines the command wrote to its pipe, and how it ended."""

    records: list[dict]
    exit_code: int | None
    timed_out: bool
    seconds: float
    log: str  # the last Limits.output_kb of its stdout and stderr (submission output too: never trusted)
    survivors: list[str] = field(default_factory=list)  # processes found alive after the run (then killed)
    truncated: bool = False  # the results were longer than RESULTS_LIMIT
    memory_stopped: str = ""  # why the supervisor stopped the run (Limits.total_memory_gb reached), else ''
    memory_peak: int = 0  # the most memory (bytes) the supervisor saw the run hold


def python_paths() -> list[Path]:
    """Folders this Python needs to run (installation, virtual environment, site-packages), to bind read-only."""
    import site

    found = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *site.getsitepackages()]
    found.append(os.path.dirname(os.path.realpath(sys.executable)))
    return [Path(p) for p in dict.fromkeys(found) if p and os.path.isdir(p)]


def sandbox_env(work: str, extra: dict[str, str]) -> dict[str, str]:
    """The environment inside: a throwaway home, temp and Jupyter/IPython folders under ``work``, then ``extra``."""
    home = f"{work}/home"
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "USER": "student",
        "LOGNAME": "student",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": f"{work}/tmp",
        "IPYTHONDIR": f"{home}/.ipython",
        "JUPYTER_CONFIG_DIR": f"{home}/.jupyter",
        "JUPYTER_DATA_DIR": f"{home}/.local/share/jupyter",
        "JUPYTER_RUNTIME_DIR": f"{home}/.local/share/jupyter/runtime",
        "JUPYTER_PLATFORM_DIRS": "1",
        "XDG_CACHE_HOME": f"{home}/.cache",
        "XDG_CONFIG_HOME": f"{home}/.config",
        "XDG_DATA_HOME": f"{home}/.local/share",
        "MPLCONFIGDIR": f"{home}/.config/matplotlib",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONSAFEPATH": "1",  # no current folder on sys.path: files the submission writes cannot shadow modules
        "MALLOC_ARENA_MAX": "4",  # glibc reserves 64 MB of address space per arena; keeps RLIMIT_AS meaningful
    }
    env.update({key: value.replace("{work}", work) for key, value in extra.items()})
    return env
