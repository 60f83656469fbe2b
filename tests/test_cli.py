"""The `course` command: every subcommand answers --help with its own usage, an unknown one is refused with the
list, the console script is installed next to the interpreter, and make and README name only real commands.

Everything runs through `sys.executable`, never make or a shell, so the same tests check Windows.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
from helpers import course

from course_utils.tools import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")


@functools.cache
def help_of(name: str) -> subprocess.CompletedProcess:
    """`course NAME --help`, run once per test session (bench and sweep load torch to answer)."""
    return course(name, "--help")


@pytest.mark.parametrize("name", list(cli.COMMANDS))
@pytest.mark.slow  # a fresh interpreter per command
def test_every_command_answers_help_with_its_own_usage(name):
    result = help_of(name)
    assert result.returncode == 0, result.stderr
    first = next(line for line in result.stdout.splitlines() if line.strip())
    assert f"course {name}" in first, f"`course {name} --help` should start with its usage, got: {first!r}"
    others = [other for other in cli.COMMANDS if other != name and f"usage: course {other}" in result.stdout]
    assert not others, f"`course {name} --help` shows the usage of {others}"


def test_help_lists_every_command_with_its_summary():
    result = course("--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: course COMMAND")
    for name, (_, summary) in cli.COMMANDS.items():
        assert re.search(rf"^  {re.escape(name)} +{re.escape(summary)}$", result.stdout, re.MULTILINE), name


def test_an_unknown_command_exits_2_with_the_list():
    result = course("predikt")
    assert result.returncode == 2 and result.stdout == ""
    assert "course: unknown command 'predikt'" in result.stderr
    assert all(f"  {name} " in result.stderr for name in cli.COMMANDS)
    bare = course()
    assert bare.returncode == 2 and "commands:" in bare.stdout  # no command at all: the list, and a failure status


def test_every_command_module_has_a_main():
    import importlib

    for name, (module, summary) in cli.COMMANDS.items():
        assert callable(getattr(importlib.import_module(module), "main", None)), f"{module} has no main() for {name}"
        assert summary and not summary.endswith("."), name


def test_dispatch_passes_arguments_and_status_and_restores_argv(tmp_path, capsys):
    template = tmp_path / "t.md"
    template.write_text("{{DAY_SINCE_2026_11_01}}\n", encoding="utf-8")
    argv0 = sys.argv[0]
    assert cli.main(["diary", str(template), "--today", "2026-11-27"]) == 0
    assert capsys.readouterr().out == "26\n"
    assert cli.main(["diary", str(tmp_path / "missing.md")]) != 0  # the tool's own failure status comes through
    assert sys.argv[0] == argv0


def console_script() -> Path:
    """Where pip puts the `course` script for this interpreter: Scripts\\course.exe on Windows, bin/course else."""
    return Path(sysconfig.get_path("scripts")) / ("course.exe" if os.name == "nt" else "course")


def test_console_script_is_installed_next_to_the_interpreter():
    try:
        distribution = metadata.distribution("course-utils")
    except metadata.PackageNotFoundError:
        pytest.skip("course-utils is not installed in this environment (pip install -e '.[test]' installs `course`)")
    entry = [e for e in distribution.entry_points if e.group == "console_scripts" and e.name == "course"]
    assert [e.value for e in entry] == ["course_utils.tools.cli:main"]
    script = console_script()
    assert script.is_file(), f"no {script}: reinstall with pip install -e '.[test]'"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's course_utils, wherever the script was made
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0 and all(f"  {name} " in result.stdout for name in cli.COMMANDS)


def makefile_calls() -> list[tuple[str, str]]:
    """(command, the first word after it) for every `$(COURSE) ...` in the Makefile's recipes."""
    return [
        (m.group(1), m.group(2) or "")
        for m in re.finditer(r"\$\(COURSE\) ([a-z-]+)(?: ([A-Za-z_][\w.;-]*))?", MAKEFILE)
    ]


@pytest.mark.slow  # `course NAME --help` for each command the Makefile calls, a fresh interpreter each
def test_make_targets_call_only_existing_commands_and_subcommands():
    calls = makefile_calls()
    assert {"lab", "fetch", "slides", "handouts", "notebooks"} <= {name for name, _ in calls}
    for name, word in calls:
        assert name in cli.COMMANDS, f"the Makefile calls `course {name}`, which does not exist"
        usage = help_of(name).stdout
        choices = {c for group in re.findall(r"\{([\w,-]+)\}", usage.split("\n\n")[0]) for c in group.split(",")}
        word = word.rstrip(";")
        if choices and word and not word.startswith("-") and "." not in word:
            assert word in choices, f"the Makefile calls `course {name} {word}`; it takes {sorted(choices)}"


def readme_commands(text: str = README) -> set[str]:
    """Every `course NAME` in README.md's code: inline `code` and fenced blocks."""
    code = re.findall(r"`([^`\n]+)`", text) + re.findall(r"```.*?\n(.*?)```", text, re.DOTALL)
    return {m for snippet in code for m in re.findall(r"(?:^|[\s/\\(=])course ([a-z][a-z-]*)", snippet, re.MULTILINE)}


def test_readme_mentions_only_existing_commands_and_lists_them_all():
    mentioned = readme_commands()
    assert mentioned - set(cli.COMMANDS) == set(), "README names commands that do not exist"
    assert set(cli.COMMANDS) - mentioned == set(), "README's command table misses these commands"
    table = README[README.index("| command | what it does |") :].split("\n\n")[0]
    assert all(f"`course {name}" in table for name in cli.COMMANDS)


def test_readme_check_finds_a_wrong_name_in_code_but_not_in_prose():
    text = "The course takes a week.\n\n```bash\n.venv/bin/course predikt photo.jpg\n```\nRun `course lab`.\n"
    assert readme_commands(text) == {"predikt", "lab"}


def test_author_tools_outside_the_checkout_say_so_in_one_line_with_status_2(monkeypatch, capsys):
    monkeypatch.setattr(cli, "checkout_root", lambda: None)
    for name in cli.CHECKOUT_ONLY:
        assert cli.main([name, "--help"]) == 2, name
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert out == "" and len(lines) == 1 and f"course {name}:" in lines[0] and "checkout" in lines[0]
    assert cli.checkout_refusal("grade", ["subs", "--exercise", "ex1", "--sources", "src"]) is None
    assert cli.checkout_refusal("grade", ["subs", "--exercise", "ex1"]) is not None
    assert cli.checkout_refusal("lab", []) is None  # a student's command is never refused for want of a checkout


def test_a_missing_course_folder_is_reported_in_one_line_with_status_2(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("COURSE_ROOT", raising=False)
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["fetch", "data"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("course fetch: no course folder") and "course init DIR" in err
    assert list(tmp_path.iterdir()) == []


def test_version_is_the_packages(capsys):
    from course_utils import __version__

    assert cli.main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"course {__version__}"


def test_a_command_is_recorded_as_typed_and_can_be_typed_again():
    """Results files and handouts record the command that made them; a path with a space stays one argument."""
    assert cli.as_typed("bench", ["--n", "20"]) == "course bench --n 20"
    typed = cli.as_typed("grade", ["my class/", "--exercise", "ex1", "--out", "it's.csv"])
    assert typed == "course grade 'my class/' --exercise ex1 --out 'it'\"'\"'s.csv'"
    assert shlex.split(typed)[2:] == ["my class/", "--exercise", "ex1", "--out", "it's.csv"]
