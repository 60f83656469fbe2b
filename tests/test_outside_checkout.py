"""The package outside the checkout: a wheel installed (not editable) into a fresh venv in a temp folder.

`course init` writes a student's folder from the wheel's own copy of the lessons; author tools say that they need
the checkout (exit status 2, one line); nothing finds a course folder by guessing, nothing is created in the
folder a command runs in. The venv reuses this environment's packages through a .pth file (torch is not
installed again), so the whole module takes seconds, most of them building the wheel.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.setup]  # builds the wheel, makes fresh virtual environments
SOURCE_FILES = ["pyproject.toml", "README.md", "DIARY.template.md", "course_utils", "notebooks"]
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.egg-info", "build")


def run(args: list, cwd: Path, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a command and capture its text output."""
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """Build the wheel from a copy of the checkout, install it into a fresh venv; its paths and a clean env."""
    base = tmp_path_factory.mktemp("outside")
    source = base / "source"
    source.mkdir()
    for name in SOURCE_FILES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=IGNORED)
        else:
            shutil.copy2(path, source / name)
    build = run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", base / "dist", source],
        base,
        None,
        300,
    )
    assert build.returncode == 0, build.stderr
    wheel = next((base / "dist").glob("course_utils-*.whl"))
    target = base / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = Path(
        run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], base, None).stdout.strip()
    )
    (site / "zz_course_test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")  # torch & co, reused
    install = run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel], base, None, 300
    )
    assert install.returncode == 0, install.stderr
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("COURSE_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env["PYTHONNOUSERSITE"] = "1"
    work = base / "work"
    work.mkdir()
    script = target / ("Scripts/course.exe" if os.name == "nt" else "bin/course")
    return {"wheel": wheel, "python": python, "course": script, "env": env, "work": work, "source": source}


def test_the_wheel_carries_lessons_and_student_copies_but_no_solution_sources(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    folder = "course_utils/student_folder/"
    lessons = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    copies = sorted(p.name for p in (ROOT / "notebooks" / "exercises").glob("ex*.ipynb"))
    assert lessons and copies
    assert all(f"{folder}notebooks/{name}" in names for name in lessons)
    assert all(f"{folder}notebooks/exercises/{name}" in names for name in copies)
    assert f"{folder}DIARY.template.md" in names
    assert not [n for n in names if "/source/" in n or n.endswith("conftest.py")], "solution sources in the wheel"
    assert "course_utils/tools/lab_settings/overrides.json" in names
    assert any(n.endswith("entry_points.txt") for n in names)


def test_a_wheel_built_from_the_sdist_carries_the_same_course_files(installed, tmp_path):
    build = "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))"
    sdist = run([sys.executable, "-c", build, tmp_path / "sdist"], installed["source"], None, 300)
    assert sdist.returncode == 0, sdist.stderr
    shutil.unpack_archive(tmp_path / "sdist" / sdist.stdout.split()[-1], tmp_path / "unpacked")
    unpacked = next((tmp_path / "unpacked").iterdir())
    assert not list(unpacked.rglob("source/*.ipynb")), "solution sources in the sdist"
    wheel = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            tmp_path / "w",
            unpacked,
        ],
        tmp_path,
        None,
        300,
    )
    assert wheel.returncode == 0, wheel.stderr

    def course_files(path: Path) -> list[str]:
        return sorted(n for n in zipfile.ZipFile(path).namelist() if "/student_folder/" in n)

    assert course_files(next((tmp_path / "w").glob("*.whl"))) == course_files(installed["wheel"])


def test_the_installed_course_is_the_wheel_and_reports_its_version(installed):
    where = run(
        [installed["python"], "-c", "import course_utils; print(course_utils.__file__)"],
        installed["work"],
        installed["env"],
    )
    assert str(ROOT) not in where.stdout and "site-packages" in where.stdout, where.stdout + where.stderr
    version = run([installed["course"], "--version"], installed["work"], installed["env"])
    from course_utils import __version__

    assert version.returncode == 0 and version.stdout.strip() == f"course {__version__}"


@pytest.fixture(scope="module")
def student(installed) -> dict:
    """`course init student` run in an empty folder: its result and the folder it wrote."""
    work = installed["work"]
    result = run([installed["course"], "init", "student"], work, installed["env"])
    return {"result": result, "folder": work / "student", "work": work}


def test_course_init_writes_a_student_folder_and_nothing_else(student):
    assert student["result"].returncode == 0, student["result"].stderr
    assert sorted(p.name for p in student["work"].iterdir()) == ["student"]  # nothing else where it ran
    folder = student["folder"]
    assert (folder / ".course-folder.json").is_file() and (folder / "README.md").is_file()
    assert (folder / "DIARY.template.md").read_bytes() == (ROOT / "DIARY.template.md").read_bytes()
    lessons = sorted(p.name for p in (folder / "notebooks").glob("*.ipynb"))
    assert lessons == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    for name in lessons:
        assert (folder / "notebooks" / name).read_bytes() == (ROOT / "notebooks" / name).read_bytes()
    copies = sorted(p.name for p in (folder / "notebooks" / "exercises").iterdir())
    assert copies == sorted(p.name for p in (ROOT / "notebooks" / "exercises").glob("ex*.ipynb"))
    assert not (folder / "data").exists()


def test_init_again_keeps_an_edited_notebook_and_updates_an_unchanged_one(installed, student):
    folder = student["folder"]
    edited = folder / "notebooks" / "01_the_analogy.ipynb"
    mine = edited.read_text(encoding="utf-8").replace('"cells": [', '"cells": [ ', 1)
    edited.write_text(mine, encoding="utf-8")
    stale = folder / "notebooks" / "02_scenario_a_small_data.ipynb"
    stale.write_text("{}", encoding="utf-8")  # an older course copy the student never touched: may be updated
    marker = folder / ".course-folder.json"
    record = json.loads(marker.read_text(encoding="utf-8"))
    record["files"][f"notebooks/{stale.name}"] = hashlib.sha256(b"{}").hexdigest()
    marker.write_text(json.dumps(record), encoding="utf-8")
    again = run([installed["course"], "init", str(folder)], student["work"], installed["env"])
    assert again.returncode == 0, again.stderr
    assert "kept notebooks/01_the_analogy.ipynb" in again.stdout and stale.name not in again.stdout
    assert edited.read_text(encoding="utf-8") == mine
    assert stale.read_bytes() == (ROOT / "notebooks" / stale.name).read_bytes()


@pytest.mark.parametrize(
    "args",
    [
        ["results"],
        ["bench", "--help"],
        ["release", "--check"],
        ["sweep", "--status"],
        ["grade", "x", "--exercise", "y"],
    ],
)
def test_author_tools_say_they_need_the_checkout(installed, student, args):
    work = student["work"]
    result = run([installed["course"], *args], work, installed["env"])
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"course {args[0]}" in lines[0] and "checkout" in lines[0], result.stderr
    assert not [p for p in work.iterdir() if p.name != "student"]


def test_without_a_course_folder_commands_say_what_to_run_and_create_nothing(installed, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (["lab"], ["fetch", "data"]):
        result = run([installed["course"], *args], empty, installed["env"])
        assert result.returncode == 2 and "course init DIR" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    probe = (
        "from course_utils import paths\ntry:\n    paths.data_dir()\nexcept paths.CourseFolderError as e:\n    print(e)"
    )
    result = run([installed["python"], "-c", probe], empty, installed["env"])
    assert "no course folder" in result.stdout and "course init DIR" in result.stdout
    assert list(empty.iterdir()) == []  # no ./data made as a side effect


def test_inside_the_student_folder_the_course_folder_is_found_from_below(installed, student):
    folder = student["folder"]
    probe = "from course_utils import paths; print(paths.course_root()); print(paths.checkout_root())"
    result = run([installed["python"], "-c", probe], folder / "notebooks" / "exercises", installed["env"])
    assert result.stdout.split() == [str(folder.resolve()), "None"], result.stderr
    lab_help = run([installed["course"], "lab", "--help"], folder, installed["env"])
    assert lab_help.returncode == 0


def test_course_lab_in_a_fresh_student_folder_says_to_fetch_first(installed, student, tmp_path):
    env = {**installed["env"], "TORCH_HOME": str(tmp_path / "torch")}
    result = run([installed["course"], "lab", "--no-browser"], student["folder"], env, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "mobilenet_v2 weights: missing" in result.stderr and "Run `course fetch`" in result.stderr


# ----------------------------------------------------------- the hosted-notebook start, exactly as README writes it
HOSTED_HEADING = "## On a hosted notebook"
HOSTED_LESSONS = ["notebooks/00_start_here.ipynb", "notebooks/02_scenario_a_small_data.ipynb"]
RUN_CELL = """import sys
import nbformat
from nbclient import NotebookClient

cells = [nbformat.v4.new_code_cell(sys.argv[1]), nbformat.v4.new_code_cell("import os; print(_exit_code, os.getcwd())")]
nb = nbformat.v4.new_notebook(cells=cells)
NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": "."}}).execute()
for cell in nb.cells:  # a kernel may split one print into several stream outputs: join them before reading lines
    print("".join(output.get("text", "") or output.get("data", {}).get("text/plain", "") for output in cell.outputs))
"""


def fenced_blocks(markdown: str) -> list[str]:
    """The contents of the ```python blocks of a piece of markdown, in order."""
    return [block.strip("\n") for block in re.findall(r"```python\n(.*?)```", markdown, re.DOTALL)]


def hosted_cells() -> list[str]:
    """README's hosted-start cell and its lesson check: the two python blocks of its hosted section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split(HOSTED_HEADING, 1)[1].split("\n## ", 1)[0]
    blocks = fenced_blocks(section)
    assert len(blocks) == 2, f"README's hosted section should have two python blocks, has {len(blocks)}"
    return blocks


def test_lesson_00_shows_readmes_hosted_start_cells():
    nb = json.loads((ROOT / "notebooks" / "00_start_here.ipynb").read_text(encoding="utf-8"))
    shown = [b for c in nb["cells"] if c["cell_type"] == "markdown" for b in fenced_blocks("".join(c["source"]))]
    assert shown == hosted_cells()


def fresh_venv(target: Path) -> Path:
    """A new venv that sees this environment's packages (torch & co) through a .pth file, not a download."""
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = Path(
        run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], target, None).stdout.strip()
    )
    (site / "zz_course_test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


@pytest.fixture(scope="module")
def class_data(installed, tmp_path_factory) -> Path:
    """A class's shared data folder, made as docs/students.md tells an instructor (`course fetch --to DIR`), offline:
    Fashion-MNIST from the checkout's data/ (already fetched), the weights from this machine's hub cache."""
    shared = tmp_path_factory.mktemp("class") / "course-data"
    shutil.copytree(ROOT / "data" / "FashionMNIST" / "raw", shared / "FashionMNIST" / "raw")
    env = {**installed["env"], "COURSE_OFFLINE": "1"}
    result = run([installed["course"], "fetch", "--to", shared, "--offline"], installed["work"], env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return shared


def test_the_hosted_start_as_written_then_lessons_00_and_02_pass_nbval(installed, class_data, tmp_path):
    """README's first cell, run as written by a real kernel in a fresh venv in an empty folder (the student put the
    wheel there, so `%pip install -q WHEEL` names the wheel built from this checkout: its file name must be the
    one README gives), offline, the assets from a class's shared folder; then README's nbval check of lessons 00
    and 02 (quick profile), as written, from the folder `course init` made."""
    start, check = hosted_cells()
    assert f"%pip install -q {installed['wheel'].name}" in start.split("\n"), "README names another wheel"
    content = tmp_path / "content"
    content.mkdir()
    shutil.copy2(installed["wheel"], content / installed["wheel"].name)
    python = fresh_venv(tmp_path / "venv")
    env = {**installed["env"], "COURSE_DATA_DIR": str(class_data), "COURSE_OFFLINE": "1", "PIP_NO_INDEX": "1"}
    env |= {"TORCH_HOME": str(tmp_path / "torch"), "PATH": os.pathsep.join([str(python.parent), env["PATH"]])}
    (tmp_path / "run_cell.py").write_text(RUN_CELL, encoding="utf-8")
    ran = run([python, tmp_path / "run_cell.py", start], content, env, timeout=900)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    folder = content / "course"
    assert ran.stdout.strip().splitlines()[-1] == f"0 {folder}", ran.stdout  # course fetch succeeded, cwd is the folder
    assert "mobilenet_v2: ready" in ran.stdout and "fashion-mnist: ready" in ran.stdout, ran.stdout
    assert (folder / ".course-folder.json").is_file()
    assert (tmp_path / "torch" / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth").is_file()
    assert check.startswith("!COURSE_PROFILE=quick python -m pytest") and check.split()[-2:] == HOSTED_LESSONS
    checked = run(["bash", "-c", check.removeprefix("!")], folder, env, timeout=1200)
    assert checked.returncode == 0, checked.stdout[-6000:] + checked.stderr[-3000:]
    cells = sum(
        c["cell_type"] == "code" for name in HOSTED_LESSONS for c in json.loads((folder / name).read_text())["cells"]
    )
    assert re.search(rf"\b{cells} passed\b", checked.stdout), f"nbval should run all {cells} cells: {checked.stdout}"
    where = run([python, "-c", "import course_utils; print(course_utils.__file__)"], folder, env)
    assert str(tmp_path / "venv") in where.stdout, where.stdout  # the wheel the cell installed, not the checkout
