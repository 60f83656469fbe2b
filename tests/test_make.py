"""`make lab` and `make test` do all set-up and are idempotent: a second run installs nothing and is quick."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from course_utils.tools.lab import free_port

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
STAMP = ROOT / ".venv" / ".course-installed"

needs_made_venv = pytest.mark.skipif(
    not STAMP.is_file() or Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
    reason="runs under `make test` (needs the project's .venv made by the Makefile)",
)


@needs_made_venv
def test_second_setup_installs_nothing_and_is_quick():
    stamp_before = STAMP.stat().st_mtime
    start = time.perf_counter()
    result = subprocess.run(
        ["make", "--no-print-directory", "setup"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert "pip install" not in result.stdout and "Successfully installed" not in result.stdout
    assert "ready" in result.stdout  # weights and data were found and checked, not fetched again
    assert STAMP.stat().st_mtime == stamp_before
    assert seconds < 30, f"second set-up took {seconds:.1f} s"


@needs_made_venv
def test_make_lab_serves_jupyterlab_on_the_notebooks(tmp_path):
    port, token = free_port(), "course-test-token"
    args = (
        f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} --ServerApp.port_retries=0 "
        f"--IdentityProvider.token={token}" + (" --allow-root" if os.geteuid() == 0 else "")
    )
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "run"),
        "IPYTHONDIR": str(tmp_path / "ipy"),
    }
    server = subprocess.Popen(
        ["make", "--no-print-directory", "lab", f"ARGS={args}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 90
        contents = None
        while time.time() < deadline and server.poll() is None:
            try:
                url = f"http://127.0.0.1:{port}/api/contents?token={token}"
                contents = json.load(urllib.request.urlopen(url, timeout=5))
                break
            except OSError:
                time.sleep(0.5)
        assert contents is not None, "JupyterLab did not answer within 90 s"
        names = {item["name"] for item in contents["content"]}
        assert "00_start_here.ipynb" in names  # served from notebooks/
        lab = urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=10).read().decode()
        assert "JupyterLab" in lab
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
