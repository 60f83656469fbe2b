"""Keep committed notebooks clean: outputs only in '# NBVAL_CHECK_OUTPUT' cells.

Checked cells keep their outputs and an execution count, numbered 1, 2, 3, ... in order (nbval refuses
to compare a cell whose reference has outputs but no count: "Unrun reference cell has outputs").
Every other code cell has neither.

    course notebooks clean [PATH ...]     strip everything but checked outputs
    course notebooks check [PATH ...]     list notebooks that are not clean (exit 1)
    course notebooks refresh [PATH ...]   execute, then keep checked outputs only
    course notebooks slides [--check] [PATH ...]   derive each lesson's slide metadata (see slide_metadata)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat

from ..paths import atomic_write_text
from . import slide_metadata
from .lessons import find_lessons

CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
ANSI = re.compile(r"(\x1b|#x1B)\[[0-9;]*[A-Za-z]")  # colour codes; junit XML writes ESC as the text '#x1B'
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Failed|Interrupt|Exit|Warning)\b")
VOLATILE_METADATA = ("widgets", "execution")


def last_exception(text: str) -> tuple[list[str], int | None]:
    """A traceback's lines without colour codes, and the index of the last one that names an exception (or None)."""
    lines = [line.rstrip() for line in ANSI.sub("", text or "").strip().split("\n")]
    found = [number for number, line in enumerate(lines) if EXCEPTION_LINE.match(line.strip())]
    return lines, (found[-1] if found else None)


def is_checked(cell) -> bool:
    """True for a code cell whose output nbval compares."""
    return cell.cell_type == "code" and CHECK_MARK in cell.source


def notebook_paths(paths: list[str | Path]) -> list[Path]:
    """Every .ipynb under the given files or folders, checkpoints and build outputs excluded."""
    found = []
    for path in map(Path, paths):
        candidates = [path] if path.is_file() else sorted(path.rglob("*.ipynb"))
        found += [p for p in candidates if ".ipynb_checkpoints" not in p.parts and "build" not in p.parts]
    return found


def clean_notebook(nb) -> bool:
    """Strip unchecked outputs, execution counts and volatile metadata in place; True if anything changed."""
    before = nbformat.writes(nb)
    for key in VOLATILE_METADATA:
        nb.metadata.pop(key, None)
    checked = 0
    for cell in nb.cells:
        for key in VOLATILE_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type != "code":
            continue
        if is_checked(cell):
            checked += 1
            cell.execution_count = checked
        else:
            cell.execution_count = None
            cell.outputs = []
        for output in cell.outputs:
            if "execution_count" in output:
                output["execution_count"] = cell.execution_count
    return nbformat.writes(nb) != before


def problems(nb) -> list[str]:
    """Why a notebook is not clean (empty list when it is)."""
    found = []
    checked = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if is_checked(cell):
            checked += 1
            if cell.execution_count != checked:
                found.append(f"cell {index}: checked cell should have execution count {checked}")
            if not cell.outputs:
                found.append(f"cell {index}: checked cell has no committed output to compare")
        elif cell.execution_count is not None:
            found.append(f"cell {index}: has an execution count")
        if cell.outputs and not is_checked(cell):
            found.append(f"cell {index}: has outputs but no {CHECK_MARK}")
    if "widgets" in nb.metadata:
        found.append("notebook metadata holds widget state")
    return found


def write_notebook(nb, path: Path) -> None:
    """Write atomically, in nbformat's canonical layout."""
    atomic_write_text(path, nbformat.writes(nb) + "\n")


def refresh(path: Path, timeout: int = 600) -> float:
    """Execute a notebook in its own folder, keep only checked outputs; return seconds taken."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    seconds = time.perf_counter() - start
    clean_notebook(nb)
    write_notebook(nb, path)
    return seconds


def lesson_paths(paths: list[str | Path]) -> list[Path]:
    """The lessons (NN_name.ipynb) in the given folders, and the given notebook files themselves."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += find_lessons(path)
        elif path.suffix == ".ipynb" and path.is_file():
            found.append(path)
        else:
            raise SystemExit(f"notebooks: {path} is neither a folder nor a notebook (.ipynb)")
    return found


def slides(paths: list[str | Path], check: bool = False) -> int:
    """Write (or, with check, only compare) the derived slide metadata of lessons; 1 if a check found a difference."""
    status = 0
    for path in lesson_paths(paths):
        nb = nbformat.read(path, as_version=4)
        for note in slide_metadata.buried_headings(nb):
            print(f"{path}: note: {note}", file=sys.stderr)
        if check:
            for problem in slide_metadata.slide_problems(nb):
                print(f"{path}: {problem} (run `course notebooks slides {path}`)")
                status = 1
        elif slide_metadata.apply_slide_metadata(nb):
            write_notebook(nb, path)
            print(f"slide metadata written: {path}")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course notebooks", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["clean", "check", "refresh", "slides"])
    parser.add_argument("paths", nargs="*", default=["notebooks"])
    parser.add_argument("--check", action="store_true", help="slides: only compare, exit 1 on a difference")
    args = parser.parse_intermixed_args(argv)  # `slides --check notebooks` as well as `slides notebooks --check`
    if args.command == "slides":
        return slides(args.paths, check=args.check)
    status = 0
    for path in notebook_paths(args.paths):
        nb = nbformat.read(path, as_version=4)
        if args.command == "clean":
            if clean_notebook(nb):
                write_notebook(nb, path)
                print(f"cleaned {path}")
        elif args.command == "check":
            for problem in problems(nb):
                print(f"{path}: {problem}")
                status = 1
        else:
            print(f"refreshing {path} (COURSE_PROFILE={os.environ.get('COURSE_PROFILE', 'full')}) ...", flush=True)
            print(f"  {refresh(path):.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
