"""One shared, read-only copy of the assets for a class, for real: two student users, one folder owned by root.

As root: `course fetch --to DIR` makes the shared folder (weights and Fashion-MNIST), which is then made read-only
(chmod a-w). Two users made with useradd each run `course init ~/course` and lessons 00 and 03 (quick profile,
nbval) with COURSE_DATA_DIR=DIR. Each builds its own feature cache in its own folder and copies the weights
into its own hub cache; the shared folder is never written (every entry's mtime, size and mode are the same
after both runs). Skipped, saying why, when not root on Linux or when useradd/runuser are missing.

The students run the project's .venv. Where its interpreter lies below a folder others cannot enter (e.g. a
pyenv Python under /root, mode 0700), the test gives only its two users the right to pass through it (x) with
a group made for the test, and restores the folder's group and mode afterwards.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from course_utils.paths import file_sha256

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
WEIGHTS = "mobilenet_v2-b0353104.pth"
LESSONS = ["notebooks/00_start_here.ipynb", "notebooks/03_feature_caching.ipynb"]
TAG = f"crs{os.getpid() % 100000}"

pytestmark = [pytest.mark.slow, pytest.mark.setup]  # other users on this machine, a fresh `course init`


def why_not() -> str | None:
    if not sys.platform.startswith("linux"):
        return "class-hub test: needs Linux (useradd, runuser)"
    if os.geteuid() != 0:
        return "class-hub test: needs root (it creates two student users with useradd); run the tests as root"
    missing = [tool for tool in ("useradd", "userdel", "groupadd", "groupdel", "runuser") if not shutil.which(tool)]
    if missing:
        return f"class-hub test: needs {', '.join(missing)} (Debian's passwd and util-linux)"
    if not (VENV / "bin" / "course").is_file():
        return "class-hub test: needs the project's .venv with `course` (make test makes it)"
    return None


def sh(*command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=kwargs.pop("timeout", 120), **kwargs)


def as_student(name: str, home: Path, shared: Path, *command: str, cwd: Path, timeout: int = 60):
    """COMMAND as user NAME with a clean environment: HOME, PATH, TMPDIR and the course's variables.

    TMPDIR is the student's own scratch folder (a hub gives each student one), course/tmp, because lesson 03
    builds its cache in a fresh scratch folder (CACHE_ROOT = None): so the test sees where the cache landed.
    """
    env = {
        "HOME": str(home),
        "TMPDIR": str(home / "course" / "tmp"),
        "USER": name,
        "LOGNAME": name,
        "PATH": f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "COURSE_DATA_DIR": str(shared),
        "COURSE_PROFILE": "quick",
        "COURSE_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    return sh(
        "runuser", "-u", name, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *command,
        cwd=cwd, timeout=timeout,
    )  # fmt: skip


def listing(folder: Path) -> dict[str, tuple[int, int, int, int]]:
    """Every entry below (and including) FOLDER: (mtime_ns, size, mode, owner uid)."""
    entries = {".": folder.lstat()}
    entries |= {str(p.relative_to(folder)): p.lstat() for p in folder.rglob("*")}
    return {k: (s.st_mtime_ns, s.st_size, s.st_mode, s.st_uid) for k, s in entries.items()}


def closed_folders(*paths: Path) -> list[Path]:
    """Folders on the way to PATHS that others may not enter (no o+x)."""
    found = []
    for path in paths:
        for folder in [*reversed(Path(path).resolve().parents)]:
            if not folder.stat().st_mode & stat.S_IXOTH and folder not in found:
                found.append(folder)
    return found


def make_shared_folder(shared: Path) -> str:
    """`course fetch --to SHARED` (offline: the hub cache's weights, Debian's files); else the same layout by hand."""
    result = sh(str(VENV / "bin" / "course"), "fetch", "--to", str(shared), env={**os.environ, "COURSE_OFFLINE": "1"})
    if result.returncode == 0:
        return "course fetch --to"
    from course_utils.tools.fetch import mark_shared  # the layout fetch --to writes, from this machine's copies

    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints" / WEIGHTS
    raw = ROOT / "data" / "FashionMNIST" / "raw"
    if not hub.is_file() or not raw.is_dir():
        pytest.skip(f"class-hub test: no assets to share (course fetch --to failed: {result.stderr[-300:]})")
    (shared / "weights").mkdir(parents=True, exist_ok=True)
    shutil.copy2(hub, shared / "weights" / WEIGHTS)
    shutil.copytree(raw, shared / "FashionMNIST" / "raw", dirs_exist_ok=True)
    mark_shared(shared)
    return "copied from the hub cache and data/"


def test_two_students_share_one_read_only_copy_and_build_their_own_caches():
    reason = why_not()
    if reason:
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="course-hub-", dir="/tmp"))
    base.chmod(0o755)
    shared = base / "course-data"
    students = [f"{TAG}a", f"{TAG}b"]
    group = f"{TAG}g"
    made_users, made_group, reopened = [], False, []  # reopened: (folder, gid, mode) to restore
    try:
        how = make_shared_folder(shared)
        assert (shared / "weights" / WEIGHTS).is_file() and (shared / ".course-shared-data.json").is_file(), how
        sh("chmod", "-R", "a-w", str(shared), check=True)
        before = listing(shared)
        assert all(not mode & 0o222 for _, _, mode, _ in before.values())

        for name in students:
            result = sh("useradd", "-m", "-s", "/bin/sh", name)
            assert result.returncode == 0, result.stderr
            made_users.append(name)
        python = Path(os.path.realpath(VENV / "bin" / "python"))
        closed = closed_folders(python, VENV / "bin" / "course", ROOT / "tests" / "nbval_sanitize.cfg")
        if closed:  # e.g. /root (0700) above a pyenv Python: let only the two students pass through, then restore
            if any(f.stat().st_mode & 0o070 for f in closed):
                pytest.skip(f"class-hub test: {closed} are closed to other users and have group rights already")
            assert sh("groupadd", group).returncode == 0
            made_group = True
            for name in students:
                assert sh("usermod", "-a", "-G", group, name).returncode == 0
            gid = int(sh("getent", "group", group).stdout.split(":")[2])
            for folder in closed:
                info = folder.stat()
                reopened.append((folder, info.st_gid, stat.S_IMODE(info.st_mode)))
                os.chown(folder, -1, gid)
                folder.chmod(stat.S_IMODE(info.st_mode) | stat.S_IXGRP)
        probe = as_student(students[0], Path("/"), shared, str(VENV / "bin" / "python"), "-c", "import torch, nbval",
                           cwd=Path("/"))  # fmt: skip
        if probe.returncode != 0:
            pytest.skip(f"class-hub test: the students cannot run {VENV}/bin/python: {probe.stderr[-300:]}")

        for name in students:
            home = Path(os.path.expanduser(f"~{name}"))
            uid = int(sh("id", "-u", name).stdout)
            course = home / "course"
            result = as_student(name, home, shared, "course", "init", str(course), cwd=home)
            assert result.returncode == 0, result.stdout + result.stderr
            assert as_student(name, home, shared, "mkdir", "-p", str(course / "tmp"), cwd=home).returncode == 0
            started = time.time()
            result = as_student(
                name, home, shared, "python", "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax",
                "--nbval-current-env", "--nbval-cell-timeout=600",
                f"--nbval-sanitize-with={ROOT / 'tests' / 'nbval_sanitize.cfg'}", *LESSONS,
                cwd=course, timeout=1200,
            )  # fmt: skip
            assert result.returncode == 0, f"{name}:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
            assert " passed" in result.stdout and "failed" not in result.stdout.splitlines()[-1]

            built = [p for p in course.rglob("*") if p.is_file() and "fashion_train" in p.parts]
            assert any(p.name == "features.npy" for p in built), f"{name}: no feature cache in {course}"
            assert all(p.stat().st_uid == uid for p in built), f"{name}: cache files not the student's own"
            assert any(p.stat().st_mtime >= started - 1 for p in built), f"{name}: cache not built by this run"
            mine = home / ".cache" / "torch" / "hub" / "checkpoints" / WEIGHTS
            assert file_sha256(mine) == file_sha256(shared / "weights" / WEIGHTS)
            assert mine.stat().st_uid == uid
            assert listing(shared) == before, f"{name}'s run changed the shared folder"
        assert not (shared / "cache").exists()
    finally:
        for folder, gid, mode in reopened:
            os.chown(folder, -1, gid)
            folder.chmod(mode)
        for name in made_users:
            sh("userdel", "-f", "-r", name)
        if made_group:
            sh("groupdel", group)
        shutil.rmtree(base, ignore_errors=True)
    for folder, gid, mode in reopened:
        assert folder.stat().st_gid == gid and stat.S_IMODE(folder.stat().st_mode) == mode
