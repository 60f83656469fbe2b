"""Atomic writes: readers see the old file or the whole new one, nothing is left behind, permissions are normal."""

from __future__ import annotations

import os
import stat

import pytest

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
