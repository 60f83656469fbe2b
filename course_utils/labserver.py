"""Start JupyterLab the way `make lab` does, on 127.0.0.1 with a token, and stop it leaving nothing behind.

Used by the real-browser test (tests/test_browser.py). The server runs in its own session (process group)
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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .processes import alive, descendants, group_alive  # noqa: F401 (tests import them from here too)

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


def lab_command(root: Path, port: int, token: str) -> list[str]:
    """`jupyter lab --notebook-dir=ROOT` as `make lab` runs it, plus test-only flags.

    Started as ``python -m jupyterlab`` with this interpreter: the same application from the same environment,
    even where the venv's script shebangs point elsewhere (a venv that was copied or moved).
    """
    command = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={root}", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    return command


def isolated_env(home: Path, profile: str = "quick") -> dict[str, str]:
    """Environment with Jupyter's, IPython's and Matplotlib's own folders under ``home``, and the profile set."""
    env = dict(os.environ, COURSE_PROFILE=profile, PYTHONUNBUFFERED="1")
    for var, sub in [("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                     ("IPYTHONDIR", "ipython"), ("MPLCONFIGDIR", "matplotlib"),
                     ("JUPYTERLAB_SETTINGS_DIR", "config/lab/user-settings"),
                     ("JUPYTERLAB_WORKSPACES_DIR", "config/lab/workspaces")]:
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / sub)
    env.pop("JUPYTER_PATH", None)
    for plugin, values in QUIET_SETTINGS.items():
        package, name = plugin.rsplit("/", 1)
        target = home / "config/lab/user-settings" / package / f"{name}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    return env


def start_lab(root: Path, home: Path, profile: str = "quick", timeout: float = 90.0) -> LabServer:
    """Start JupyterLab on ``root`` and wait until its API answers; raise with the log's tail if it does not."""
    root, home = Path(root), Path(home)
    port, token = free_port(), secrets.token_hex(16)
    log = home / "jupyterlab.log"
    env = isolated_env(home, profile)
    with open(log, "wb") as handle:
        process = subprocess.Popen(lab_command(root, port, token), cwd=root, env=env, stdin=subprocess.DEVNULL,
                                   stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
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
    raise RuntimeError(f"JupyterLab did not answer on {server.url} within {timeout:.0f} s "
                       f"(exit code {process.returncode}). Its log ends with:\n{tail}")


def stop_lab(server: LabServer, grace: float = 10.0) -> set[int]:
    """SIGTERM the server's group, SIGKILL what is left after ``grace`` s; return the pids that were stopped."""
    process = server.process
    pgid = process.pid  # start_new_session: the server leads its own group
    server.descendants |= descendants(process.pid) if process.poll() is None else set()
    if process.poll() is None:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    for pid in [pgid, *server.descendants]:
        if pid == pgid:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        elif alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (group_alive(pgid) or any(alive(p) for p in server.descendants)):
        time.sleep(0.1)
    return {pgid, *server.descendants}


@contextmanager
def running_lab(root: Path, home: Path, profile: str = "quick") -> Iterator[LabServer]:
    """``with running_lab(root, home) as lab:`` ... JupyterLab is stopped on the way out, even on errors."""
    server = start_lab(root, home, profile)
    try:
        yield server
    finally:
        stop_lab(server)
