"""`course lab`: JupyterLab on the lessons; and, for tests, a JupyterLab started and stopped leaving nothing behind.

    course lab [JUPYTERLAB ARGS ...]     e.g. course lab --port 8890 --no-browser

``course lab`` first checks (in well under a second) that the verified weights and Fashion-MNIST are there,
and says to run ``course fetch`` if not. It serves the course folder and opens lesson 00, with the course's
settings from lab_settings/: no "get notified about Jupyter news?" pop-up (overrides.json, passed as JupyterLab's
app settings folder) and uploads through ipywidgets' FileUpload of up to 256 MB (jupyter_server_config.json, on
JUPYTER_CONFIG_PATH so that the user's own Jupyter config still applies; a phone's photos and videos are
25-120 MB, Tornado's websocket limit is 10 MB otherwise). ``start_lab``/``stop_lab`` are used by the real-browser test
(tests/test_browser.py). The server runs in its own session (process group)
and, on Linux, dies with the process that started it; ``stop_lab`` sends SIGTERM to the group (JupyterLab
then shuts its kernels down), SIGKILL after a grace period, then kills any descendant still alive
(kernels run in sessions of their own).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..paths import course_root
from .processes import descendants, stop_tree

LAB_SETTINGS_DIR = Path(__file__).resolve().parent / "lab_settings"  # overrides.json, jupyter_server_config.json
UPLOAD_LIMIT_BYTES = 256 * 1024 * 1024  # websocket message limit there: FileUpload sends a photo in one message
FIRST_LESSON = "notebooks/00_start_here.ipynb"
QUIET_SETTINGS = {  # user settings that keep pop-ups and virtual scrolling out of an automated session
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


@dataclass
class LabServer:
    """A running JupyterLab: its process, URL, token and log file."""

    process: subprocess.Popen
    url: str
    token: str
    root: Path
    log: Path
    descendants: set[int] = field(default_factory=set)

    def notebook_url(self, name: str) -> str:
        """URL that opens one notebook in a fresh workspace (``reset``: no restored panels)."""
        return f"{self.url}lab/tree/{name}?token={self.token}&reset"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: ask Linux to send SIGTERM when the parent dies (no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def lab_command(root: Path, port: int, token: str, options: list[str] | tuple = ()) -> list[str]:
    """`jupyter lab --notebook-dir=ROOT` as `make lab` runs it, plus test-only flags.

    Started as ``python -m jupyterlab`` with this interpreter: the same application from the same environment,
    even where the venv's script shebangs point elsewhere (a venv that was copied or moved).
    """
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--notebook-dir={root}",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        *options,
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    return command


def course_lab_options() -> list[str]:
    """The option `course lab` gives JupyterLab: the course's overrides.json (no news pop-up)."""
    return [f"--LabApp.app_settings_dir={LAB_SETTINGS_DIR}"]


def course_lab_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default os.environ) with the course's server config (the websocket limit) on JUPYTER_CONFIG_PATH."""
    env = dict(os.environ if env is None else env)
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(filter(None, [str(LAB_SETTINGS_DIR), env.get("JUPYTER_CONFIG_PATH")]))
    return env


def student_lab_command(root: Path, extra: list[str]) -> list[str]:
    """`python -m jupyterlab` on the course folder, opening lesson 00, with the course's settings and ``extra``."""
    first = Path(root) / FIRST_LESSON
    opened = [str(first)] if first.is_file() else []
    return [sys.executable, "-m", "jupyterlab", f"--notebook-dir={root}", *course_lab_options(), *extra, *opened]


def isolated_env(home: Path, profile: str = "quick", quiet: bool = True) -> dict[str, str]:
    """Environment with Jupyter's, IPython's and Matplotlib's own folders under ``home``, and the profile set."""
    env = dict(os.environ, COURSE_PROFILE=profile, PYTHONUNBUFFERED="1")
    for var, sub in [
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_DATA_DIR", "data"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("IPYTHONDIR", "ipython"),
        ("MPLCONFIGDIR", "matplotlib"),
        ("JUPYTERLAB_SETTINGS_DIR", "config/lab/user-settings"),
        ("JUPYTERLAB_WORKSPACES_DIR", "config/lab/workspaces"),
    ]:
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / sub)
    env.pop("JUPYTER_PATH", None)
    for plugin, values in QUIET_SETTINGS.items() if quiet else ():
        package, name = plugin.rsplit("/", 1)
        target = home / "config/lab/user-settings" / package / f"{name}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    return env


def start_lab(
    root: Path, home: Path, profile: str = "quick", timeout: float = 90.0, course_settings: bool = False
) -> LabServer:
    """Start JupyterLab on ``root`` and wait until its API answers; raise with the log's tail if it does not.

    ``course_settings``: with `course lab`'s settings instead of the test's QUIET_SETTINGS (user settings).
    """
    root, home = Path(root), Path(home)
    port, token = free_port(), secrets.token_hex(16)
    log = home / "jupyterlab.log"
    env = isolated_env(home, profile, quiet=not course_settings)
    env = course_lab_env(env) if course_settings else env
    options = course_lab_options() if course_settings else []
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            lab_command(root, port, token, options),
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    server = LabServer(process, f"http://127.0.0.1:{port}/", token, root, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{server.url}api/status?token={token}", timeout=2) as reply:
                if reply.status == 200:
                    return server
        except OSError:
            time.sleep(0.3)
    stop_lab(server)
    tail = log.read_text(errors="replace")[-3000:]
    raise RuntimeError(
        f"JupyterLab did not answer on {server.url} within {timeout:.0f} s "
        f"(exit code {process.returncode}). Its log ends with:\n{tail}"
    )


def stop_lab(server: LabServer, grace: float = 10.0) -> set[int]:
    """SIGTERM the server's group, SIGKILL what is left after ``grace`` s; return the pids that were stopped."""
    if server.process.poll() is None:
        server.descendants |= descendants(server.process.pid)
    return stop_tree(server.process, grace=grace, known=server.descendants)


@contextmanager
def running_lab(root: Path, home: Path, profile: str = "quick") -> Iterator[LabServer]:
    """``with running_lab(root, home) as lab:`` ... JupyterLab is stopped on the way out, even on errors."""
    server = start_lab(root, home, profile)
    try:
        yield server
    finally:
        stop_lab(server)


def readiness_problems() -> list[str]:
    """What the lessons need and is missing: verified mobilenet_v2 weights, Fashion-MNIST (no torch import)."""
    from ..fashion_files import check_fashion_mnist
    from ..weights import weights_status

    problems = []
    status = weights_status("mobilenet_v2")
    if not status["verified"]:
        problems.append(
            f"mobilenet_v2 weights: {'wrong sha256' if status['present'] else 'missing'} ({status['path']})"
        )
    problems += [f"Fashion-MNIST: {p}" for p in check_fashion_mnist(full_hash=False)]
    return problems


def main(argv: list[str] | None = None) -> int:
    """`course lab [JUPYTERLAB ARGS ...]`: check weights and data, then JupyterLab on lesson 00."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.split("\n\n")[1].strip() + "\n\nAny other argument goes to JupyterLab (`jupyter lab --help`).")
        return 0
    root = course_root()  # no course folder: CourseFolderError, which `course` reports with what to run
    problems = readiness_problems()
    if problems:
        print(
            "course lab: the lessons need files that are not ready:\n  - "
            + "\n  - ".join(problems)
            + "\nRun `course fetch` (or `make lab`, which also installs Debian's dataset-fashion-mnist offline).",
            file=sys.stderr,
        )
        return 1
    print(
        f"Starting JupyterLab on {root}, opening {FIRST_LESSON} (open the URL it prints; Ctrl-C stops it)", flush=True
    )
    try:
        return subprocess.call(student_lab_command(root, argv), env=course_lab_env())
    except KeyboardInterrupt:
        return 0
