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

In both, ``launch`` (this file run as a script, ``python -I sandbox.py launch CONFIG``) sets the resource
limits, makes itself non-dumpable (no same-uid process can read its memory or open its file descriptors),
starts the command with the results pipe as its only extra file descriptor, reaps orphans, reports files
left in IPython's startup folders, and ends every process left. Results come back only through that pipe:
files in the work folder are writable by the submission and never trusted. The judge's exports come back the
same way (``export`` records the runner writes; their bytes are limited apart, by ``EXPORTS_LIMIT``).

Only the standard library is imported at the top: the launcher runs with ``python -I`` inside the sandbox.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

NOBODY = 65534  # uid and gid inside the sandbox
WORK = "/grade"  # the work folder inside the bubblewrap sandbox
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
TOKEN_VARIABLE = "COURSE_SANDBOX_TOKEN"
RESULTS_FD_VARIABLE = "COURSE_GRADE_RESULTS_FD"
ISOLATION_VARIABLE = "COURSE_GRADE_ISOLATION"  # auto | bwrap | none: what `course grade` uses unless told
RESULTS_LIMIT = 8 * 1024 * 1024  # bytes of result lines kept from one run
EXPORTS_LIMIT = 512 * 1024 * 1024  # bytes of the judge's export records (base64 state dicts) kept from one run
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 1, 4, 36
WATCH_SECONDS = 0.25  # how often the supervisor adds up a run's memory
_RUNNING: set = set()  # sandboxes running now (their outer process), for stop_all
_RUNNING_LOCK = threading.Lock()


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


# ---------------------------------------------------------------------------------------- choosing
def find_bwrap() -> str | None:
    """The bubblewrap executable on PATH (or /usr/bin/bwrap), or None."""
    return shutil.which("bwrap") or ("/usr/bin/bwrap" if os.access("/usr/bin/bwrap", os.X_OK) else None)


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


def _bwrap_version(bwrap: str) -> str:
    try:
        return subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "bubblewrap"


# ------------------------------------------------------------------------------------------ running
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
        launcher = [sys.executable, "-I", str(Path(__file__).resolve()), "launch", json.dumps(config)]
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
    records: list[dict] = []
    state = {"bytes": 0, "export_bytes": 0, "truncated": False}
    log = bytearray()
    keep = max(4096, limits.output_kb * 1024)

    def read_records():
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

    def read_log():
        for chunk in iter(lambda: process.stdout.read1(65536), b""):
            log.extend(chunk)
            if len(log) > 2 * keep:
                del log[: len(log) - keep]

    readers = [threading.Thread(target=read_records, daemon=True), threading.Thread(target=read_log, daemon=True)]
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
    return Outcome(
        records,
        process.returncode,
        timed_out,
        seconds,
        bytes(log[-keep:]).decode("utf-8", errors="replace"),
        survivors,
        state["truncated"],
        stopped,
        peak,
    )


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
    for name in SYSTEM_DIRS:
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args += ["--ro-bind", str(host), str(host)]
            bound.append(host)
        created.add(str(host))
    args += ["--proc", "/proc", "--dev", "/dev"]
    size = str(int(plan.limits.disk_mb * 1024 * 1024))
    for folder in (work, "/tmp", "/dev/shm"):  # the only writable places, each a tmpfs of Limits.disk_mb
        args += ["--size", size, "--tmpfs", folder]
    for sub in ("run", "home", "tmp"):
        args += ["--dir", f"{work}/{sub}"]
    created |= {"/proc", "/dev", work, "/tmp"}
    launcher = Path(__file__).resolve()  # the launcher, and the Python that runs it, are always there
    visible = [*python_paths(), launcher, *plan.read_only]
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
    for path in plan.hidden:
        for shown in [_absolute(path), _absolute(path).resolve()]:
            if any(_inside(shown, b) for b in bound):
                if shown.is_dir():
                    args += ["--tmpfs", str(shown), "--remount-ro", str(shown)]
                elif shown.exists():
                    args += ["--ro-bind", "/dev/null", str(shown)]
    for name, fd in fds.items():
        args += ["--file", str(fd), f"{work}/run/{name}"]
    args += ["--remount-ro", "/", "--chdir", f"{work}/run", "--setenv", "PATH", "/usr/bin:/bin", "--"]
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
    print("usage: python -I sandbox.py launch CONFIG_JSON (the grader starts this itself)", file=sys.stderr)
    sys.exit(2)
