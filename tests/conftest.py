"""Shared fixtures: real files on disk and a real HTTP server on 127.0.0.1; the tiers; a summary of what was skipped."""

from __future__ import annotations

import http.server
import re
import threading
from pathlib import Path

import pytest


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        route = self.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        body, claimed_length = route
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(claimed_length if claimed_length is not None else len(body)))
        self.end_headers()
        self.wfile.write(body)  # a claimed length larger than the body simulates a cut-off download

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    """serve(path, body, claimed_length=None) -> URL on 127.0.0.1; the server stops after the test."""
    routes: dict = {}
    handler = type("Handler", (_Handler,), {"routes": routes})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def serve(path: str, body: bytes, claimed_length: int | None = None) -> str:
        routes[path] = (body, claimed_length)
        return f"http://127.0.0.1:{server.server_address[1]}{path}"

    try:
        yield serve
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def isolated_data(tmp_path_factory, monkeypatch) -> Path:
    """COURSE_DATA_DIR in a temp folder, so provenance records and caches never touch data/."""
    path = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("COURSE_DATA_DIR", str(path))
    return path


# The tiers (pyproject.toml's markers, the Makefile's FAST_TIER): test modules mark themselves (pytestmark),
# nbval's items are marked here.


def pytest_collection_modifyitems(config, items):
    """Every notebook cell nbval runs is in the `notebooks` tier: `make unit` (the fast tier) leaves them out."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.notebooks)


# What a skipped test needs, read from its reason: (group, pattern in the reason, the one command that enables it).
# The first match wins; a reason no rule knows is listed under "other tests" with its own words.
SKIP_GROUPS = [
    ("sandbox tests (the grader's bubblewrap)", r"bubblewrap is not installed", "sudo apt-get install bubblewrap"),
    ("sandbox tests (the grader's bubblewrap)", r"bubblewrap starts as root", "run the tests as root (CI does)"),
    ("browser tests (Chromium)", r"no Chromium", "sudo apt-get install chromium chromium-driver"),
    ("browser tests (Chromium)", r"playwright", "pip install -e '.[test]'"),
    (
        "accessibility tests (axe-core)",
        r"axe-core is not installed",
        "make test-tools (npm install --prefix .tools axe-core@4)",
    ),
    ("Fashion-MNIST from Debian", r"dataset-fashion-mnist", "sudo apt-get install dataset-fashion-mnist"),
    ("set-up checks (run by make)", r"runs under `make test`|\bneeds make\b", "make test"),
    ("the installed `course` command", r"course-utils is not installed", "pip install -e '.[test]'"),
    ("Python 3.10 compile check", r"Python 3\.10", "pyenv install 3.10 (or install python3.10)"),
    ("class-hub test (shared assets)", r"class-hub test", "run the tests as root on Linux"),
    ("other platforms only", r"POSIX only|needs Linux", None),
]


def skip_group(reason: str) -> tuple[str, str | None]:
    """(group, command that enables it or None) for a skip reason; ("other tests", None) when no rule knows it."""
    for group, pattern, command in SKIP_GROUPS:
        if re.search(pattern, reason, re.IGNORECASE):
            return group, command
    return "other tests", None


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """End the run with each group of skipped tests: how many, why, and the one command that runs them too."""
    groups: dict[str, dict] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        group, command = skip_group(reason)
        entry = groups.setdefault(group, {"count": 0, "reasons": {}, "command": command})
        entry["count"] += 1
        entry["reasons"].setdefault(reason, report.nodeid.split("::")[0])
    if not groups:
        return
    total = sum(entry["count"] for entry in groups.values())
    terminalreporter.section(f"skipped: {total} test(s) in {len(groups)} group(s), and how to run them", sep="-")
    for group, entry in groups.items():
        terminalreporter.write_line(f"{group}: {entry['count']} skipped")
        for reason, where in entry["reasons"].items():
            terminalreporter.write_line(f"    why: {reason} ({where})")
        if entry["command"]:
            terminalreporter.write_line(f"    enable: {entry['command']}")
        elif group == "other tests":
            terminalreporter.write_line("    enable: see each reason above")
        else:
            terminalreporter.write_line("    enable: not possible on this platform")
