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

pytestmark = pytest.mark.setup

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
STAMP = ROOT / ".venv" / ".course-installed"

needs_made_venv = pytest.mark.skipif(
    not STAMP.is_file() or Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
    reason="runs under `make test` (needs the project's .venv made by the Makefile)",
)


@needs_made_venv
def test_second_setup_installs_nothing_and_is_quick():
    import resource  # POSIX only, like make

    stamp_before = STAMP.stat().st_mtime
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        ["make", "--no-print-directory", "setup"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # make and everything it ran: CPU time, not the wall clock
    seconds = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert result.returncode == 0, result.stderr
    assert "pip install" not in result.stdout and "Successfully installed" not in result.stdout
    assert "ready" in result.stdout  # weights and data were found and checked, not fetched again
    assert STAMP.stat().st_mtime == stamp_before
    assert seconds < 30, f"second set-up took {seconds:.1f} s of CPU time"  # a reinstall takes minutes of it


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


DEBIAN_FILES = Path("/usr/share/datasets/fashion-mnist")
needs_make_and_course = pytest.mark.skipif(
    shutil.which("make") is None or not (ROOT / ".venv" / "bin" / "course").is_file(),
    reason="needs make and the project's .venv (runs under `make test`)",
)


def fake_tools(folder: Path, **scripts: str) -> dict:
    """Executables named after the keys (apt-get, dpkg, ...) first on PATH; each logs its arguments to log.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in scripts.items():
        tool = folder / name.replace("_", "-")
        tool.write_text(f'#!/bin/sh\necho "{tool.name} $*" >> {folder}/log.txt\n{body}\n', encoding="utf-8")
        tool.chmod(0o755)
    return {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}"}


def run_make(target: str, env: dict, *variables: str) -> subprocess.CompletedProcess:
    """The real recipe of TARGET with the project's .venv, never reinstalling it (-o: the venv counts as made)."""
    return subprocess.run(
        ["make", "--no-print-directory", "-o", "venv", "-o", str(STAMP), target, "SUDO=", *variables],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@needs_make_and_course
@pytest.mark.skipif(
    not DEBIAN_FILES.is_dir(), reason="Debian's dataset-fashion-mnist is not installed (make test installs it)"
)
def test_make_data_offline_tries_debians_package_before_saying_failed(tmp_path):
    """Fresh offline machine: no download, no Debian files yet; make installs the package and never says FAILED."""
    debian = tmp_path / "debian-files"
    env = fake_tools(tmp_path / "bin", apt_get=f"mkdir -p {debian} && cp {DEBIAN_FILES}/*.gz {debian}/")
    env |= {"COURSE_OFFLINE": "1", "COURSE_DATA_DIR": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    result = run_make("data", env, f"FETCH_DATA_ARGS=--debian-dir {debian}")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "FAILED" not in out
    assert "not found yet" in out and "trying Debian's package dataset-fashion-mnist next" in out
    assert out.index("trying Debian's package") < out.index("Installing Debian's dataset-fashion-mnist")
    assert f"installed from {debian}" in out
    assert "apt-get install -y -q dataset-fashion-mnist" in (tmp_path / "bin" / "log.txt").read_text()
    assert len(list((tmp_path / "data" / "FashionMNIST" / "raw").iterdir())) >= 4


@needs_make_and_course
def test_make_data_says_failed_once_and_last_when_no_source_works(tmp_path):
    env = fake_tools(tmp_path / "bin", apt_get="exit 100")  # no root, no archive: the package cannot be had
    env |= {"COURSE_OFFLINE": "1", "COURSE_DATA_DIR": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    result = run_make("data", env, f"FETCH_DATA_ARGS=--debian-dir {tmp_path / 'never-installed'}")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert out.count("FAILED") == 1, out
    assert out.index("trying Debian's package") < out.index("Could not install dataset-fashion-mnist")
    assert "What to do" in out and "sudo apt-get install dataset-fashion-mnist" in out


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_test_sets_up_the_sandbox_and_browser_packages_where_it_can(tmp_path):
    assert "for pkg in bubblewrap chromium chromium-driver; do dpkg -s" in dry_run("test", tmp_path / "venv")
    # nothing installed yet (dpkg knows none), apt-get works: each package is installed, the set-up goes on
    env = fake_tools(tmp_path / "ok", dpkg="exit 1", apt_get="exit 0")
    result = run_make("test-tools", env)
    assert result.returncode == 0, result.stderr
    assert "Installing bubblewrap chromium chromium-driver for the sandbox and browser tests" in result.stdout
    log = (tmp_path / "ok" / "log.txt").read_text()
    for pkg in ("bubblewrap", "chromium", "chromium-driver"):
        assert f"apt-get install -y -q --no-install-recommends {pkg}\n" in log
    # apt-get fails (no archive): says what it could not install and how, and does not fail the set-up
    env = fake_tools(tmp_path / "broken", dpkg="exit 1", apt_get="exit 100")
    result = run_make("test-tools", env)
    assert result.returncode == 0, result.stderr
    assert "Could not install chromium: the tests that need it are skipped (`sudo apt-get install chromium`" in (
        result.stdout
    )
    # not root and no passwordless sudo: says what it would install, installs nothing, does not fail
    env = fake_tools(tmp_path / "nosudo", dpkg="exit 1", apt_get="exit 0", no_sudo="exit 1")
    result = run_make("test-tools", env, "SUDO=no-sudo")
    assert result.returncode == 0, result.stderr
    assert "Not installing bubblewrap chromium chromium-driver (needs root or passwordless sudo)" in result.stdout
    assert "`sudo apt-get install -y bubblewrap chromium chromium-driver`" in result.stdout
    assert "apt-get" not in (tmp_path / "nosudo" / "log.txt").read_text()
    # everything there already: silent
    env = fake_tools(tmp_path / "done", dpkg="exit 0", apt_get="exit 0")
    result = run_make("test-tools", env)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout
