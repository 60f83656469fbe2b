"""Atomic writes: readers see the old file or the whole new one, nothing is left behind, permissions are normal."""

from __future__ import annotations

import os
import stat

import pytest

from course_utils import paths
from course_utils.paths import atomic_write_bytes, atomic_writer


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_gets_the_permissions_open_would_give(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "results.json", b"{}")
        with open(tmp_path / "plain.json", "wb") as handle:
            handle.write(b"{}")
    finally:
        os.umask(old)
    assert mode(tmp_path / "results.json") == mode(tmp_path / "plain.json") == 0o644  # not mkstemp's 0600


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_bytes(b"old")
    target.chmod(0o640)
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and mode(target) == 0o640


def test_a_refused_or_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "weights.pth"
    target.write_bytes(b"good")

    def refuse(tmp):
        raise ValueError("wrong sha256")

    with pytest.raises(ValueError, match="wrong sha256"), atomic_writer(target, check=refuse) as out:
        out.write(b"bad")
    with pytest.raises(RuntimeError), atomic_writer(target) as out:
        out.write(b"half")
        raise RuntimeError("cut off")
    assert target.read_bytes() == b"good" and sorted(p.name for p in tmp_path.iterdir()) == ["weights.pth"]


# --- which folder is the course folder ---------------------------------------------------------------------------


def test_the_course_folder_is_found_from_below_by_its_marker(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_ROOT", raising=False)
    (tmp_path / paths.MARKER).write_text("{}")
    below = tmp_path / "notebooks" / "exercises"
    below.mkdir(parents=True)
    monkeypatch.chdir(below)
    assert paths.course_root() == tmp_path.resolve() and paths.find_course_root() == tmp_path.resolve()


def test_the_checkout_counts_as_a_course_folder_and_an_unrelated_project_does_not(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "course-utils"\n')
    other = tmp_path / "other"
    other.mkdir()
    (other / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    assert paths.is_checkout(tmp_path) and paths.is_course_folder(tmp_path)
    assert not paths.is_course_folder(other)
    assert paths.find_course_root(other) == tmp_path.resolve()  # the nearest course folder above


def test_no_course_folder_is_an_error_that_says_what_to_run_and_creates_nothing(tmp_path, monkeypatch):
    for name in ("COURSE_ROOT", "COURSE_DATA_DIR", "COURSE_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    for call in (paths.course_root, paths.data_dir, paths.cache_dir, paths.notebooks_dir):
        with pytest.raises(paths.CourseFolderError, match=r"course init DIR"):
            call()
    assert list(tmp_path.iterdir()) == []


def test_course_root_from_the_environment_wins_and_must_be_a_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_ROOT", str(tmp_path))
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    assert paths.course_root() == tmp_path.resolve()
    assert paths.data_dir() == tmp_path.resolve() / "data"
    monkeypatch.setenv("COURSE_ROOT", str(tmp_path / "missing"))
    with pytest.raises(paths.CourseFolderError, match="is not a folder"):
        paths.course_root()


def test_a_shared_data_folder_is_read_and_the_students_own_files_go_to_their_folder(tmp_path, monkeypatch):
    shared, student = tmp_path / "shared", tmp_path / "student"
    shared.mkdir()
    student.mkdir()
    (shared / paths.SHARED_MARKER).write_text("{}")
    monkeypatch.setenv("COURSE_ROOT", str(student))
    monkeypatch.setenv("COURSE_DATA_DIR", str(shared))
    monkeypatch.delenv("COURSE_CACHE_DIR", raising=False)
    assert paths.data_dir() == shared
    assert paths.own_data_dir() == student.resolve() / "data"
    assert paths.cache_dir() == student.resolve() / "data" / "cache"
    assert sorted(p.name for p in shared.iterdir()) == [paths.SHARED_MARKER]  # nothing written into it


def test_author_tools_need_the_checkout(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "checkout_root", lambda: None)
    with pytest.raises(paths.CourseFolderError, match="course bench .*checkout"):
        paths.require_checkout("course bench")
