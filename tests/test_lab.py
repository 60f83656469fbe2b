"""Stopping JupyterLab leaves nothing behind: its process group and kernels in sessions of their own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from course_utils.tools.lab import LabServer, lab_command, stop_lab
from course_utils.tools.processes import alive, descendants, group_alive

# A stand-in server that ignores SIGTERM and starts a "kernel" in a session of its own, as Jupyter does.
STUBBORN_SERVER = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
kernel = subprocess.Popen([sys.executable, "-c",
                          "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"],
                          start_new_session=True)
print(kernel.pid, flush=True)
time.sleep(300)
"""


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX only")
def test_stop_lab_kills_group_and_kernels_that_ignore_sigterm(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-c", STUBBORN_SERVER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    kernel = 0
    try:
        kernel = int(process.stdout.readline())
        assert kernel in descendants(process.pid)
        server = LabServer(process, "http://127.0.0.1:9/", "token", tmp_path, tmp_path / "log")
        started = time.monotonic()
        stopped = stop_lab(server, grace=1.0)
        assert {process.pid, kernel} <= stopped
        assert time.monotonic() - started < 10
        assert not group_alive(process.pid) and not alive(kernel)
    finally:  # never leave the stand-ins running, whatever happened above
        for pid in (process.pid, kernel):
            if pid and alive(pid):
                os.kill(pid, 9)
        process.wait(timeout=5)
        process.stdout.close()


def test_lab_command_is_make_labs_jupyter_lab_on_loopback_with_token(tmp_path):
    command = lab_command(Path(tmp_path), 8899, "abc")
    assert command[:3] == [sys.executable, "-m", "jupyterlab"]  # this environment's JupyterLab
    root = getattr(os, "geteuid", lambda: -1)() == 0  # no geteuid on Windows: never root there
    assert command[3:] == [
        f"--notebook-dir={tmp_path}",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",  # loopback only: nobody else on the lecture hall's network reaches it
        "--ServerApp.port=8899",
        "--ServerApp.port_retries=0",  # that port or fail, never a surprise URL
        "--IdentityProvider.token=abc",
    ] + (["--allow-root"] if root else [])
