"""`course init DIR`: write a student's working folder (lessons, student copies of the exercises, diary template).

    course init DIR        write DIR/notebooks/ (lessons), DIR/notebooks/exercises/ (exercises), DIARY.template.md,
                           README.md and the marker file that makes DIR a course folder

Run it again to update a folder: a file the student has not changed is replaced by the course's newer copy; a
file the student has edited is kept, and reported. The marker (.course-folder.json) records what was written.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from .. import __version__
from ..paths import MARKER, PACKAGE_DIR, atomic_write_bytes, atomic_write_text, is_checkout
from .cli import doc_parser

# What a student's folder holds, relative to the checkout; pyproject.toml's package data for
# course_utils.student_folder carries the same files in the wheel (tests/test_outside_checkout.py compares them).
PATTERNS = ("DIARY.template.md", "notebooks/*.ipynb", "notebooks/exercises/ex*.ipynb")

README = """# Transfer learning, hands-on: your working folder

Written by `course init` (course-utils {version}). Everything you change here is yours.

    course fetch       get the verified ImageNet weights and Fashion-MNIST (once; works offline too)
    course lab         open JupyterLab on lesson 00 (notebooks/00_start_here.ipynb)

- `notebooks/` holds the lessons in order, `notebooks/exercises/` the graded exercises. Check an exercise with
  `python -m pytest --nbval-lax notebooks/exercises/ex1_freeze_and_head.ipynb` (its graded cells must pass).
- Copy `DIARY.template.md` to `DIARY.md` (or run `course diary DIARY.template.md -o DIARY.md`) and keep notes.
- Caches, your photos and your models go to `data/` here (or to $COURSE_DATA_DIR if your class set one up).
- `course init .` again fetches newer lessons: files you edited are kept and named; unchanged ones are updated.
"""


def source_root() -> Path:
    """Where the course's files are: the copy inside the installed package, else the checkout it runs from."""
    packaged = PACKAGE_DIR / "student_folder"
    if (packaged / "notebooks").is_dir():
        return packaged
    if is_checkout(PACKAGE_DIR.parent):
        return PACKAGE_DIR.parent
    raise FileNotFoundError(
        f"this installation of course-utils carries no lessons ({packaged} has no notebooks/). "
        "Reinstall it from a wheel built from the course's checkout (`pip install course-utils`)."
    )


def course_files(root: Path | None = None) -> dict[str, bytes]:
    """The files of a student's folder, as {relative path: content}, the README included."""
    root = root or source_root()
    files = {
        path.relative_to(root).as_posix(): path.read_bytes()
        for pattern in PATTERNS
        for path in sorted(root.glob(pattern))
        if path.is_file()
    }
    files["README.md"] = README.format(version=__version__).encode("utf-8")
    return files


def sha256(data: bytes) -> str:
    """Hex sha256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def read_marker(folder: Path) -> dict:
    """The marker's record of what `course init` wrote (empty when there is none or it is unreadable)."""
    try:
        record = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def plan(folder: Path, files: dict[str, bytes], written: dict[str, str]) -> dict[str, list[str]]:
    """Sort each file into 'new', 'update', 'same' or 'kept' (the student edited it, or it was never ours)."""
    sorted_files: dict[str, list[str]] = {"new": [], "update": [], "same": [], "kept": []}
    for name, data in files.items():
        target = folder / name
        if not target.exists():
            sorted_files["new"].append(name)
            continue
        current = sha256(target.read_bytes()) if target.is_file() else None
        if current == sha256(data):
            sorted_files["same"].append(name)
        elif current is not None and current == written.get(name):
            sorted_files["update"].append(name)
        else:
            sorted_files["kept"].append(name)
    return sorted_files


def init_folder(folder: Path, files: dict[str, bytes] | None = None) -> dict[str, list[str]]:
    """Write (or update) a student's folder; return what happened to each file (see plan())."""
    folder = Path(folder).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a folder. Choose another name: `course init DIR`.")
    if is_checkout(folder):
        raise IsADirectoryError(
            f"{folder} is the course's checkout, which has the lessons already. Choose another DIR."
        )
    files = course_files() if files is None else files
    written = dict(read_marker(folder).get("files", {}))
    result = plan(folder, files, written)
    for name in result["new"] + result["update"]:
        atomic_write_bytes(folder / name, files[name])
    for name in result["new"] + result["update"] + result["same"]:
        written[name] = sha256(files[name])
    record = {"course": "course-utils", "version": __version__, "files": dict(sorted(written.items()))}
    atomic_write_text(folder / MARKER, json.dumps(record, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    """`course init DIR`."""
    parser = doc_parser("course init", __doc__)
    parser.add_argument("folder", type=Path, help="the folder to write (made if missing)")
    args = parser.parse_args(argv)
    try:
        result = init_folder(args.folder)
    except OSError as exc:
        print(f"course init: {exc}", file=sys.stderr)
        return 1
    folder = args.folder.expanduser().resolve()
    counts = ", ".join(f"{len(result[k])} {k}" for k in ("new", "update", "same", "kept") if result[k])
    print(f"course init: {folder} is a course folder ({counts or 'nothing to write'})")
    for name in result["kept"]:
        print(
            f"  kept {name}: edited here, so not replaced (rename it and run `course init` again for the course's copy)"
        )
    print(f"Next: cd {folder} && course fetch && course lab")
    return 0


if __name__ == "__main__":
    sys.exit(main())
