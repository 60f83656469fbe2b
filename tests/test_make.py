"""`make lab` and `make test` do all set-up and are idempotent: a second run installs nothing and is quick.

`make lab` installs what a student needs (not the [test] extra), says how much disk it will take before it starts,
lets pip show its progress, and names the notebook to open; `make test` installs the [test] extra.
"""

from __future__ import annotations

import json
import os
import shutil
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
        assert {"notebooks", "DIARY.template.md"} <= names  # the course folder, lesson 00 opened in it
        lab = urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=10).read().decode()
        assert "JupyterLab" in lab
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def dry_run(target: str, venv: Path) -> str:
    """The commands `make TARGET` would run on a fresh machine (make -n -B: nothing is run or installed)."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", target, f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lab_installs_what_a_student_needs_says_how_big_and_names_the_notebook(tmp_path):
    commands = dry_run("lab", tmp_path / "venv")
    installs = [line for line in commands.splitlines() if "pip install" in line]
    assert installs and all(line.rstrip().endswith("-e .") for line in installs), installs  # no [test] extra
    assert all(" -q" not in line for line in installs)  # pip's progress is shown
    first_echo = next(line for line in commands.splitlines() if line.startswith("echo"))
    assert "GB" in first_echo and "MB" in first_echo  # disk use, said before anything starts
    assert commands.index(first_echo) < commands.index("-m venv") < commands.index(installs[0])
    last_echo = [line for line in commands.splitlines() if line.startswith("echo")][-1]
    assert "notebooks/00_start_here.ipynb" in last_echo
    assert commands.rstrip().splitlines()[-1].endswith("course lab")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_test_installs_the_test_extra(tmp_path):
    installs = [line for line in dry_run("test", tmp_path / "venv").splitlines() if "pip install" in line]
    assert any(line.rstrip().endswith('-e ".[test]"') for line in installs), installs
