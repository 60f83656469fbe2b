"""Where the course keeps its data, caches and build outputs."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

PACKAGE_DIR = Path(__file__).resolve().parent


class DataError(RuntimeError):
    """A dataset or photo folder is missing or malformed; the message says what to do."""


def project_root() -> Path:
    """The course checkout (the folder holding course_utils/), or the current folder if installed elsewhere."""
    candidate = PACKAGE_DIR.parent
    if (candidate / "notebooks").is_dir() or (candidate / "pyproject.toml").is_file():
        return candidate
    return Path.cwd()


def data_dir() -> Path:
    """Datasets and provenance records: $COURSE_DATA_DIR, else data/ in the checkout."""
    env = os.environ.get("COURSE_DATA_DIR")
    path = Path(env).expanduser() if env else project_root() / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Feature caches and sweep results in progress: $COURSE_CACHE_DIR, else data/cache."""
    env = os.environ.get("COURSE_CACHE_DIR")
    path = Path(env).expanduser() if env else data_dir() / "cache"
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
