"""The grader's sandbox on its own: what a command inside sees and may do, limits, cleanup, the results pipe."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from course_utils.paths import PACKAGE_DIR
from course_utils.tools import sandbox
from course_utils.tools.processes import sweep_marked

pytestmark = pytest.mark.sandbox

MARKER = "course-sandbox-test-marker"
HAS_BWRAP = sys.platform.startswith("linux") and sandbox.find_bwrap() is not None
needs_bwrap = pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap is not installed (CI installs it: .ci/run)")
KINDS = [pytest.param("bwrap", marks=needs_bwrap), "none"]


def isolation(kind: str) -> sandbox.Isolation:
    if kind == "none":
        return sandbox.Isolation("none", "NOT ISOLATED (test)")
    return sandbox.Isolation("bwrap", "test", sandbox.find_bwrap(), privileged=os.geteuid() == 0)


def python_plan(code: str, **kwargs) -> sandbox.Plan:
    """A plan that runs ``code`` with this Python; ``report(**values)`` writes one record to the results pipe."""
    prelude = (
        "import json, os\n"
        "def report(**values):\n"
        "    fd = int(os.environ['COURSE_GRADE_RESULTS_FD'])\n"
        "    os.write(fd, (json.dumps(values) + '\\n').encode())\n"
    )
    kwargs.setdefault("read_only", sandbox.python_paths() + [PACKAGE_DIR])
    kwargs.setdefault("env", {"PYTHONPATH": str(PACKAGE_DIR.parent)})
    return sandbox.Plan([sys.executable, "-c", prelude + textwrap.dedent(code)], **kwargs)


def reported(outcome: sandbox.Outcome) -> list[dict]:
    return [r for r in outcome.records if "event" not in r]


def survivors() -> list[str]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if MARKER in " ".join(process.info["cmdline"] or []):
            found.append(" ".join(process.info["cmdline"]))
    return found


@needs_bwrap
def test_inside_the_sandbox_only_what_is_given_is_visible_and_nothing_is_writable_but_the_work_folder(tmp_path):
    course = tmp_path / "course"
    (course / "secret").mkdir(parents=True)
    (course / "secret" / "solutions.txt").write_text("42", encoding="utf-8")
    (course / "public.txt").write_text("hello", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("other", encoding="utf-8")
    server = socket.create_server(("127.0.0.1", 0))  # on the grader's loopback: must be out of reach
    code = f"""
    import socket, subprocess
    def attempt(action):
        try:
            action()
            return "ok"
        except OSError as exc:
            return type(exc).__name__
    own = socket.create_server(("127.0.0.1", 0))
    report(
        uid=os.getuid(),
        public=open({str(course / "public.txt")!r}).read(),
        secret=os.listdir({str(course / "secret")!r}),
        elsewhere=os.path.exists({str(elsewhere)!r}),
        write_course=attempt(lambda: open({str(course / "new.txt")!r}, "w")),
        write_venv=attempt(lambda: open(os.path.join({sys.prefix!r}, "planted.pth"), "w")),
        write_root=attempt(lambda: open("/planted", "w")),
        write_tmp=attempt(lambda: open("/tmp/scratch", "w").write("x")),
        write_home=attempt(lambda: open(os.path.join(os.environ["HOME"], "x"), "w").write("x")),
        cwd_files=sorted(os.listdir(".")),
        grader_port=attempt(lambda: socket.create_connection(("127.0.0.1", {server.getsockname()[1]}), timeout=2)),
        own_port=attempt(lambda: socket.create_connection(own.getsockname(), timeout=2)),
        outside=attempt(lambda: socket.create_connection(("1.1.1.1", 53), timeout=2)),
        processes=sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    )
    """
    plan = python_plan(
        code, files={"notebook.ipynb": b"{}"}, hidden=[course / "secret"], read_only=sandbox.python_paths() + [course]
    )
    outcome = sandbox.run(plan, isolation("bwrap"), timeout=60)
    server.close()
    assert outcome.exit_code == 0, outcome.log
    [seen] = reported(outcome)
    assert seen["uid"] == sandbox.NOBODY
    assert seen["public"] == "hello" and seen["secret"] == [] and seen["elsewhere"] is False
    assert {seen[k] for k in ("write_course", "write_venv", "write_root")} <= {"OSError", "PermissionError"}
    assert seen["write_tmp"] == "ok" and seen["write_home"] == "ok" and seen["cwd_files"] == ["notebook.ipynb"]
    assert seen["grader_port"] != "ok" and seen["own_port"] == "ok" and seen["outside"] != "ok"
    assert max(seen["processes"]) < 10  # a PID namespace of its own: the grader's processes are not there
    assert not (course / "new.txt").exists() and not Path(sys.prefix, "planted.pth").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_every_process_the_command_started_is_gone_after_it_ends_or_times_out(kind):
    escape = f"""
    import subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "{MARKER}"], start_new_session=True)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", "{MARKER}"])
        os._exit(0)
    time.sleep(0.5)
    report(started=True)
    """
    escape = textwrap.dedent(escape)
    for code, timeout in ((escape, 60), (escape + "\ntime.sleep(600)\n", 3)):
        outcome = sandbox.run(python_plan(code), isolation(kind), timeout=timeout)
        assert reported(outcome) == [{"started": True}], outcome.log
        assert outcome.timed_out == (timeout == 3)
        assert outcome.survivors == []  # none was left for the last sweep: the namespace or subreaper ended them
        assert survivors() == [], kind


@pytest.mark.parametrize("kind", KINDS)
def test_the_limits_hold_inside(kind):
    limits = sandbox.Limits(memory_gb=3, file_mb=5, processes=100, cpu_seconds=30, open_files=200)
    code = """
    import resource
    report(**{name: resource.getrlimit(getattr(resource, name))[0]
              for name in ("RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_CORE")})
    try:
        open(os.path.join(os.environ["TMPDIR"], "big"), "wb").write(b"x" * 6 * 1024 * 1024)
        report(big_file="written")
    except OSError as exc:
        report(big_file=exc.strerror)
    try:
        block = bytearray(4 * 1024**3)
        report(memory="allocated")
    except MemoryError:
        report(memory="MemoryError")
    """
    outcome = sandbox.run(python_plan(code, limits=limits), isolation(kind), timeout=60)
    first, big_file, memory = reported(outcome)
    assert first["RLIMIT_AS"] == 3 * 1024**3 and first["RLIMIT_FSIZE"] == 5 * 1024**2
    assert first["RLIMIT_CPU"] == 30 and first["RLIMIT_NOFILE"] == 200 and first["RLIMIT_CORE"] == 0
    assert big_file == {"big_file": "File too large"} and memory == {"memory": "MemoryError"}


@needs_bwrap
@pytest.mark.parametrize("privileged", [True, False], ids=["root-drops-to-nobody", "user-namespace"])
def test_a_child_cannot_forge_results_through_its_parents_pipe(privileged):
    """The kernel runs with the same uid as pytest: the runner makes itself non-dumpable, so /proc/PID/fd is shut.

    (Without bubblewrap a grader running as root cannot protect the pipe this way: root may open any process's
    file descriptors. That run is reported as NOT isolated.)
    """
    if privileged and os.geteuid() != 0:
        pytest.skip("bubblewrap starts as root only when the grader is root")
    forge = (
        "import json, os\n"
        "path = f'/proc/{os.getppid()}/fd/{os.environ[\"COURSE_GRADE_RESULTS_FD\"]}'\n"
        "try:\n"
        "    with open(path, 'w') as pipe:\n"
        "        pipe.write(json.dumps({'forged': True}) + '\\n')\n"
        "except OSError:\n"
        "    pass\n"
    )
    code = f"""
    import subprocess, sys
    if GUARD:
        from course_utils.tools import kernel_checks
        kernel_checks.protect_process()  # what the grader's runner does first
    subprocess.run([sys.executable, "-c", {forge!r}], close_fds=True)
    report(real=True)
    """
    code = textwrap.dedent(code)
    chosen = sandbox.Isolation("bwrap", "test", sandbox.find_bwrap(), privileged=privileged)
    guarded = sandbox.run(python_plan("GUARD = True\n" + code), chosen, timeout=60)
    assert reported(guarded) == [{"real": True}], guarded.log
    if not privileged:  # (as nobody, the grader's pipe is root's and shut anyway)
        control = sandbox.run(python_plan("GUARD = False\n" + code), chosen, timeout=60)
        assert {"forged": True} in reported(control)  # the test sees a forgery when the guard is missing


def test_isolation_is_chosen_and_a_failure_says_why(tmp_path):
    off = sandbox.choose_isolation("none")
    assert not off.isolated and "NOT ISOLATED" in off.summary
    missing = str(tmp_path / "no-bwrap")
    fallback = sandbox.choose_isolation("auto", bwrap=missing)
    assert not fallback.isolated and missing in fallback.summary
    with pytest.raises(RuntimeError, match="--isolation bwrap"):
        sandbox.choose_isolation("bwrap", bwrap=missing)
    if HAS_BWRAP:
        chosen = sandbox.choose_isolation("auto")
        assert chosen.isolated and "bubblewrap" in chosen.summary


def test_hidden_paths_inside_a_bound_folder_are_covered(tmp_path):
    course = tmp_path / "course"
    (course / "sources").mkdir(parents=True)
    (course / "answers.txt").write_text("42", encoding="utf-8")
    (tmp_path / "submissions").mkdir()
    plan = sandbox.Plan(
        ["true"],
        read_only=[course, course / "sources"],
        hidden=[course / "sources", course / "answers.txt", tmp_path / "submissions"],
    )
    args = sandbox.bwrap_args(sandbox.Isolation("bwrap", "", "bwrap"), plan, {})
    joined = " ".join(args)
    assert f"--ro-bind {course} {course}" in joined and f"--ro-bind {course / 'sources'}" not in joined
    assert f"--tmpfs {course / 'sources'}" in joined
    assert f"--ro-bind /dev/null {course / 'answers.txt'}" in joined
    assert str(tmp_path / "submissions") not in joined  # not mounted at all: nothing to cover
    assert args.index("--remount-ro") > args.index(f"{course}")


def test_a_process_that_escaped_the_tree_is_found_by_its_token():
    token = "sweep-test-" + str(os.getpid())
    escaped = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        env={**os.environ, sandbox.TOKEN_VARIABLE: token},
        start_new_session=True,
    )
    time.sleep(0.2)
    found = sweep_marked(sandbox.TOKEN_VARIABLE, token)
    assert any(f"pid {escaped.pid}" in entry for entry in found)
    assert escaped.wait(timeout=5) is not None
    assert sweep_marked(sandbox.TOKEN_VARIABLE, token) == []


def test_the_launcher_refuses_to_run_without_a_config():
    result = subprocess.run(
        [sys.executable, "-I", str(Path(sandbox.__file__)), "launch"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and "grader starts this itself" in result.stderr


@needs_bwrap
def test_the_memory_of_a_whole_run_adds_up_processes_tmpfs_and_memfd_and_stops_it():
    """Four children under any per-process limit, a file in /dev/shm and a memfd: together over the total."""
    code = f"""
    import os, subprocess, sys, time
    open('/dev/shm/blob', 'wb').write(b'x' * 150 * 1024**2)  # a tmpfs of the sandbox: memory, not disk
    hoard = os.memfd_create('hoard')  # a file in memory that no folder shows
    os.write(hoard, b'y' * 150 * 1024**2)
    fill = 'b = bytearray(150 * 1024**2); b[::4096] = b"z" * len(b[::4096]); import time; time.sleep(600)'
    kids = [subprocess.Popen([sys.executable, '-c', fill, '{MARKER}']) for _ in range(4)]
    report(stage="holding")
    time.sleep(600)
    """
    limits = sandbox.Limits(total_memory_gb=0.8)
    start = time.perf_counter()
    outcome = sandbox.run(python_plan(code, limits=limits), isolation("bwrap"), timeout=120)
    assert time.perf_counter() - start < 60 and not outcome.timed_out
    assert reported(outcome) in ([{"stage": "holding"}], [])
    held = outcome.memory_stopped  # 'held 0.9 GB (0.6 GB in 7 processes, 0.3 GB of files in memory)'
    assert 0.8 <= float(held.split()[1]) < 1.5, held
    files = float(held.split("GB in")[1].split(", ")[1].split(" GB")[0])
    assert files >= 0.2, outcome.memory_stopped  # /dev/shm and the memfd were counted
    assert outcome.memory_peak > 0.8 * 1024**3
    assert survivors() == []


def test_a_run_under_the_total_is_left_alone():
    code = "block = bytearray(100 * 1024**2)\nblock[::4096] = b'z' * len(block[::4096])\nreport(done=True)"
    outcome = sandbox.run(python_plan(code, limits=sandbox.Limits(total_memory_gb=2)), isolation("none"), timeout=60)
    assert reported(outcome) == [{"done": True}] and outcome.memory_stopped == ""
    assert outcome.exit_code == 0


@pytest.mark.parametrize("kind", KINDS)
def test_the_judges_exports_are_limited_apart_from_the_cell_records(kind):
    """Three 4 MB exports (more than the 8 MB of cell records a run may send) come back, and a record after them."""
    code = """
    import base64
    fd = int(os.environ['COURSE_GRADE_RESULTS_FD'])
    for number in range(3):
        data = base64.b64encode(bytes([number]) * 3 * 1024**2).decode()
        os.write(fd, (json.dumps({"event": "export", "grade_id": f"t{number}", "data": data}) + "\\n").encode())
    report(after=True)
    """
    outcome = sandbox.run(python_plan(code), isolation(kind), timeout=60)
    exports = [r for r in outcome.records if r.get("event") == "export"]
    assert [r["grade_id"] for r in exports] == ["t0", "t1", "t2"] and not outcome.truncated
    assert reported(outcome) == [{"after": True}]


@needs_bwrap
def test_the_judges_folder_is_not_visible_to_a_graded_run(tmp_path):
    """run_in_sandbox hides course_utils/judge inside the sandbox, whatever else it shows of course_utils."""
    from course_utils import judge
    from course_utils.tools import grade

    listing = (
        "import json, os\n"
        f"print(json.dumps(sorted(os.listdir({str(judge.JUDGE_DIR)!r}))))\n"
        f"assert not os.listdir({str(judge.JUDGE_DIR)!r}), 'the judge is readable'\n"
    )
    nb = {
        "cells": [{"cell_type": "code", "source": listing, "metadata": {}, "outputs": [], "execution_count": None}],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    settings = grade.GradeSettings("any", timeout=120, isolation=isolation("bwrap"))
    result = grade.run_in_sandbox(json.dumps(nb).encode(), settings, tmp_path)
    assert result.records[0]["verdict"] == "pass", result.records[0]
