"""Submissions before they run: find them in a folder, read them safely, put the instructor's tests back.

Also what the source notebook says about a run: the modules its own cells import (imported before the first
check), the names they bind and the helper functions they define (watched in the kernel), the instructor's
cells a submission must not edit, and the hidden-test lines no message may show.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .exercises import BEGIN_SOLUTION, ExerciseError, GradedCell, exercise_name, grade_meta, normalized, strip_solutions
from .grade_report import display_name

MAX_NOTEBOOK_MB = 100
JUNK_FILES = {".DS_Store": "macOS folder metadata", "Thumbs.db": "Windows thumbnail cache", "desktop.ini": "Windows"}
JUNK_FOLDERS = {
    ".ipynb_checkpoints": "Jupyter's autosave copies",
    "__MACOSX": "macOS archive metadata",
    ".git": "a git repository's internals",
}


@dataclass
class Prepared:
    """A submission turned into the notebook to run, and what was found for each test cell."""

    nb: object
    code_cell_of: dict[str, int] = field(default_factory=dict)  # test id -> its number among the code cells
    notes: dict[str, str] = field(default_factory=dict)  # test id -> 'edited ...' etc.
    deleted: set[str] = field(default_factory=set)


class SubmissionProblem(Exception):
    """The submission cannot be run; ``status`` and the message go into the report."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Collected:
    """What is in a submissions folder: notebooks to grade, entries refused (a row each), files skipped (logged)."""

    submissions: list[tuple[str, Path]] = field(default_factory=list)
    refused: list[tuple[str, str, str]] = field(default_factory=list)  # (student, label, reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (label, reason)


# ------------------------------------------------------------------------------------------ finding
MAX_DEPTH = 16  # folders below the submissions folder that are searched; deeper ones are named and skipped
MAX_LISTED = 2000  # files not graded that the report names one by one; the rest are counted


def _student_of(relative: Path) -> str:
    return display_name(relative.parts[0] if len(relative.parts) > 1 else relative.stem)


def collect(folder: Path) -> Collected:
    """Every entry under ``folder``: notebooks to grade, symbolic links and special files refused, the rest skipped.

    Symbolic links are never followed (a link could point at the instructor's solutions or another student's
    file). Names starting with a dot are graded like any other, except known clutter (checkpoints, macOS and
    Windows metadata), which is skipped with its reason. The walk keeps its own list of folders (no
    recursion) and stops ``MAX_DEPTH`` folders down; labels and student names are display-safe text
    (``display_name``) whatever bytes or characters the file names hold.
    """
    folder = Path(folder)
    found, unlisted = Collected(), [0]
    pending = [(folder, 0)]
    while pending:
        here, depth = pending.pop()
        try:
            with os.scandir(here) as listing:
                entries = sorted(listing, key=lambda entry: os.fsencode(entry.name))
        except OSError as exc:
            _skip(found, unlisted, _label(here, folder) + "/", f"skipped: the folder cannot be read ({exc.strerror})")
            continue
        below = []
        for entry in entries:
            path = Path(entry.path)
            if _sort_entry(found, unlisted, folder, path, entry, depth):
                below.append((path, depth + 1))
        pending.extend(reversed(below))
    found.submissions.sort(key=lambda pair: os.fsencode(str(pair[1])))
    if unlisted[0]:
        found.skipped.append(("...", f"and {unlisted[0]} more files not graded, not listed one by one"))
    return found


def _label(path: Path, folder: Path) -> str:
    return display_name(str(path.relative_to(folder)))


def _skip(found: Collected, unlisted: list, label: str, reason: str) -> None:
    if len(found.skipped) < MAX_LISTED:
        found.skipped.append((label, reason))
    else:
        unlisted[0] += 1


def _sort_entry(found: Collected, unlisted: list, folder: Path, path: Path, entry, depth: int) -> bool:
    """Put one entry where it belongs; True when it is a folder to search."""
    relative = path.relative_to(folder)
    label, name = display_name(str(relative)), entry.name
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError as exc:
        _skip(found, unlisted, label, f"skipped: cannot be read ({exc.strerror})")
        return False
    is_notebook = name.lower().endswith(".ipynb")
    if stat.S_ISDIR(info.st_mode):
        if name in JUNK_FOLDERS:
            _skip(found, unlisted, label + "/", f"skipped: {JUNK_FOLDERS[name]}")
        elif depth + 1 >= MAX_DEPTH:
            _skip(found, unlisted, label + "/", f"skipped: folders more than {MAX_DEPTH} levels deep are not searched")
        else:
            return True
    elif stat.S_ISLNK(info.st_mode):
        if os.path.isdir(path):
            found.refused.append(
                (_student_of(relative / "x"), label, "a symbolic link to a folder; links are never followed")
            )
        elif is_notebook:
            target = display_name(os.path.basename(os.readlink(path)))
            found.refused.append(
                (_student_of(relative), label, f"a symbolic link (to {target}), not a file; links are refused")
            )
        else:
            _skip(found, unlisted, label, "skipped: a symbolic link, not a notebook")
    elif not stat.S_ISREG(info.st_mode):
        if is_notebook:
            found.refused.append((_student_of(relative), label, "not a regular file (a pipe, socket or device)"))
        else:
            _skip(found, unlisted, label, "skipped: not a regular file")
    elif name in JUNK_FILES:
        _skip(found, unlisted, label, f"skipped: {JUNK_FILES[name]}")
    elif name.startswith("._"):
        _skip(found, unlisted, label, "skipped: a macOS resource-fork file (._name), not a notebook")
    elif not is_notebook:
        _skip(found, unlisted, label, "skipped: not a notebook (.ipynb)")
    else:
        found.submissions.append((_student_of(relative), path))
    return False


def find_submissions(folder: Path) -> list[tuple[str, Path]]:
    """(student, path) for each notebook ``collect`` would grade, sorted."""
    return collect(Path(folder)).submissions


def read_submission(path: Path) -> bytes:
    """The file's bytes, refusing a symbolic link or special file that appeared since it was listed."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SubmissionProblem("refused", "not a regular file")
        if info.st_size > MAX_NOTEBOOK_MB * 1024 * 1024:
            raise SubmissionProblem(
                "invalid-notebook", f"larger than {MAX_NOTEBOOK_MB} MB ({info.st_size / 1e6:.0f} MB); clear its outputs"
            )
        with os.fdopen(fd, "rb", closefd=True) as handle:
            fd = -1
            return handle.read()
    finally:
        if fd >= 0:
            os.close(fd)


# ---------------------------------------------------------------------------------------- preparing
def prepare(raw: bytes, exercise: str, tests: list[GradedCell], hidden: bool) -> Prepared:
    """The notebook to run: the submission with the instructor's test cells put back, outputs cleared."""
    nb = parse_notebook(raw)
    named = exercise_name(nb)
    if named and named != exercise:
        raise SubmissionProblem("wrong-exercise", f"this notebook is exercise {named!r}, not {exercise!r}")
    prepared = Prepared(nb)
    located = locate_tests(nb, tests, prepared)
    if not located and not named:
        raise SubmissionProblem(
            "wrong-exercise", f"none of the test cells of {exercise!r} were found; is this the right notebook?"
        )
    put_tests_back(nb, located, hidden, prepared)
    return prepared


def parse_notebook(raw: bytes):
    """The submission's bytes as a notebook; SubmissionProblem('invalid-notebook', why) when they are not one."""
    try:
        text = raw.decode("utf-8")
        json.loads(text)
    except UnicodeDecodeError as exc:
        raise SubmissionProblem(
            "invalid-notebook", f"not UTF-8 text ({exc.reason}); ask the student to save it again from Jupyter"
        ) from None
    except json.JSONDecodeError as exc:
        raise SubmissionProblem(
            "invalid-notebook",
            f"not a valid notebook: not valid JSON ({exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}; a cut-off upload or a file edited by hand?)",
        ) from None
    except RecursionError:
        raise SubmissionProblem("invalid-notebook", "not a valid notebook: JSON nested too deeply") from None
    try:
        nb = nbformat.reads(text, as_version=4)
    except MemoryError:
        raise  # not the notebook's fault as such: the caller says how much memory reading it needs
    except Exception as exc:  # nbformat's own errors, or anything a malformed notebook raises
        first = str(exc).strip().split("\n")[0][:200]
        raise SubmissionProblem(
            "invalid-notebook", f"not a valid notebook: valid JSON, but not a notebook Jupyter can open ({first})"
        ) from None
    if not isinstance(getattr(nb, "cells", None), list):
        raise SubmissionProblem("invalid-notebook", "not a valid notebook (no list of cells)")
    return nb


def locate_tests(nb, tests: list[GradedCell], prepared: Prepared) -> dict[int, GradedCell]:
    """Cell index -> the test cell found there (by its grade id, else by its released source); notes what
    was edited, and ``prepared.deleted`` what was not found."""
    by_id, by_source = {}, {}
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        meta = grade_meta(cell)
        if meta is not None:
            by_id.setdefault(meta["id"], index)
        by_source.setdefault(normalized(cell.get("source", "")), index)
    located = {}
    for test in tests:
        if test.grade_id in by_id:
            index = by_id[test.grade_id]
        elif normalized(test.released_source) in by_source:
            index = by_source[normalized(test.released_source)]
            prepared.notes[test.grade_id] = "test cell had lost its metadata; matched by its source"
        else:
            prepared.deleted.add(test.grade_id)
            continue
        located[index] = test
        if normalized(nb.cells[index].source) != normalized(test.released_source):
            prepared.notes[test.grade_id] = "test cell was edited; graded with the original test"
    return located


def put_tests_back(nb, located: dict[int, GradedCell], hidden: bool, prepared: Prepared) -> None:
    """The instructor's version of each located test cell in place, every output cleared, no other graded cell."""
    code_number = 0
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        if index in located:
            test = located[index]
            cell.source = test.full_source if hidden else test.released_source
            cell.metadata = nbformat.NotebookNode({"grade": {"id": test.grade_id, "points": test.points}})
            prepared.code_cell_of[test.grade_id] = code_number
        elif "grade" in cell.get("metadata", {}):
            cell.metadata.pop("grade")  # only the instructor's test cells are graded cells
        code_number += 1
    nb.metadata.pop("widgets", None)


def preload_modules(source_nb) -> list[str]:
    """Modules the source notebook's own (non-test, non-solution) cells import: imported before the first check."""
    found = []
    for cell in source_nb.cells:
        if cell.cell_type != "code" or grade_meta(cell) is not None:
            continue
        try:
            tree = ast.parse(strip_solutions(cell.source))
        except (SyntaxError, ExerciseError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append(node.module)
                found += [f"{node.module}.{alias.name}" for alias in node.names]  # submodules (fails quietly if not)
    return list(dict.fromkeys(found))


def import_bindings(source_nb) -> dict[str, str]:
    """Names the source notebook's own cells bind by importing: {'checks': 'course_utils:checks', 'torch': 'torch'}."""
    bound = {}
    for cell in _scaffolding_cells(source_nb):
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    bound[alias.asname or top] = alias.name if alias.asname else top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    if alias.name != "*":
                        bound[alias.asname or alias.name] = f"{node.module}:{alias.name}"
    return bound


def source_digest(text: str) -> str:
    """sha256 of source text with trailing spaces and surrounding blank lines removed (the probe computes the same)."""

    lines = text.strip("\n").split("\n")
    return hashlib.sha256("\n".join(line.rstrip() for line in lines).encode()).hexdigest()


def defined_functions(source_nb) -> dict[str, str]:
    """Functions the source notebook's own cells define (helpers the tests call): name -> digest of their source."""
    found = {}
    for cell in _scaffolding_cells(source_nb):
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        lines = cell.source.split("\n")
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                found[node.name] = source_digest("\n".join(lines[first - 1 : node.end_lineno]))
    return found


def _scaffolding_cells(source_nb) -> list:
    """The source notebook's own code cells: neither graded tests nor cells with a solution region."""
    return [
        cell
        for cell in source_nb.cells
        if cell.cell_type == "code" and grade_meta(cell) is None and BEGIN_SOLUTION not in cell.source
    ]


def edited_scaffolding(nb, source_nb) -> list[str]:
    """The instructor's cells (setup, parameters, data, helpers) that the submission changed or removed."""
    by_id = {cell.get("id"): cell for cell in nb.cells if cell.get("cell_type") == "code" and cell.get("id")}
    sources = {normalized(cell.get("source", "")) for cell in nb.cells if cell.get("cell_type") == "code"}
    edited = []
    for cell in _scaffolding_cells(source_nb):
        wanted = normalized(cell.source)
        mine = by_id.get(cell.get("id"))
        if (mine is not None and normalized(mine.get("source", "")) == wanted) or wanted in sources:
            continue
        first = next((line for line in cell.source.split("\n") if line.strip()), "")[:40]
        edited.append(f"cell '{first}'")
    return edited


def hidden_lines(tests: list[GradedCell]) -> list[str]:
    """Lines of hidden tests long enough to be recognised, longest first (what a message must never show)."""
    lines = set()
    for test in tests:
        shown = {line.strip() for line in test.released_source.split("\n")}
        for line in test.full_source.split("\n"):
            stripped = line.strip()
            if len(stripped) >= 12 and stripped not in shown and not stripped.startswith("###"):
                lines.add(stripped)
    return sorted(lines, key=len, reverse=True)


def redact(message: str, secret_lines: list[str]) -> str:
    """``message`` with any line of hidden test source replaced by '[hidden test]'."""
    for line in secret_lines:
        if line in message:
            message = message.replace(line, "[hidden test]")
    return message
