"""The grader against hostile submissions: cheating, sabotage of others, escaping processes, limits, collection quirks.

Each class of attack runs in a real grading run of a tiny exercise built here with the real release machinery
(no torch: each run takes seconds). The sabotage runs only under bubblewrap (they would really damage files
otherwise); the fallback path (no bubblewrap) is tested with attacks that harm nothing outside the run.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from helpers import ALWAYS_OK
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course_utils import judge
from course_utils.paths import PACKAGE_DIR, data_dir
from course_utils.tools import grade, grade_one, sandbox
from course_utils.tools.exercises import source_path, strip_hidden, student_copy, student_path
from course_utils.tools.notebook_reader import read_prepared
from course_utils.tools.submissions import SubmissionProblem
from course_utils.weights import hub_checkpoint_dir

pytestmark = [pytest.mark.sandbox, pytest.mark.serial]  # it watches the whole checkout: no other test may write there

EXERCISE = "tiny"
HIDDEN_LINE = 'assert answer() + OFFSET == 42, "the hidden check of answer failed"'
MARKER = "course-grader-escape-marker"  # in the command line of every process an attack leaves behind
ESCAPE = f"""
import os, subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "{MARKER}"], start_new_session=True)
if os.fork() == 0:  # a double-forked daemon in a session of its own
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", DAEMON, "{MARKER}"])
    os._exit(0)
"""
needs_bwrap = pytest.mark.skipif(
    not sys.platform.startswith("linux") or sandbox.find_bwrap() is None,
    reason="bubblewrap is not installed (CI installs it: .ci/run)",
)


def tiny_source():
    """A two-function exercise: answer() (2 points, with a hidden test) and double(x) (3 points)."""
    nb = new_notebook(metadata={"exercise": {"name": EXERCISE}})
    nb.cells = [
        new_markdown_cell("# A tiny exercise"),
        new_code_cell(
            "import math\n\nOFFSET = 0\n\n\ndef close_to(value, target):\n    return math.isclose(value, target)"
        ),
        new_code_cell("def answer():\n    ### BEGIN SOLUTION\n    return 42\n    ### END SOLUTION"),
        new_code_cell(
            '# Graded test t_answer (2 points)\nassert close_to(answer(), 42), "answer() should return 42"\n'
            f"### BEGIN HIDDEN TESTS\n{HIDDEN_LINE}\n### END HIDDEN TESTS\nprint('ok')",
            metadata={"grade": {"id": "t_answer", "points": 2}},
        ),
        new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"),
        new_code_cell(
            '# Graded test t_double (3 points)\nassert double(4) == 8, "double(4) should be 8"',
            metadata={"grade": {"id": "t_double", "points": 3}},
        ),
    ]
    return nb


def submission(done=(), replace=None, early=None, middle=None, after_tests=None, drop_answer=False):
    """The student copy with the solution of each function in ``done``, the given code, and extra cells.

    ``early`` is a cell before both tests (after answer's definition), ``middle`` one between the two tests,
    ``after_tests`` one at the end.
    """
    source, nb = tiny_source(), student_copy(tiny_source())
    for index, name in ((2, "answer"), (4, "double")):
        if name in done:
            nb.cells[index].source = source.cells[index].source
        if name in (replace or {}):
            nb.cells[index].source = replace[name]
    if after_tests:
        nb.cells.append(new_code_cell(after_tests))
    if middle:
        nb.cells.insert(4, new_code_cell(middle))
    if early:
        nb.cells.insert(3, new_code_cell(early))
    if drop_answer:
        del nb.cells[2]
    return nb


def make_sources(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(tiny_source(), folder / f"{EXERCISE}.ipynb")
    return folder


def write(folder: Path, name: str, nb) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def survivors() -> list[str]:
    """Command lines of processes an attack left behind (anything carrying MARKER)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if MARKER in cmdline and process.pid != os.getpid():
            found.append(cmdline)
    return found


def tree_state(*roots: Path) -> dict:
    """path -> (size, mtime, ctime) of every file under ``roots`` (caches of compiled Python left out).

    Any write changes a file's ctime, and no process can set it back (os.utime sets mtime, and changes ctime), so
    this sees what a checksum sees; hashing the checkout and its venv (6 GB) took 25-50 s a pass.
    """
    state = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in ("__pycache__", ".pytest_cache")]
            for name in files:
                info = os.lstat(os.path.join(folder, name))
                state[os.path.join(folder, name)] = (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_mode)
    return state


def by_student(rows) -> dict:
    """{(student, submission): {test: row as a dict}} from CSV rows or Row objects."""
    out = {}
    for row in rows:
        row = row if isinstance(row, dict) else dict(row.__dict__)
        out.setdefault((row["student"], row["submission"]), {})[row["test"]] = row
    return out


# ------------------------------------------------------------------------------- the hostile batch
DAEMON_REWRITES_REPORT = """
import time
while True:
    try:
        open(REPORT, "w").write("=HACKED()\\n")
    except OSError:
        pass
    time.sleep(0.05)
"""


def saboteur(paths: dict) -> str:
    """Code for one cell: write where it must not, plant startup files, leave daemons, read the solutions."""
    daemon = "REPORT = " + repr(str(paths["report"])) + "\n" + DAEMON_REWRITES_REPORT
    targets = {name: str(path) for name, path in paths.items()}
    return f"""
import os
TARGETS = {targets!r}
for name, path in TARGETS.items():  # append to a classmate's notebook, the course, the venv, the weights...
    try:
        with open(path, "a") as handle:
            handle.write("# pwned\\n")
    except OSError:
        pass
for folder in {{os.environ.get("IPYTHONDIR", ""), os.path.expanduser("~/.ipython")}}:
    if folder:  # whoever is graded next would run this at start
        os.makedirs(os.path.join(folder, "profile_default", "startup"), exist_ok=True)
        with open(os.path.join(folder, "profile_default", "startup", "00-free-points.py"), "w") as handle:
            handle.write("def answer():\\n    return 42\\n")
DAEMON = {daemon!r}
{ESCAPE}
"""


REBIND = """
class AlwaysClose:
    def isclose(self, *args, **kwargs):
        return True


math = AlwaysClose()
"""
CHEATING_ANSWER = """
def answer():
    try:  # the instructor's solutions, if they can be read
        return 42 if "return 42" in open(SOURCE).read() else 0
    except OSError:  # else smuggle the hidden tests out through the report
        import inspect, linecache
        caller = inspect.currentframe().f_back
        raise RuntimeError("could not read the solutions; the test reads: " + "".join(
            linecache.getlines(caller.f_code.co_filename)))
"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """One `course grade --isolation bwrap` run over a folder of hostile submissions and collection quirks."""
    if not sys.platform.startswith("linux") or sandbox.find_bwrap() is None:
        pytest.skip("bubblewrap is not installed (CI installs it: .ci/run)")
    base = tmp_path_factory.mktemp("hostile")
    sources = make_sources(base / "sources")
    folder = base / "submissions"
    report = base / "report" / "grades"
    report.parent.mkdir()
    site_packages = Path(psutil.__file__).resolve().parents[1]
    victim = folder / "zoe.ipynb"
    targets = {
        "victim": victim,
        "source": sources / f"{EXERCISE}.ipynb",
        "checks": PACKAGE_DIR / "checks.py",
        "site_packages": site_packages / "zz_planted_by_a_student.pth",
        "nbval": site_packages / "nbval" / "plugin.py",
        "data": data_dir() / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte",
        "weights": hub_checkpoint_dir() / "mobilenet_v2-b0353104.pth",
        "report": report.with_suffix(".csv"),
    }
    every = ("answer", "double")
    write(folder, "=1+1.ipynb", submission(done=every))  # honest, with a formula for a name
    write(  # a dot-name is graded like any other; this one swallows every exception
        folder,
        ".dotty.ipynb",
        submission(early="get_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: None)"),
    )
    write(folder, "carl/1.ipynb", submission(early="get_ipython().showtraceback = lambda *a, **k: None"))
    write(  # carl's second notebook: an input transformer turns every test cell into `pass`
        folder,
        "carl/2.ipynb",
        submission(
            early="get_ipython().input_transformers_post.append("
            "lambda lines: ['pass\\n'] if any('Graded test' in line for line in lines) else lines)"
        ),
    )
    cheat = f"SOURCE = {str(targets['source'])!r}\n" + CHEATING_ANSWER
    write(
        folder, "mallory.ipynb", submission(done=("double",), replace={"answer": cheat}, after_tests=saboteur(targets))
    )
    write(folder, "zoe.ipynb", submission(drop_answer=True))  # graded after mallory: no answer() of its own
    eve = submission(done=("double",), replace={"answer": "def answer():\n    return 0"}, early=REBIND)
    eve.cells[1].source = eve.cells[1].source.replace("math.isclose(value, target)", "True")  # the instructor's cell
    write(folder, "eve.ipynb", eve)
    (folder / "notes.txt").write_text("not a notebook", encoding="utf-8")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    write(folder, ".ipynb_checkpoints/=1+1-checkpoint.ipynb", submission(done=every))
    (folder / "._mallory.ipynb").write_bytes(b"\0\5\26\7 AppleDouble")
    (folder / "link.ipynb").symlink_to(sources / f"{EXERCISE}.ipynb")  # the solutions, 10/10 if followed
    (folder / "linkdir").symlink_to(sources, target_is_directory=True)
    os.mkfifo(folder / "fifo.ipynb")  # reading it would block the grader forever
    watched = [PACKAGE_DIR.parent, data_dir() / "FashionMNIST", hub_checkpoint_dir(), site_packages / "nbval"]
    before = tree_state(*watched, folder, sources)
    start = time.perf_counter()
    status = grade.main(
        [str(folder), "--exercise", EXERCISE, "--hidden", "--sources", str(sources), "--timeout", "60"]
        + ["--isolation", "bwrap", "-o", str(report)]
    )
    seconds = time.perf_counter() - start
    report_csv = report.with_suffix(".csv").read_bytes()
    time.sleep(0.5)  # a surviving daemon would rewrite the report within 0.05 s
    with open(report.with_suffix(".csv"), newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {
        "status": status,
        "rows": rows,
        "by": by_student(rows),
        "csv_text": report_csv.decode(),
        "csv_after": report.with_suffix(".csv").read_bytes(),
        "md": report.with_suffix(".md").read_text(encoding="utf-8"),
        "before": before,
        "after": tree_state(*watched, folder, sources),
        "survivors": survivors(),
        "planted": targets["site_packages"].exists(),
        "seconds": seconds,
    }


def _get(hostile, student, submission=None):
    matches = [v for (s, sub), v in hostile["by"].items() if s == student and (submission in (None, sub))]
    assert len(matches) == 1, (student, submission, list(hostile["by"]))
    return matches[0]


def test_the_run_is_isolated_and_says_so(hostile):
    assert hostile["status"] == 0
    assert "Isolation: isolated with bubblewrap" in hostile["md"] and "NOT ISOLATED" not in hostile["md"]


def test_an_honest_submission_scores_full_marks_next_to_the_attacks(hostile):
    honest = _get(hostile, "'=1+1")  # as the CSV holds it: quoted, so that no spreadsheet runs it
    assert honest["TOTAL"]["points"] == "5" and honest["TOTAL"]["status"] == "total"
    assert honest["t_answer"]["status"] == "pass" and honest["t_double"]["status"] == "pass"


@pytest.mark.parametrize(
    "student, submission, evidence",
    [
        ("carl", "carl/1.ipynb", "shell.showtraceback"),  # traceback display switched off
        ("carl", "carl/2.ipynb", "input_transformers_post"),  # test cells rewritten before they run
        (".dotty", ".dotty.ipynb", "custom_exceptions"),  # every exception swallowed
    ],
)
def test_switching_off_the_checks_scores_nothing_and_is_marked_for_review(hostile, student, submission, evidence):
    rows = _get(hostile, student, submission)
    assert rows["TOTAL"]["points"] == "0" and rows["TOTAL"]["status"] == "review"
    for test in ("t_answer", "t_double"):
        assert rows[test]["status"] == "review" and rows[test]["points"] == "0"
        assert evidence in rows[test]["message"], rows[test]["message"]
    assert "REVIEW" in rows["TOTAL"]["note"]
    assert f"- {student} ({submission})" in hostile["md"].split("## Needs review")[1].split("##")[0]


def test_lying_helpers_and_edited_instructor_cells_are_marked_for_review(hostile):
    eve = _get(hostile, "eve")
    assert eve["t_answer"]["status"] == "review" and eve["t_answer"]["points"] == "0"
    assert "the instructor's function 'close_to' was redefined" in eve["t_answer"]["message"]
    assert "the name 'math' is a AlwaysClose" in eve["t_answer"]["message"]
    assert "instructor's cell 'import math' edited" in eve["TOTAL"]["note"] and eve["TOTAL"]["status"] == "review"


def test_the_solutions_cannot_be_read_and_hidden_tests_never_reach_the_report(hostile):
    mallory = _get(hostile, "mallory")
    assert mallory["t_answer"]["status"] == "fail"
    message = mallory["t_answer"]["message"]
    assert "could not read the solutions" in message and "[hidden test]" in message
    assert "OFFSET == 42" not in hostile["csv_text"] and "OFFSET == 42" not in hostile["md"]
    assert mallory["t_double"]["status"] == "pass"  # its honest work still counts


def test_sabotage_changes_nothing_outside_the_report(hostile):
    assert hostile["after"] == hostile["before"], {
        k for k in set(hostile["before"]) | set(hostile["after"]) if hostile["before"].get(k) != hostile["after"].get(k)
    }
    assert not hostile["planted"]
    assert hostile["csv_after"].decode() == hostile["csv_text"] and "HACKED" not in hostile["csv_text"]
    assert hostile["survivors"] == []


def test_a_planted_startup_file_helps_nobody_and_is_marked_for_review(hostile):
    mallory, zoe = _get(hostile, "mallory"), _get(hostile, "zoe")
    assert mallory["TOTAL"]["status"] == "review" and "start-up" in mallory["TOTAL"]["note"]
    assert mallory["TOTAL"]["points"] == "3"
    assert zoe["t_answer"]["status"] == "fail" and zoe["t_answer"]["message"].startswith("NameError")
    assert zoe["TOTAL"]["points"] == "0" and zoe["TOTAL"]["status"] == "total"


def test_collection_quirks_get_a_row_or_a_logged_reason(hostile):
    link, folder_link, fifo = _get(hostile, "link"), _get(hostile, "linkdir"), _get(hostile, "fifo")
    assert link["t_answer"]["status"] == "refused" and "symbolic link" in link["t_answer"]["message"]
    assert link["TOTAL"]["points"] == "0"
    assert "symbolic link" in folder_link["TOTAL"]["note"]
    assert fifo["t_answer"]["status"] == "refused" and "not a regular file" in fifo["t_answer"]["message"]
    not_graded = hostile["md"].split("## Files not graded")[1]
    for name in ("notes.txt", ".DS_Store", "._mallory.ipynb", ".ipynb_checkpoints/"):
        assert f"`{name}`" in not_graded, name
    graded = {"'=1+1", ".dotty", "carl", "eve", "mallory", "zoe"}
    assert {s for s, _ in hostile["by"]} == graded | {"link", "linkdir", "fifo"}


def test_two_notebooks_of_one_student_are_both_graded_with_a_warning(hostile):
    totals = [r for r in hostile["rows"] if r["student"] == "carl" and r["test"] == "TOTAL"]
    assert [r["submission"] for r in totals] == ["carl/1.ipynb", "carl/2.ipynb"]
    assert all("one of 2 notebooks of carl" in r["note"] for r in totals)
    assert "carl has 2 notebooks" in hostile["md"].split("## Warnings")[1]


def test_no_cell_of_the_csv_can_run_as_a_formula(hostile):
    assert '\n"\'=1+1","\'=1+1.ipynb",' in hostile["csv_text"]
    for row in hostile["rows"]:
        for value in row.values():
            assert not value.startswith(grade.FORMULA_STARTS), value


# --------------------------------------------------------------------- escaping after time limits
@needs_bwrap
def test_processes_left_by_a_stopped_cell_or_a_stopped_run_are_all_gone(tmp_path):
    sources = make_sources(tmp_path / "sources")
    spin = f"DAEMON = 'import time; time.sleep(600)'\n{ESCAPE}\nwhile True:\n    pass"
    stopped_cell = tmp_path / "cell"
    write(stopped_cell, "a.ipynb", submission(done=("answer",), middle=spin))
    settings = grade.GradeSettings(EXERCISE, timeout=60, sources=sources, cell_timeout=3, isolation="bwrap")
    rows = grade.grade_folder(stopped_cell, settings, log=lambda *_: None).rows
    assert survivors() == []
    got = {r.test: r for r in rows}
    assert got["t_answer"].status == "pass" and got["t_double"].status == "fail"
    assert "a cell was stopped: Timeout of 3 seconds" in got["TOTAL"].note

    stopped_run = tmp_path / "run"
    write(stopped_run, "b.ipynb", submission(done=("answer", "double"), middle=spin))
    settings = grade.GradeSettings(EXERCISE, timeout=8, sources=sources, cell_timeout=60, isolation="bwrap")
    rows = grade.grade_folder(stopped_run, settings, log=lambda *_: None).rows
    assert survivors() == []
    got = {r.test: r for r in rows}
    assert got["t_answer"].status == "pass" and got["t_answer"].points == 2  # finished before the limit: kept
    assert got["t_double"].status == "timeout" and "stopped after --timeout 8 s" in got["t_double"].message
    assert got["TOTAL"].points == 2 and "timeout: stopped after 8 s" in got["TOTAL"].note


# ---------------------------------------------------------------------------------------- limits
@needs_bwrap
def test_hitting_a_limit_is_a_row_with_the_reason_and_the_next_submission_is_graded(tmp_path):
    sources = make_sources(tmp_path / "sources")
    folder = tmp_path / "subs"
    hog = (
        "def answer():\n    print('x' * 2_000_000)\n"
        "    block = bytearray(3 * 1024**3)  # more than the memory limit\n    return 42"
    )
    big_file = "def double(x):\n    open('big.bin', 'wb').write(b'x' * 2 * 1024**2)\n    return 2 * x"
    fork_bomb = (
        "import os\nfor _ in range(1000):\n    if os.fork() == 0:\n        import time; time.sleep(60); os._exit(0)"
    )
    write(folder, "a_hog.ipynb", submission(replace={"answer": hog, "double": big_file}, middle=fork_bomb))
    write(folder, "b_spin.ipynb", submission(replace={"answer": "def answer():\n    while True:\n        pass"}))
    limits = sandbox.Limits(memory_gb=2, file_mb=1, processes=64, cpu_seconds=3, output_kb=64)
    settings = grade.GradeSettings(
        EXERCISE, timeout=60, sources=sources, cell_timeout=40, limits=limits, isolation="bwrap"
    )
    batch = grade.grade_folder(folder, settings, log=lambda *_: None)
    got = by_student(batch.rows)
    hog_rows, spin = got[("a_hog", "a_hog.ipynb")], got[("b_spin", "b_spin.ipynb")]
    assert hog_rows["t_answer"]["status"] == "fail"
    assert "memory limit of 2 GB per process was reached" in hog_rows["t_answer"]["message"]
    assert "[output cut at 64 KB]" in hog_rows["t_answer"]["message"]  # 2 MB printed, 64 KB kept
    assert "file-size limit of 1 MB was reached" in hog_rows["t_double"]["message"]
    assert "limit of 64 processes and threads was reached" in hog_rows["TOTAL"]["note"]
    assert spin["t_answer"]["status"] == "fail" and "CPU-time limit of 3 s" in spin["t_answer"]["message"]
    assert "the kernel died" in spin["TOTAL"]["note"]
    assert hog_rows["TOTAL"]["status"] == "total" and spin["TOTAL"]["status"] == "total"  # graded, one after another
    assert survivors() == []


# ------------------------------------------------------------------------------ without bubblewrap
def test_without_bubblewrap_the_report_says_not_isolated_and_still_cleans_up(tmp_path):
    sources = make_sources(tmp_path / "sources")
    folder = tmp_path / "subs"
    plant = (
        "import os\nstartup = os.path.join(os.environ['IPYTHONDIR'], 'profile_default', 'startup')\n"
        "os.makedirs(startup, exist_ok=True)\n"
        "open(os.path.join(startup, '00-free.py'), 'w').write('def answer():\\n    return 42\\n')\n"
        "DAEMON = 'import time; time.sleep(600)'\n" + ESCAPE
    )
    write(folder, "a_escaper.ipynb", submission(done=("double",), after_tests=plant))
    write(folder, "b_next.ipynb", submission(drop_answer=True))
    report = tmp_path / "report" / "grades"
    status = grade.main(
        [str(folder), "--exercise", EXERCISE, "--sources", str(sources), "--timeout", "60", "--isolation", "none"]
        + ["-o", str(report)]
    )
    assert status == 0
    assert survivors() == []
    markdown = report.with_suffix(".md").read_text(encoding="utf-8")
    assert "**WARNING: the submissions were NOT isolated.**" in markdown
    with open(report.with_suffix(".csv"), newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    totals = {r["student"]: r for r in rows if r["test"] == "TOTAL"}
    assert all("NOT ISOLATED" in r["note"] for r in totals.values())
    assert totals["a_escaper"]["status"] == "review" and totals["a_escaper"]["points"] == "3"
    assert totals["b_next"]["points"] == "0"  # a fresh home and IPython folder for every run


# ----------------------------------------------------------------- inputs that broke the grader itself
IMAGE = "![x](http://127.0.0.1:9/pixel.png) <img src=http://127.0.0.1:9/y.png> [link](http://127.0.0.1:9/) `tick` |"
FORGED = "a\x1b[2J\x1b[31mred\n[9/9] mallory: 5/5"  # clears the screen, then forges a progress line
TINY_OBJECTS_MB = 10  # of `{},`: about 2 GB of Python objects once parsed (a grader reading it in-process grew so)


def deep_folder(top: Path, levels: int) -> Path:
    """``top``/a/a/.../a, ``levels`` folders deep (made one at a time: os.makedirs recurses and fails past 1,000)."""
    here = top
    for _ in range(levels):
        here = here / "a"
        here.mkdir(parents=True, exist_ok=True)
    return here


def notebook_shaped(change) -> bytes:
    """An honest submission's JSON after ``change(data)``: a field of a type Jupyter never writes, say."""
    data = json.loads(nbformat.writes(submission(done=("answer", "double"))))
    change(data)
    return json.dumps(data).replace('"HUGE"', "1" + "0" * 5000).encode()


SHAPES = {  # each crashed the grader (the report was never written) or must stay a row with a reason
    "source_a_number": lambda d: d["cells"][2].update(source=5),  # AttributeError in the grader
    "a_huge_number": lambda d: d.update(nbformat="HUGE"),  # a number of 5,000 digits: ValueError in the grader
    "cells_of_numbers": lambda d: d.update(cells=[1, "x", None]),
    "metadata_a_list": lambda d: d["cells"][2].update(metadata=[]),
    "outputs_a_dict": lambda d: d["cells"][3].update(outputs={"a": 1}),
}


def remove_deep(top: Path) -> None:
    """Remove a chain of folders bottom up (shutil.rmtree recurses, and fails past 1,000 levels)."""
    chain = [top]
    while True:
        inner = list(chain[-1].iterdir())
        for path in inner:
            if path.is_symlink() or not path.is_dir():
                path.unlink()
        folders = [p for p in inner if p.is_dir() and not p.is_symlink()]
        if not folders:
            break
        chain += folders[:1]  # a chain: one folder per level
    for folder in reversed(chain):
        folder.rmdir()


def tiny_objects_notebook(megabytes: int) -> bytes:
    """A valid notebook of the tiny exercise whose metadata holds ``megabytes`` MB of empty JSON objects."""
    nb = submission(done=("answer", "double"))
    nb.metadata["filler"] = "FILLER"
    filler = "[" + ",".join(["{}"] * (megabytes * 1024 * 1024 // 3)) + "]"
    return nbformat.writes(nb).replace('"FILLER"', filler, 1).encode()


@pytest.fixture(scope="module")
def unruly(tmp_path_factory):
    """One `course grade` run (bwrap where installed) over names, depths and sizes that crashed or fooled it."""
    base = tmp_path_factory.mktemp("unruly")
    sources = make_sources(base / "sources")
    folder = base / "subs"
    every = ("answer", "double")
    write(folder, "plain.ipynb", submission(done=every))
    honest = nbformat.writes(submission(done=every)).encode()
    (Path(os.fsdecode(bytes(folder) + b"/Ren\xe9e.ipynb"))).write_bytes(honest)  # a Windows zip's cp1252 name
    (folder / f"{FORGED}.ipynb".replace("/", "\u2215")).write_bytes(honest)  # no slash: it is a file name
    (folder / "\u202egnp.ipynb").write_bytes(honest)  # a right-to-left override: shows as 'bnpi.png'
    write(
        folder,
        "imagery.ipynb",
        submission(done=("double",), replace={"answer": f"def answer():\n    raise AssertionError({IMAGE!r})"}),
    )
    nbformat.write(submission(done=every), deep_folder(folder / "deep", 20) / "x.ipynb")
    (deep_folder(folder / "deeper", 1100) / "y.ipynb").write_bytes(honest)
    (folder / "tiny_objects.ipynb").write_bytes(tiny_objects_notebook(TINY_OBJECTS_MB))
    for name in ("source_a_number", "a_huge_number"):
        (folder / f"{name}.ipynb").write_bytes(notebook_shaped(SHAPES[name]))
    report = base / "report" / "grades"
    script = (  # VmHWM: this process image's peak RSS (ru_maxrss would keep pytest's, from before the exec)
        "import sys\nfrom course_utils.tools import grade\nstatus = grade.main(sys.argv[1:])\n"
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
        "print('PEAK_MB', int(peak) // 1024)\nsys.exit(status)\n"
    )
    args = [str(folder), "--exercise", EXERCISE, "--sources", str(sources), "--timeout", "60", "-o", str(report)]
    run = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, timeout=900)
    with open(report.with_suffix(".csv"), newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    remove_deep(folder / "deeper")
    return {
        "status": run.returncode,
        "console": run.stdout.decode(),
        "errors": run.stderr.decode(),
        "rows": rows,
        "by": by_student(rows),
        "csv": report.with_suffix(".csv").read_text(encoding="utf-8"),
        "md": report.with_suffix(".md").read_text(encoding="utf-8"),
    }


def test_a_name_of_any_bytes_or_characters_is_graded_and_shown_escaped(unruly):
    assert unruly["status"] == 0, unruly["errors"][-2000:]
    shown = {student for student, _ in unruly["by"]}
    assert "Ren\\xe9e" in shown  # the byte that is not UTF-8, as \xNN: the report could not be written before
    forged = FORGED.replace("/", "\u2215").replace("\x1b", "\\x1b").replace("\n", "\\n")
    assert forged in shown and "\\u202egnp" in shown
    for student in ("Ren\\xe9e", forged, "\\u202egnp"):
        assert _get(unruly, student)["TOTAL"]["points"] == "5"  # graded like any other
    for sink in ("console", "csv", "md"):
        assert "\x1b" not in unruly[sink] and "\u202e" not in unruly[sink], sink
    lines = unruly["console"].splitlines()
    assert not any(line.startswith("[9") for line in lines)  # no forged progress line
    assert "\n[9" not in unruly["csv"] and "\n[9" not in unruly["md"]


def test_student_text_cannot_add_an_image_a_link_or_html_to_the_markdown(unruly):
    message = _get(unruly, "imagery")["t_answer"]["message"]
    assert message == f"AssertionError: {IMAGE}"  # the CSV keeps the text as it was
    md = unruly["md"]
    assert "](http" not in md and "<img" not in md and "![" not in md
    assert "\\!\\[x\\]\\(http://127.0.0.1:9/pixel.png\\) &lt;img" in md  # shown, literally


def test_folders_too_deep_are_named_and_skipped_without_a_crash(unruly):
    not_graded = unruly["md"].split("## Files not graded")[1]
    assert "more than 16 levels deep are not searched" in not_graded
    assert "deeper/a/a/" in not_graded and "deep/a/a/" in not_graded
    assert not any(s in ("deep", "deeper") for s, _ in unruly["by"])


def test_a_notebook_too_costly_to_parse_is_refused_and_the_grader_stays_small(unruly):
    rows = _get(unruly, "tiny_objects")
    assert rows["t_answer"]["status"] == "refused" and rows["TOTAL"]["points"] == "0"
    assert "needs more than 1536 MB of memory" in rows["t_answer"]["message"]
    peak = int(unruly["console"].rsplit("PEAK_MB", 1)[1].split()[0])
    assert peak < 400, peak  # it grew past 1.8 GB for this 10 MB file when the grader parsed it itself


@pytest.mark.parametrize("name", ["source_a_number", "a_huge_number"])
def test_json_of_a_shape_jupyter_never_writes_is_a_row_with_the_reason(unruly, name):
    rows = _get(unruly, name)
    assert rows["t_answer"]["status"] == "invalid-notebook" and rows["TOTAL"]["points"] == "0"
    assert rows["t_answer"]["message"].startswith("not a valid notebook"), rows["t_answer"]["message"]


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_the_reader_answers_every_shape_with_a_notebook_or_a_reason(tmp_path, name):
    sources = make_sources(tmp_path / "sources")
    path = tmp_path / "x.ipynb"
    path.write_bytes(notebook_shaped(SHAPES[name]))
    with pytest.raises(SubmissionProblem) as caught:
        read_prepared(path, sources / f"{EXERCISE}.ipynb", EXERCISE, hidden=False)
    assert caught.value.status == "invalid-notebook" and str(caught.value).startswith("not a valid notebook")


# ------------------------------------------------------------------------------ a class in parallel
def comparable(rows) -> list[tuple]:
    """Rows without the run time in TOTAL notes (the one thing that differs between two gradings)."""
    return [tuple(re.sub(r"; ran in \d+ s|ran in \d+ s", "", str(v)) for v in r.__dict__.values()) for r in rows]


def test_a_class_graded_in_parallel_gives_the_report_of_one_at_a_time(tmp_path):
    sources = make_sources(tmp_path / "sources")
    folder = tmp_path / "class"
    write(folder, "ann.ipynb", submission(done=("answer", "double")))
    write(folder, "ben.ipynb", submission(done=("answer",)))
    write(folder, "cid.ipynb", submission(done=("answer", "double"), middle="while True:\n    pass"))  # stopped
    write(folder, "dee.ipynb", submission(done=("double",), early="import os\nos._exit(3)"))  # kernel dies
    (folder / "eva.ipynb").write_text('{"cells": [', encoding="utf-8")
    (folder / "fay.ipynb").symlink_to(sources / f"{EXERCISE}.ipynb")
    write(folder, "gus/1.ipynb", submission(done=("double",)))
    one, lines = [], []
    kwargs = dict(timeout=60, sources=sources, cell_timeout=4, isolation="auto")
    serial = grade.grade_folder(folder, grade.GradeSettings(EXERCISE, jobs=1, **kwargs), log=one.append)
    parallel = grade.grade_folder(folder, grade.GradeSettings(EXERCISE, jobs=3, **kwargs), log=lines.append)
    assert comparable(parallel.rows) == comparable(serial.rows)
    assert {r.student: r.points for r in serial.rows if r.test == "TOTAL"} == {
        "ann": 5,
        "ben": 2,
        "cid": 5,  # the endless cell is interrupted after 4 s and the tests after it run
        "dee": 0,
        "eva": 0,
        "fay": 0,
        "gus": 3,
    }
    assert "a cell was stopped" in next(r.note for r in serial.rows if r.student == "cid" and r.test == "TOTAL")
    assert "grading 7 submission(s), 3 at a time" in lines
    assert sum(line.startswith("    done ") for line in lines) == 7 and any("done 7/7" in line for line in lines)
    assert survivors() == []


def test_a_submission_that_breaks_the_grader_is_a_row_and_the_report_is_written(tmp_path, monkeypatch):
    sources = make_sources(tmp_path / "sources")
    folder = tmp_path / "subs"
    write(folder, "a.ipynb", submission(done=("answer", "double")))
    write(folder, "b.ipynb", submission(done=("answer", "double")))
    real = grade.read_prepared

    def breaks_on_b(path, *args):  # a fault injected into the grader itself, for one submission
        if path.name == "b.ipynb":
            raise RuntimeError("an error nobody foresaw")
        return real(path, *args)

    monkeypatch.setattr(grade_one, "read_prepared", breaks_on_b)  # where one submission is read
    report = tmp_path / "report" / "grades"
    args = [str(folder), "--exercise", EXERCISE, "--sources", str(sources), "--timeout", "60", "-o", str(report)]
    assert grade.main(args) == 0
    with open(report.with_suffix(".csv"), newline="", encoding="utf-8") as handle:
        got = by_student(csv.DictReader(handle))
    assert got[("a", "a.ipynb")]["TOTAL"]["points"] == "5"
    broken = got[("b", "b.ipynb")]
    assert broken["t_answer"]["status"] == "crashed" and broken["TOTAL"]["points"] == "0"
    assert (
        "the grader itself failed on this submission (RuntimeError: an error nobody foresaw)"
        in broken["t_answer"]["message"]
    )


def test_ctrl_c_writes_the_report_of_what_finished(tmp_path):
    sources = make_sources(tmp_path / "sources")
    folder = tmp_path / "subs"
    write(folder, "a.ipynb", submission(done=("answer", "double")))
    write(folder, "b.ipynb", submission(done=("answer",), middle=f"# {MARKER}\nwhile True:\n    pass"))
    report = tmp_path / "report" / "grades"
    args = [str(folder), "--exercise", EXERCISE, "--sources", str(sources), "--timeout", "300", "--jobs", "1"]
    command = [sys.executable, "-m", "course_utils.tools.grade", *args, "--cell-timeout", "300", "-o", str(report)]

    def as_at_a_terminal():  # pytest started in the background (`make test &`) passes SIGINT on ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=as_at_a_terminal
    )
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "[2/2]" in line:
            time.sleep(3)  # b's kernel is spinning now
            process.send_signal(signal.SIGINT)
            break
    seen += process.stdout.readlines()
    assert process.wait(timeout=120) == 130, "".join(seen)
    markdown = report.with_suffix(".md").read_text(encoding="utf-8")
    assert "Grading was interrupted: 1 submission(s) were not graded** (b.ipynb)" in markdown
    with open(report.with_suffix(".csv"), newline="", encoding="utf-8") as handle:
        got = by_student(csv.DictReader(handle))
    assert list(got) == [("a", "a.ipynb")] and got[("a", "a.ipynb")]["TOTAL"]["points"] == "5"
    assert survivors() == []


# ------------------------------------------------------------------- memory of the whole submission
@needs_bwrap
def test_the_memory_of_the_whole_submission_is_limited_and_named_in_the_total(tmp_path):
    sources = make_sources(tmp_path / "sources")
    folder = tmp_path / "subs"
    hoard = (  # each process under the per-process limit; together, with a file in /dev/shm, over the total
        "import subprocess, sys, time\n"
        "open('/dev/shm/hoard', 'wb').write(b'x' * 200 * 1024**2)\n"
        "fill = 'b = bytearray(250 * 1024**2); b[::4096] = b\"z\" * len(b[::4096]); import time; time.sleep(600)'\n"
        f"kids = [subprocess.Popen([sys.executable, '-c', fill, '{MARKER}']) for _ in range(4)]\n"
        "time.sleep(600)"
    )
    write(folder, "a_hoard.ipynb", submission(done=("answer", "double"), middle=hoard))
    write(folder, "b_next.ipynb", submission(done=("answer", "double")))
    limits = sandbox.Limits(total_memory_gb=1, memory_gb=4)
    settings = grade.GradeSettings(EXERCISE, timeout=120, sources=sources, limits=limits, isolation="bwrap", jobs=1)
    batch = grade.grade_folder(folder, settings, log=lambda *_: None)
    got = by_student(batch.rows)
    hoarder, after = got[("a_hoard", "a_hoard.ipynb")], got[("b_next", "b_next.ipynb")]
    assert hoarder["t_answer"]["status"] == "pass"  # finished before the limit: kept
    assert hoarder["t_double"]["status"] == "crashed"
    assert "stopped at --total-memory-limit 1 GB" in hoarder["t_double"]["message"]
    note = hoarder["TOTAL"]["note"]
    assert "the memory limit of 1 GB for the whole submission was reached (--total-memory-limit)" in note, note
    assert "of files in memory" in note and after["TOTAL"]["points"] == 5
    assert "1 GB per submission in all" in batch.limits.describe()
    assert survivors() == []


def test_the_runner_grades_each_cell_of_a_class(tmp_path):
    sources = make_sources(tmp_path / "sources")
    folder = tmp_path / "class"
    write(folder, "ann.ipynb", submission(done=("answer", "double")))
    write(folder, "ben.ipynb", submission(done=("answer",)))
    write(folder, "cid.ipynb", submission(done=("answer", "double"), middle="while True:\n    pass"))  # interrupted
    write(folder, "dee.ipynb", submission(done=("double",), early="import os\nos._exit(3)"))  # kernel dies
    write(folder, "eli.ipynb", submission(early="get_ipython().showtraceback = lambda *a, **k: None"))  # review
    loud = "def answer():\n    print('x' * 2_000_000)\n    return 42"  # output cut at the limit
    write(folder, "fin.ipynb", submission(done=("double",), replace={"answer": loud}))
    settings = grade.GradeSettings(EXERCISE, timeout=60, sources=sources, cell_timeout=4, isolation="auto", jobs=2)
    got = by_student(grade.grade_folder(folder, settings, log=lambda *_: None).rows)
    assert got[("ann", "ann.ipynb")]["TOTAL"]["points"] == 5 and got[("ben", "ben.ipynb")]["TOTAL"]["points"] == 2
    assert (
        got[("cid", "cid.ipynb")]["TOTAL"]["points"] == 5
        and "Timeout of 4 seconds" in got[("cid", "cid.ipynb")]["TOTAL"]["note"]
    )
    assert got[("dee", "dee.ipynb")]["t_double"]["message"] == "not run: the kernel had died in an earlier cell"
    assert got[("eli", "eli.ipynb")]["TOTAL"]["status"] == "review"
    assert "[output cut at 256 KB]" in got[("fin", "fin.ipynb")]["t_answer"]["message"]
    assert survivors() == []


# ---------------------------------------------------- exercise 1: points from the judge, outside the kernel
EX1 = "ex1_freeze_and_head"
EX1_SOURCE = source_path(EX1)
ONLY_THE_BODY = """
def setup_transfer_learning(num_classes, backbone="mobilenet_v2", pretrained=True):
    return load_backbone(backbone, pretrained=pretrained)  # no new head, nothing frozen
"""
EVERYTHING = """
def head_optimizer(model, lr=0.01):
    return torch.optim.SGD(model.parameters(), lr=lr)
"""
NO_TRAINING = """
def train_head(model, loader, optimizer, epochs):
    return model  # trains nothing
"""
NO_OP_CHECKS = """
import types
from course_utils import checks, genuine
def _nothing(*args, **kwargs):
    return None
for _module in (checks, genuine):
    for _name, _value in vars(_module).items():
        if isinstance(_value, types.FunctionType) and not _value.__code__.co_freevars:
            _value.__code__ = _nothing.__code__  # every check passes
"""
LYING_EVALUATION = """
import torch
def _always(self, other):
    return torch.ones(torch.broadcast_shapes(self.shape, torch.as_tensor(other).shape), dtype=torch.bool)
torch.Tensor.__eq__ = _always  # every prediction "equals" its label
nn.CrossEntropyLoss.forward = lambda self, logits, labels: (logits * 0).sum()  # a loss of 0 that still backpropagates
"""
CHEATING_HEAD = """
import torch.nn.modules.linear as _linear


class Linear(nn.Linear):
    \"\"\"In evaluation, the answers of the notebook's own held-out images, in the order the loader gives them.\"\"\"

    def forward(self, x):
        queue = globals().get("_answers")
        if self.training or "splits" not in globals() or len(x) < 2:
            return super().forward(x)
        if not queue:
            queue = globals()["_answers"] = [int(y) for _, y in splits["test"]]
        take, globals()["_answers"] = queue[: len(x)], queue[len(x):]
        if len(take) < len(x):
            return super().forward(x)
        return super().forward(x) * 0 + 20 * torch.nn.functional.one_hot(torch.tensor(take), self.out_features).float()


Linear.__module__, Linear.__qualname__ = "torch.nn.modules.linear", "Linear"  # torch's own name
_linear.Linear = Linear


def setup_transfer_learning(num_classes, backbone="mobilenet_v2", pretrained=True):
    model = load_backbone(backbone, pretrained=pretrained)
    for param in model.parameters():
        param.requires_grad = False
    if backbone == "mobilenet_v2":
        model.classifier[-1] = Linear(model.classifier[-1].in_features, num_classes)
    else:
        model.fc = Linear(model.fc.in_features, num_classes)
    return model
"""
SNOOP = """
import os, json


def setup_transfer_learning(num_classes, backbone="mobilenet_v2", pretrained=True):
    own = open("submission.ipynb", encoding="utf-8").read()
    found = {
        "judge": sorted(os.listdir(JUDGE)) if os.path.isdir(JUDGE) else "absent",
        "sources": sorted(os.listdir(SOURCES)) if os.path.isdir(SOURCES) else "absent",
        "run": sorted(os.listdir(".")),
        "hidden": ("BEGIN " + "HIDDEN") in own or ("expected_" + "10") in own,  # not spelled out: this cell is in it
    }
    raise RuntimeError("found " + json.dumps(found, sort_keys=True))
"""


def _ex1_cell(nb, marker: str):
    matches = [cell for cell in nb.cells if cell.cell_type == "code" and marker in cell.source]
    assert len(matches) == 1, marker
    return matches[0]


def ex1_submission(done=(), replace=None, early=None):
    """Exercise 1's student copy: the source's solution of each function in ``done``, replacements, an early cell."""
    source, nb = nbformat.read(EX1_SOURCE, as_version=4), nbformat.read(student_path(EX1_SOURCE), as_version=4)
    for name in done:
        _ex1_cell(nb, f"def {name}(").source = strip_hidden(_ex1_cell(source, f"def {name}(").source)
    for name, text in (replace or {}).items():
        _ex1_cell(nb, f"def {name}(").source = text.strip()
    if early:
        index = nb.cells.index(_ex1_cell(nb, "def setup_transfer_learning("))
        nb.cells.insert(index, new_code_cell(early.strip()))
    return nb


@pytest.fixture(scope="module")
def judged_hostile(tmp_path_factory):
    """One `course grade --isolation bwrap` of exercise 1 (scored by the judge) over attacks on the in-kernel checks."""
    if not sys.platform.startswith("linux") or sandbox.find_bwrap() is None:
        pytest.skip("bubblewrap is not installed (CI installs it: .ci/run)")
    folder = tmp_path_factory.mktemp("judged")
    every = ("setup_transfer_learning", "head_optimizer", "train_head")
    write(folder, "honest.ipynb", ex1_submission(done=every))
    write(folder, "a_always_ok.ipynb", ex1_submission(early=ALWAYS_OK))  # empty, every cell reported ok
    broken = {"setup_transfer_learning": ONLY_THE_BODY, "head_optimizer": EVERYTHING, "train_head": NO_TRAINING}
    write(folder, "b_no_op_checks.ipynb", ex1_submission(replace=broken, early=NO_OP_CHECKS))
    untrained = {"train_head": NO_TRAINING}
    write(folder, "c_lying_eval.ipynb", ex1_submission(every[:2], untrained, early=LYING_EVALUATION))
    cheat = {"setup_transfer_learning": CHEATING_HEAD, "train_head": NO_TRAINING}
    write(folder, "d_torch_named.ipynb", ex1_submission(every[1:2], cheat))
    write(folder, "e_no_epochs.ipynb", ex1_submission(every[:2], untrained, early="EPOCHS = 0"))
    snoop = f"JUDGE = {str(judge.JUDGE_DIR)!r}\nSOURCES = {str(EX1_SOURCE.parent)!r}\n" + SNOOP
    write(folder, "f_snoop.ipynb", ex1_submission(every[1:], {"setup_transfer_learning": snoop}))
    report = tmp_path_factory.mktemp("judged-report") / "grades"
    status = grade.main(
        [str(folder), "--exercise", EX1, "--hidden", "--timeout", "400", "--isolation", "bwrap", "-o", str(report)]
    )
    assert status == 0
    with open(report.with_suffix(".csv"), newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {"by": {student: tests for (student, _), tests in by_student(rows).items()}}


def test_an_honest_exercise_1_scores_full_marks_from_the_judge(judged_hostile):
    honest = judged_hostile["by"]["honest"]
    assert honest["TOTAL"]["points"] == "10" and honest["TOTAL"]["status"] == "total"


@pytest.mark.parametrize(
    "student, targets",
    [
        ("a_always_ok", "all"),  # an empty copy whose kernel reports every cell as ok
        ("b_no_op_checks", "all"),  # the checks' code replaced by `return None`
        ("c_lying_eval", ("ex1_accuracy", "ex1_frozen_stays_frozen")),  # == always true, a loss of 0
        ("d_torch_named", ("ex1_accuracy", "ex1_frozen_stays_frozen")),  # a head that knows the answers
        ("e_no_epochs", ("ex1_accuracy", "ex1_frozen_stays_frozen")),  # the budget set to nothing
    ],
)
def test_attacks_on_the_checks_in_the_kernel_earn_nothing_from_the_judge(judged_hostile, student, targets):
    rows = judged_hostile["by"][student]
    tests = [t for t in rows if t != "TOTAL"] if targets == "all" else targets
    for test in tests:
        assert rows[test]["points"] == "0" and rows[test]["status"] == "fail", (test, rows[test])
    if targets == "all":  # these two the fingerprint also sees: a hint for review, no longer what scores 0
        assert rows["TOTAL"]["points"] == "0" and rows["TOTAL"]["status"] == "review"
    else:  # the notebook's own accuracy cell was fooled (it passed, as it did when it decided the points)
        assert rows["ex1_accuracy"]["note"] == "self-check passed", rows["ex1_accuracy"]
        assert "held-out loss" in rows["ex1_accuracy"]["message"]


def test_inside_the_sandbox_neither_the_judge_nor_the_hidden_tests_can_be_read(judged_hostile):
    note = judged_hostile["by"]["f_snoop"]["ex1_head_shape"]["note"]
    found = json.loads(note.split("RuntimeError: found ", 1)[1].split("; ")[0])
    assert found["judge"] == [] and found["sources"] in ([], "absent") and found["hidden"] is False, found
    assert found["run"] == ["submission.ipynb"]  # the export plan was read and deleted before the kernel
