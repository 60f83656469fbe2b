"""Graded exercises: one source notebook each, released as a student copy; nbgrader takes the same sources.

A source notebook (notebooks/exercises/source/NAME.ipynb) holds the solution between
``### BEGIN SOLUTION`` / ``### END SOLUTION`` and hidden tests between ``### BEGIN HIDDEN TESTS`` /
``### END HIDDEN TESTS`` (nbgrader's markers). A hint for the student is a comment line above
``### BEGIN SOLUTION``: it stays in the student copy. Graded test cells carry cell metadata
``{"grade": {"id": "ex1_shapes", "points": 2}}``; the notebook carries ``{"exercise": {"name": NAME}}``.
Graded cells and solution cells also carry nbgrader's cell metadata (``metadata.nbgrader``, schema 3), derived
from the course's own by ``nbgrader_metadata`` and written into the sources by ``course release``, so the two
never disagree and an nbgrader course can take the sources as they are.

    course release             write the student copies (notebooks/exercises/NAME.ipynb) and the sources'
                               nbgrader metadata
    course release --check     exit 1 if a committed student copy or a source's nbgrader metadata is stale
    course release --list      exercises, graded cells and points

A student copy has each solution region replaced by nbgrader's own stub, ``# YOUR CODE HERE`` and
``raise NotImplementedError()`` at the same indentation (what ``nbgrader generate_assignment`` writes with its
default configuration), hidden tests removed, and all outputs cleared.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..paths import checkout_root, course_root
from .notebook_tools import clean_notebook, write_notebook

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
MARKERS = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN)
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")  # nbgrader's ClearSolutions.code_stub["python"]
NBGRADER_SCHEMA = 3
_BEGIN_SOLUTION_RE = re.compile(r"^(?P<indent>\s*)### BEGIN SOLUTION\s*$")


class ExerciseError(ValueError):
    """A source notebook is malformed (unbalanced markers, missing metadata); the message says where."""


@dataclass
class GradedCell:
    """One graded test cell of a source notebook: its id, points, and the test as released and as graded."""

    grade_id: str
    points: float
    index: int  # position among all cells of the source notebook
    released_source: str  # what students see (hidden tests removed)
    full_source: str  # visible and hidden tests (what --hidden grades with)


def exercises_dir() -> Path:
    """notebooks/exercises of the checkout (else of the course folder): the student copies."""
    return (checkout_root() or course_root()) / "notebooks" / "exercises"


def source_dir() -> Path:
    """notebooks/exercises/source: the source notebooks with solutions and hidden tests (only in the checkout)."""
    return exercises_dir() / "source"


def source_paths(folder: Path | None = None) -> list[Path]:
    """Every source notebook, sorted by name."""
    return sorted((folder or source_dir()).glob("*.ipynb"))


def source_path(name: str, folder: Path | None = None) -> Path:
    """The source notebook of exercise ``name`` (with or without .ipynb); a clear error if there is none."""
    folder = folder or source_dir()
    path = folder / (name if name.endswith(".ipynb") else f"{name}.ipynb")
    if not path.is_file():
        known = ", ".join(p.stem for p in source_paths(folder)) or "none"
        raise ExerciseError(f"no exercise {name!r}: {path} does not exist. Known exercises: {known}")
    return path


def exercise_name(nb) -> str | None:
    """The exercise a notebook belongs to (notebook metadata exercise.name), or None."""
    meta = nb.metadata.get("exercise")
    return meta.get("name") if isinstance(meta, dict) else None


def grade_meta(cell) -> dict | None:
    """The cell's {"id", "points"} if it is a graded test cell, else None."""
    meta = cell.get("metadata", {}).get("grade")
    if isinstance(meta, dict) and isinstance(meta.get("id"), str):
        return meta
    return None


def _regions(source: str, begin: str, end: str, where: str) -> list[tuple[int, int]]:
    """(first, last) line numbers of each begin..end region, markers included; errors on unbalanced markers."""
    lines = source.split("\n")
    regions, start = [], None
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(begin):
            if start is not None:
                raise ExerciseError(f"{where}: '{begin}' at line {number + 1} before the previous one was closed")
            start = number
        elif stripped.startswith(end):
            if start is None:
                raise ExerciseError(f"{where}: '{end}' at line {number + 1} without a '{begin}' before it")
            regions.append((start, number))
            start = None
    if start is not None:
        raise ExerciseError(f"{where}: '{begin}' at line {start + 1} is never closed with '{end}'")
    return regions


def strip_solutions(source: str, where: str = "cell") -> str:
    """Replace each solution region by nbgrader's stub (``# YOUR CODE HERE``, ``raise NotImplementedError()``)."""
    lines = source.split("\n")
    out, last = [], 0
    for first, end in _regions(source, BEGIN_SOLUTION, END_SOLUTION, where):
        match = _BEGIN_SOLUTION_RE.match(lines[first])
        if not match:
            raise ExerciseError(
                f"{where}: line {first + 1} must read '{BEGIN_SOLUTION}' alone (nbgrader drops the rest of that "
                "line): put a hint in a comment line above it"
            )
        out += lines[last:first]
        out += [match.group("indent") + stub for stub in CODE_STUB]
        last = end + 1
    out += lines[last:]
    return "\n".join(out)


def strip_hidden(source: str, where: str = "cell") -> str:
    """Remove each hidden-test region, markers included."""
    lines = source.split("\n")
    keep = [True] * len(lines)
    for first, end in _regions(source, BEGIN_HIDDEN, END_HIDDEN, where):
        keep[first : end + 1] = [False] * (end + 1 - first)
    return "\n".join(line for line, kept in zip(lines, keep, strict=True) if kept).rstrip("\n")


def normalized(source: str) -> str:
    """Source with trailing spaces and blank lines at the ends removed (what 'edited' is judged on)."""
    return "\n".join(line.rstrip() for line in source.strip("\n").split("\n"))


def graded_cells(nb, where: str = "notebook") -> list[GradedCell]:
    """The graded test cells of a source notebook, in order; errors on duplicate ids or bad points."""
    found, seen = [], set()
    for index, cell in enumerate(nb.cells):
        meta = grade_meta(cell)
        if meta is None:
            continue
        if cell.cell_type != "code":
            raise ExerciseError(f"{where}: cell {index} has grade metadata but is not a code cell")
        grade_id, points = meta["id"], meta.get("points", 1)
        if grade_id in seen:
            raise ExerciseError(f"{where}: grade id {grade_id!r} is used by two cells")
        if not isinstance(points, (int, float)) or points <= 0:
            raise ExerciseError(f"{where}: cell {grade_id!r} needs positive points, has {points!r}")
        seen.add(grade_id)
        if _regions(cell.source, BEGIN_SOLUTION, END_SOLUTION, f"{where} cell {index}"):
            raise ExerciseError(f"{where}: test cell {grade_id!r} must not contain a solution region")
        released = strip_hidden(cell.source, f"{where} cell {index}")
        found.append(GradedCell(grade_id, float(points), index, released, cell.source))
    return found


_DEF_RE = re.compile(r"^def (\w+)\(", re.MULTILINE)


def _answer_id(name: str, cell, index: int) -> str:
    """nbgrader's grade_id of a solution cell: exercise prefix, the first function it defines, ``_answer``."""
    functions = _DEF_RE.findall(cell.source)
    stem = functions[0] if functions else f"cell{index}"
    return f"{name.split('_')[0]}_{stem}_answer"


def nbgrader_metadata(nb, where: str = "notebook") -> list[dict | None]:
    """nbgrader's cell metadata (schema 3) for each cell, derived from the course's: a graded test cell is a locked
    autograder test with its points, a cell with a solution region an autograded answer; None for the others."""
    name = exercise_name(nb) or "exercise"
    graded = {cell.index: cell for cell in graded_cells(nb, where)}
    found, seen = [], {cell.grade_id for cell in graded.values()}
    for index, cell in enumerate(nb.cells):
        base = {"schema_version": NBGRADER_SCHEMA, "task": False}
        if index in graded:
            points = cell.metadata["grade"].get("points", 1)
            found.append(
                base
                | {
                    "grade": True,
                    "grade_id": graded[index].grade_id,
                    "locked": True,
                    "points": points,
                    "solution": False,
                }
            )
        elif cell.cell_type == "code" and _regions(cell.source, BEGIN_SOLUTION, END_SOLUTION, f"{where} cell {index}"):
            answer = _answer_id(name, cell, index)
            if answer in seen:
                raise ExerciseError(f"{where}: cell {index}'s nbgrader id {answer!r} is already used by another cell")
            seen.add(answer)
            found.append(base | {"grade": False, "grade_id": answer, "locked": False, "solution": True})
        else:
            found.append(None)
    return found


def apply_nbgrader_metadata(nb, where: str = "notebook") -> bool:
    """Write nbgrader_metadata into the cells (and remove it where there is none); True if anything changed."""
    changed = False
    for cell, meta in zip(nb.cells, nbgrader_metadata(nb, where), strict=True):
        if cell.metadata.get("nbgrader") == meta:
            continue
        changed = True
        if meta is None:
            cell.metadata.pop("nbgrader", None)
        else:
            cell.metadata["nbgrader"] = meta
    return changed


def student_copy(source_nb, where: str = "notebook"):
    """A new notebook: solutions replaced by NotImplementedError, hidden tests removed, outputs cleared."""
    if not exercise_name(source_nb):
        raise ExerciseError(f"{where}: notebook metadata needs {{'exercise': {{'name': ...}}}}")
    if not graded_cells(source_nb, where):
        raise ExerciseError(f"{where}: no graded test cells (cell metadata 'grade': {{'id': ..., 'points': ...}})")
    nb = copy.deepcopy(source_nb)
    apply_nbgrader_metadata(nb, where)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        cell.source = strip_hidden(strip_solutions(cell.source, f"{where} cell {index}"), f"{where} cell {index}")
        cell.outputs = []
        cell.execution_count = None
    clean_notebook(nb)
    return nb


def student_path(source: Path, out_dir: Path | None = None) -> Path:
    """Where the student copy of ``source`` goes."""
    return (out_dir or exercises_dir()) / source.name


def release(sources: list[Path] | None = None, out_dir: Path | None = None) -> list[Path]:
    """Write the sources' nbgrader metadata where it is stale and the student copy of each; return the copies."""
    written = []
    for path in sources if sources is not None else source_paths():
        nb = nbformat.read(path, as_version=4)
        if apply_nbgrader_metadata(nb, str(path)):
            write_notebook(nb, path)
        target = student_path(path, out_dir)
        write_notebook(student_copy(nb, str(path)), target)
        written.append(target)
    return written


def stale_copies(sources: list[Path] | None = None, out_dir: Path | None = None) -> list[str]:
    """Problems with the committed student copies (missing or different from what release writes)."""
    problems = []
    for path in sources if sources is not None else source_paths():
        target = student_path(path, out_dir)
        source = nbformat.read(path, as_version=4)
        if apply_nbgrader_metadata(source, str(path)):
            problems.append(f"{path}: its nbgrader metadata does not match its grade metadata and solution regions")
        expected = nbformat.writes(student_copy(source, str(path))) + "\n"
        if not target.is_file():
            problems.append(f"{target} is missing")
        elif target.read_text(encoding="utf-8") != expected:
            problems.append(f"{target} differs from its source {path}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """`course release [--check | --list] [--out DIR]`."""
    parser = argparse.ArgumentParser(prog="course release", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if a committed student copy is stale")
    mode.add_argument("--list", action="store_true", help="list the exercises, their graded cells and points")
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for the student copies (default notebooks/exercises)"
    )
    args = parser.parse_args(argv)
    try:
        if not source_paths():
            print(f"error: no source notebooks in {source_dir()}: nothing to release or check", file=sys.stderr)
            return 2
        if args.check:
            problems = stale_copies(out_dir=args.out)
            for problem in problems:
                print(problem)
            if problems:
                print("Run `course release` and commit the copies and sources it wrote.")
            return 1 if problems else 0
        if args.list:
            for path in source_paths():
                cells = graded_cells(nbformat.read(path, as_version=4), str(path))
                print(f"{path.stem}: {len(cells)} graded cells, {sum(c.points for c in cells):g} points")
                for cell in cells:
                    print(f"  {cell.grade_id:<28} {cell.points:g}")
            return 0
        for path in release(out_dir=args.out):
            print(f"wrote {path}")
        return 0
    except ExerciseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
