"""The end of a test run says what was skipped, grouped, with the reason and the one command that enables it.

Runs real pytest in a subprocess on a tiny test folder that uses this suite's conftest.py, and checks that every
skip reason written in the suite's own tests falls into a group that says how to enable it.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# tests/conftest.py by its path (another folder's conftest may hold the name `conftest` in sys.modules)
_spec = importlib.util.spec_from_file_location("course_tests_conftest", TESTS / "conftest.py")
_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conftest)
skip_group = _conftest.skip_group

TINY = textwrap.dedent("""
    import pytest

    needs_bwrap = pytest.mark.skipif(True, reason="bubblewrap is not installed (CI installs it: .ci/run)")

    @needs_bwrap
    def test_sandbox_one():
        pass

    @needs_bwrap
    def test_sandbox_two():
        pass

    def test_browser():
        pytest.skip("no Chromium at /usr/bin/chromium: install Debian's chromium (.ci/run does)")

    def test_something_else():
        pytest.skip("the moon is not full")

    def test_runs():
        assert True
""")


def run_pytest(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-c", str(folder / "pytest.ini"), *args],
        cwd=folder,
        env=env | {"OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def tiny_suite(tmp_path: Path) -> Path:
    shutil.copy(TESTS / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (tmp_path / "test_tiny.py").write_text(TINY, encoding="utf-8")
    return tmp_path


@pytest.mark.slow  # a pytest run of its own
def test_the_run_ends_with_each_skipped_group_its_reason_and_the_command(tmp_path):
    result = run_pytest(tiny_suite(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "skipped: 4 test(s) in 3 group(s), and how to run them" in out, out
    summary = out[out.index("skipped: 4 test(s)") :]
    assert "sandbox tests (the grader's bubblewrap): 2 skipped" in summary
    assert "why: bubblewrap is not installed (CI installs it: .ci/run) (test_tiny.py)" in summary
    assert "enable: sudo apt-get install bubblewrap" in summary
    assert "browser tests (Chromium): 1 skipped" in summary
    assert "enable: sudo apt-get install chromium chromium-driver" in summary
    assert "other tests: 1 skipped" in summary and "why: the moon is not full" in summary
    assert "enable: see each reason above" in summary
    assert summary.index("sandbox tests") < summary.index("enable: sudo apt-get install bubblewrap")
    assert out.rstrip().splitlines()[-1].startswith("=")  # pytest's own final line still ends the run


@pytest.mark.slow  # a pytest run of its own
def test_a_run_that_skips_nothing_adds_nothing(tmp_path):
    folder = tiny_suite(tmp_path)
    result = run_pytest(folder, "-k", "test_runs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "how to run them" not in result.stdout


def skip_reasons_in_the_suite() -> list[tuple[str, str]]:
    """(file, reason) for every literal reason given to pytest.skip / skipif / importorskip in tests/."""
    found = []
    for path in sorted(TESTS.glob("test_*.py")):
        if path.name == Path(__file__).name:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not ast.unparse(node.func).endswith(
                ("skip", "skipif", "importorskip")
            ):
                continue
            texts = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            texts = texts[1:] if ast.unparse(node.func).endswith("importorskip") else texts
            texts += [k.value.value for k in node.keywords if k.arg == "reason" and isinstance(k.value, ast.Constant)]
            found += [(path.name, text) for text in texts]
    return found


def test_every_skip_in_the_suite_falls_into_a_group_that_says_how_to_enable_it():
    reasons = skip_reasons_in_the_suite()
    assert any("bubblewrap" in r for _, r in reasons) and any("Chromium" in r for _, r in reasons)
    unknown = [(name, r) for name, r in reasons if skip_group(r)[0] == "other tests"]
    assert not unknown, f"add a rule to SKIP_GROUPS in tests/conftest.py for: {unknown}"
    for name, reason in reasons:
        group, command = skip_group(reason)
        assert command or group == "other platforms only", (name, reason)
