"""What several test files share: the `course` command run as a user runs it, and the headless browser to use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Debian's Chromium (the wrapper in /usr/bin prints a harmless warning; the binary behind it does not).
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if Path(p).is_file()), None)
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def course(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `course ARGS...` with this interpreter (the console script's own code path) and capture its output.

    A run past ``timeout`` fails the test with the stack of every Python thread of the tool and of the kernels it
    started (Python's fault handler, on SIGABRT): a hang says where it waits instead of only that it waited.
    """
    env = {**(os.environ if env is None else env), "PYTHONFAULTHANDLER": "1"}
    command = [sys.executable, "-m", "course_utils.tools.cli", *args]
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        try:
            stdout, stderr = run.communicate(timeout=timeout)
            hung = False
        except subprocess.TimeoutExpired:
            stdout, stderr = dump_stacks_and_stop(run)
            hung = True
    if hung:
        pytest.fail(
            f"`course {' '.join(args)}` ran past {timeout:g} s; the stacks of its Python processes, then its output:"
            f"\n--- stderr (last 40,000 characters)\n{stderr[-40000:]}\n--- stdout\n{stdout[-3000:]}",
            pytrace=False,
        )
    return subprocess.CompletedProcess(command, run.returncode, stdout, stderr)


def dump_stacks_and_stop(run: subprocess.Popen) -> tuple[str, str]:
    """SIGABRT to a hung process and to its Python descendants (the tool first), then what they wrote."""
    import psutil

    try:
        family = [psutil.Process(run.pid), *psutil.Process(run.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for process in family:
        try:
            if "python" in process.name().lower() or process.pid == run.pid:
                process.send_signal(signal.SIGABRT)
            else:
                process.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        return run.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        run.kill()
        return run.communicate()


def offline_context(browser, asked: list[str]):
    """A 1280x800 browser context that serves only file: and data: URLs; any other request is refused and noted."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})

    def only_files(route):
        if route.request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            asked.append(route.request.url)
            route.abort()

    context.route("**/*", only_files)
    return context


@contextmanager
def launched_chromium() -> Iterator:
    """Headless Debian Chromium through Playwright, closed in any case; skips saying what to install if missing."""
    if CHROMIUM is None:
        pytest.skip("no Chromium at /usr/bin/chromium: install Debian's chromium (.ci/run does)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed in this environment (pip install -e '.[test]')"
    )
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def with_solution(nb, function: str, body: str):
    """A copy of an exercise source notebook whose solution region inside ``def function`` is replaced by ``body``."""
    import copy

    from course_utils.tools.exercises import BEGIN_SOLUTION, END_SOLUTION

    nb = copy.deepcopy(nb)
    [cell] = [c for c in nb.cells if c.cell_type == "code" and f"def {function}(" in c.source]
    lines = cell.source.split("\n")
    first = next(i for i, line in enumerate(lines) if line.strip().startswith(BEGIN_SOLUTION))
    last = next(i for i, line in enumerate(lines) if line.strip().startswith(END_SOLUTION))
    cell.source = "\n".join(lines[:first] + body.strip("\n").split("\n") + lines[last + 1 :])
    return nb


# A cell that makes the kernel report every later cell as successful, whatever it raised (a grading attack).
ALWAYS_OK = """
import ipykernel.ipkernel as _k
_run = _k.IPythonKernel.do_execute
async def _ok(self, *args, **kwargs):
    reply = await _run(self, *args, **kwargs)
    reply["status"] = "ok"  # every cell reported as successful, whatever it raised
    return reply
_k.IPythonKernel.do_execute = _ok
"""
