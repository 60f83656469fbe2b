"""Where the course folder, its data and caches are; atomic writes; sha256.

Every command and lesson finds the course folder the same way: $COURSE_ROOT, else the folder it runs in or the
nearest one above it that holds the marker file (written by `course init DIR`) or is the course's checkout
(a pyproject.toml naming course-utils). Where there is none, CourseFolderError says so and what to run; nothing
is guessed and nothing is created.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

PACKAGE_DIR = Path(__file__).resolve().parent
MARKER = ".course-folder.json"  # written by `course init DIR`: the student's working folder
SHARED_MARKER = ".course-shared-data.json"  # written by `course fetch --to DIR`: a class's read-only data folder
_NAMES_THE_COURSE = re.compile(r'^\s*name\s*=\s*["\']course[-_]utils["\']', re.MULTILINE)


class DataError(RuntimeError):
    """A dataset or photo folder is missing or malformed; the message says what to do."""


class CourseFolderError(RuntimeError):
    """No course folder here (or a command needs the checkout); the message says what to run."""


def is_checkout(folder: Path) -> bool:
    """True when ``folder`` is the course's source checkout (its pyproject.toml names course-utils)."""
    try:
        return bool(_NAMES_THE_COURSE.search((Path(folder) / "pyproject.toml").read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError):
        return False


def is_course_folder(folder: Path) -> bool:
    """True for a folder written by `course init` (it holds the marker) or the checkout."""
    return (Path(folder) / MARKER).is_file() or is_checkout(folder)


def find_course_root(start: Path | None = None) -> Path | None:
    """$COURSE_ROOT, else ``start`` (the current folder) or the nearest folder above it that is a course folder."""
    env = os.environ.get("COURSE_ROOT", "").strip()
    if env:
        return Path(env).expanduser().resolve()
    here = Path(start or Path.cwd()).resolve()
    return next((folder for folder in (here, *here.parents) if is_course_folder(folder)), None)


def course_root(start: Path | None = None) -> Path:
    """The course folder (see find_course_root); CourseFolderError, saying what to run, where there is none."""
    root = find_course_root(start)
    if root is None:
        here = Path(start or Path.cwd()).resolve()
        raise CourseFolderError(
            f"no course folder in {here} or above it. Run `course init DIR` to make one (lessons, exercises, "
            "diary), then work inside DIR, or set COURSE_ROOT=DIR."
        )
    if not root.is_dir():
        raise CourseFolderError(f"COURSE_ROOT={root} is not a folder. Run `course init {root}` or fix COURSE_ROOT.")
    return root


def project_root() -> Path:
    """The course folder: the checkout, or a student's folder made by `course init` (same as course_root())."""
    return course_root()


def checkout_root() -> Path | None:
    """The source checkout: the course folder if it is one, else the checkout this package runs from, else None."""
    root = find_course_root()
    if root is not None and is_checkout(root):
        return root
    return PACKAGE_DIR.parent if is_checkout(PACKAGE_DIR.parent) else None


def require_checkout(what: str) -> Path:
    """The checkout, or CourseFolderError saying that ``what`` (e.g. 'course bench') only runs in it."""
    root = checkout_root()
    if root is None:
        raise CourseFolderError(
            f"{what} is an author/instructor tool and needs the course's source checkout "
            "(git clone the course and run it inside the clone); it does not run in a student folder or an install."
        )
    return root


def notebooks_dir() -> Path:
    """The lessons: notebooks/ in the course folder (the student copies of the exercises are in exercises/ below)."""
    return course_root() / "notebooks"


def is_shared_data(folder: Path) -> bool:
    """True for a class's shared data folder written by `course fetch --to DIR` (read-only for students)."""
    return (Path(folder) / SHARED_MARKER).is_file()


def shared_data_dir() -> Path | None:
    """$COURSE_DATA_DIR when it is a class's shared data folder (weights and Fashion-MNIST, read-only), else None."""
    env = os.environ.get("COURSE_DATA_DIR", "").strip()
    path = Path(env).expanduser() if env else None
    return path if path is not None and is_shared_data(path) else None


def data_dir() -> Path:
    """Datasets and provenance records: $COURSE_DATA_DIR, else data/ in the course folder."""
    env = os.environ.get("COURSE_DATA_DIR", "").strip()
    path = Path(env).expanduser() if env else course_root() / "data"
    if not is_shared_data(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


def own_data_dir() -> Path:
    """Where a student's own files go: data_dir(), or data/ in the course folder when data_dir() is a shared one."""
    path = data_dir()
    if is_shared_data(path):
        path = course_root() / "data"
        path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Feature caches and sweep results in progress: $COURSE_CACHE_DIR, else cache/ in own_data_dir()."""
    env = os.environ.get("COURSE_CACHE_DIR", "").strip()
    path = Path(env).expanduser() if env else own_data_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _new_file_mode() -> int:
    """The permissions open() gives a new file: 0o666 less the process's umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_writer(path: Path, check=None) -> Iterator[BinaryIO]:
    """``with atomic_writer(path) as out: out.write(...)``: readers see the old file or the whole new one.

    The bytes go to a temporary file with a unique name beside ``path`` (two writers never collide), are
    flushed to disk, optionally checked with ``check(temp_path)`` (raise to refuse them), then renamed into
    place. On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.exists() else _new_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if check is not None:
            check(Path(tmp))
        os.chmod(tmp, mode)  # mkstemp makes 0600 files: give the mode open() would (or the replaced file's)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write a file so that readers see the old file or the whole new one, never half of it."""
    with atomic_writer(path) as handle:
        handle.write(payload)


def atomic_write_text(path: Path, text: str) -> None:
    """Text version of atomic_write_bytes (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def file_sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in chunks (large checkpoints and datasets never sit in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
