"""Every command the course tells a reader to run exists.

Collected from every markdown cell of notebooks/**/*.ipynb, README.md (and the other top-level *.md files) and
docs/**/*.md: each `course ...`, `python ...`, `make ...` (also `.venv/bin/course`, `.venv/bin/python`) in an
inline code span or a line of a shell code block. Checked: the file of `python path.py`, the module of
`python -m module`, the target of `make target`, and for `course SUB [words]`: SUB is a command and
`course SUB [words] --help` exits 0, with each `--option` the text names listed in that help.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import sys
from functools import cache
from itertools import product
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMAND = re.compile(r"^(?:\.venv/bin/)?(course|python3?|make)(?:\s|$)")
SHELL_FENCES = ("", "bash", "sh", "shell", "console", "text")
LITERAL = re.compile(r"^[a-z][a-z0-9-]*$")  # a sub-command or a fixed word, not a PATH, FILE or --option


def documents() -> list[tuple[str, str]]:
    """(where, markdown text) for every place a reader is told what to run."""
    found = []
    for notebook in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in notebook.parts:
            continue
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        for n, cell in enumerate(cells):
            if cell["cell_type"] == "markdown":
                found.append((f"{notebook.relative_to(ROOT)} cell {n}", "".join(cell["source"])))
    for page in sorted(ROOT.glob("*.md")) + sorted((ROOT / "docs").rglob("*.md")):
        found.append((str(page.relative_to(ROOT)), page.read_text(encoding="utf-8")))
    return found


def commands_in(text: str) -> list[str]:
    """The commands in one markdown text: shell code block lines (comments dropped, `&&`/`;` chains split) and
    inline code spans."""
    pieces = []
    prose = []
    fence = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = stripped[3:].strip().lower() if fence is None else None
            continue
        if fence is None:
            prose.append(line)
        elif fence in SHELL_FENCES:
            pieces.append(re.sub(r"(^|\s)#.*$", "", stripped))
    pieces += re.findall(r"`([^`\n]+)`", "\n".join(prose))
    commands = []
    for piece in pieces:
        for part in re.split(r"\s*(?:&&|\|\||;)\s*", piece.replace("\\|", "|")):
            if COMMAND.match(part.strip()):
                commands.append(part.strip())
    return commands


def all_commands() -> list[tuple[str, str]]:
    return [(where, command) for where, text in documents() for command in commands_in(text)]


def words(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:  # an unbalanced quote in prose: split on spaces
        return command.split()


def make_targets() -> set[str]:
    targets = set()
    for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines():
        rule = re.match(r"^([A-Za-z0-9_.%/ -]+?)\s*::?(?!=)", line)
        if rule and not line.startswith("\t"):
            targets.update(rule.group(1).split())
    return targets


def _by_kind(kind: str) -> list[tuple[str, str]]:
    return [(where, c) for where, c in all_commands() if COMMAND.match(c).group(1).startswith(kind)]


def test_the_collector_finds_the_commands_a_newcomer_meets_first():
    found = {command for _, command in all_commands()}
    assert {"make lab", "make test", "course fetch weights"} <= found
    assert "python data_scripts/make_dataset.py ~/Pictures/cats" in found
    assert commands_in("run `make lab` then\n```bash\n.venv/bin/course fetch   # weights\nls && make test\n```") == [
        ".venv/bin/course fetch",
        "make test",
        "make lab",
    ]


def test_every_python_file_and_module_named_exists():
    missing = []
    for where, command in _by_kind("python"):
        args = words(command)[1:]
        if not args or args[0] == "-c":
            continue
        if args[0] == "-m":
            module = args[1]
            try:
                ok = importlib.util.find_spec(module) is not None
            except ModuleNotFoundError:
                ok = False
            if not ok:
                missing.append(f"{where}: `{command}`: no module {module}")
        elif args[0].endswith(".py") and not (ROOT / args[0]).is_file():
            missing.append(f"{where}: `{command}`: no file {args[0]}")
    assert missing == [], "\n".join(missing)


def test_every_make_target_named_exists():
    targets = make_targets()
    missing = []
    for where, command in _by_kind("make"):
        for word in words(command)[1:]:
            if "=" in word or word.startswith("-"):
                continue
            if word not in targets:
                missing.append(f"{where}: `{command}`: the Makefile has no target {word}")
    assert missing == [], "\n".join(missing)


def _help_calls(command: str) -> tuple[list[list[str]], list[str]]:
    """The `course ... --help` calls that check ``command`` (alternatives such as `clean|check` each), and the
    --options it names."""
    args = words(command)[1:]
    options = re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", command)
    if not args or args[0].startswith("-"):
        return [["--help"]], []
    if not LITERAL.match(args[0]):  # `course COMMAND --help`: a placeholder
        return [], []
    levels = []
    for arg in args:
        choices = arg.strip("[]").split("|")
        if not all(LITERAL.match(choice) for choice in choices):
            break
        levels.append(choices)
    return [[*chosen, "--help"] for chosen in product(*levels)], options


@cache
def _run_course(calls: tuple[tuple[str, ...], ...]) -> dict[str, tuple[int, str]]:
    """Each `course ARGS` in one fresh process (torch is imported once): argv -> (exit status, help text)."""
    script = """
import contextlib, io, json, sys
from course_utils.tools import cli
results = {}
for argv in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            status = cli.main(list(argv))
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception as exc:
            status, _ = 1, out.write(f"{type(exc).__name__}: {exc}")
    results[" ".join(argv)] = [status, out.getvalue()]
print("\\n@@RESULTS@@" + json.dumps(results))
"""
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(calls)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert "@@RESULTS@@" in result.stdout, result.stderr[-3000:]
    return {k: tuple(v) for k, v in json.loads(result.stdout.split("@@RESULTS@@")[-1]).items()}


@pytest.mark.slow  # runs every command named in the docs
def test_every_course_command_named_exists():
    from course_utils.tools.cli import COMMANDS

    checks = []
    problems = []
    for where, command in _by_kind("course"):
        calls, options = _help_calls(command)
        sub = words(command)[1] if len(words(command)) > 1 else ""
        if calls and calls[0] != ["--help"] and sub not in COMMANDS:
            problems.append(f"{where}: `{command}`: `course` has no command {sub} (it has: {', '.join(COMMANDS)})")
            continue
        checks += [(where, command, call, options) for call in calls]
    ran = _run_course(tuple(sorted({tuple(call) for _, _, call, _ in checks})))
    for where, command, call, options in checks:
        status, text = ran[" ".join(call)]
        if status != 0:
            problems.append(f"{where}: `{command}`: `course {' '.join(call)}` exits {status}: {text.strip()[-300:]}")
        elif text.lstrip().startswith("usage:"):  # argparse: the options it knows are listed
            unknown = [option for option in options if option not in text]
            if unknown:
                problems.append(f"{where}: `{command}`: `course {' '.join(call[:-1])}` has no {', '.join(unknown)}")
    assert problems == [], "\n".join(sorted(set(problems)))


@pytest.mark.parametrize(
    ("command", "calls", "options"),
    [
        ("course fetch [weights|data] [--to DIR]", [["fetch", "weights", "--help"], ["fetch", "data", "--help"]], 1),
        ("course COMMAND --help", [], 0),
        ("course --help", [["--help"]], 0),
        ("course predict MODEL_FILE PHOTO... [--top K]", [["predict", "--help"]], 1),
    ],
)
def test_help_calls_follow_the_words_a_reader_would_type(command, calls, options):
    got_calls, got_options = _help_calls(command)
    assert got_calls == calls and len(got_options) == options
