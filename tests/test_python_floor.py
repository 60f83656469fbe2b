"""Python 3.10 is the floor (students' laptops): every file and notebook cell runs there.

vermin, which knows in which version each standard-library module, name and piece of syntax appeared, reads the
package, the scripts, the tests and every notebook's code; a real Python 3.10 byte-compiles the sources where one
is found (pyenv, `python3.10`). A fallback for a newer module is marked `# novm` on its guarded import line.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

try:
    import tomllib  # novm (the fallback below is for 3.10)
except ModuleNotFoundError:  # Python 3.10: the same parser from PyPI (declared in the [test] extra)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
FLOOR = "3.10"
CHECKED = ["course_utils", "data_scripts", "tests"]


def vermin(*paths: Path | str) -> subprocess.CompletedProcess:
    """vermin on PATHS against the floor: exit 1 and one block per file that needs a newer Python."""
    vermin_exe = Path(sys.executable).with_name("vermin")
    command = [str(vermin_exe)] if vermin_exe.is_file() else [sys.executable, "-m", "vermin"]
    flags = [f"--target={FLOOR}-", "--violations", "--no-tips", "--eval-annotations", "--no-make-paths-absolute"]
    return subprocess.run(
        [*command, *flags, *map(str, paths)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def python_sources() -> list[Path]:
    """Every .py file of the project (package, scripts, tests, and any at the top), without walking .venv or data/."""
    found = [*ROOT.glob("*.py")] + [p for folder in CHECKED for p in (ROOT / folder).rglob("*.py")]
    return sorted(p for p in found if "__pycache__" not in p.parts)


def notebook_sources(folder: Path) -> list[Path]:
    """Each notebook's code cells as one .py file in FOLDER (IPython's %magic and !shell lines left out)."""
    written = []
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        cells = []
        for index, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
            if cell["cell_type"] == "code":
                lines = "".join(cell["source"]).splitlines()
                lines = [line for line in lines if not line.lstrip().startswith(("%", "!"))]
                cells.append(f"# cell {index}\n" + "\n".join(lines))
        target = folder / (str(path.relative_to(ROOT)).replace(os.sep, "__") + ".py")
        target.write_text("\n\n".join(cells) + "\n", encoding="utf-8")
        written.append(target)
    return written


@pytest.fixture(scope="module")
def notebooks_as_python(tmp_path_factory) -> list[Path]:
    """Every notebook's code as a .py file, written once for the module."""
    sources = notebook_sources(tmp_path_factory.mktemp("notebooks"))
    assert len(sources) >= 10 and any("00_start_here" in p.name for p in sources)
    return sources


def test_requires_python_is_the_310_floor():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["requires-python"] == f">={FLOOR}"
    assert project["tool"]["ruff"]["target-version"] == "py310"
    assert Version(f"{sys.version_info.major}.{sys.version_info.minor}") in SpecifierSet(f">={FLOOR}")


def test_every_file_and_notebook_cell_parses_as_python_310(notebooks_as_python):
    assert len(python_sources()) > 40 and any(p.name == "cli.py" for p in python_sources())
    failures = []
    for path in [*python_sources(), *notebooks_as_python]:
        try:
            ast.parse(path.read_text(encoding="utf-8"), str(path), feature_version=(3, 10))
        except SyntaxError as err:
            failures.append(f"{path.name}:{err.lineno}: {err.msg}")
    assert not failures, "not Python 3.10 syntax:\n" + "\n".join(failures)


def test_the_sources_and_notebooks_need_nothing_newer_than_310(notebooks_as_python):
    result = vermin(*CHECKED, *notebooks_as_python)
    assert result.returncode == 0, f"needs Python > {FLOOR} (the floor):\n{result.stdout}{result.stderr}"


def test_the_floor_check_can_fail(tmp_path):
    """Newer modules, names and syntax are each found; a guarded import marked `# novm` is not."""
    newer = tmp_path / "newer.py"
    newer.write_text(
        "import tomllib\nfrom typing import Self\nimport datetime\nx = datetime.UTC\n"
        "try:\n    pass\nexcept* ValueError:\n    pass\n",
        encoding="utf-8",
    )
    guarded = tmp_path / "guarded.py"
    guarded.write_text(
        "try:\n    import tomllib  # novm\nexcept ModuleNotFoundError:\n    import tomli as tomllib\n", encoding="utf-8"
    )
    result = vermin(newer, guarded)
    assert result.returncode == 1
    for what in ("'tomllib' module", "'typing.Self' member", "'datetime.UTC' member", "`except*`"):
        assert what in result.stdout, result.stdout
    assert "newer.py" in result.stdout and "guarded.py" not in result.stdout, result.stdout


def python_310() -> str | None:
    """A Python 3.10 interpreter on this machine: python3.10 on PATH, pyenv's, or Windows' `py -3.10`; or None."""
    candidates = [shutil.which("python3.10")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates += sorted(glob.glob(str(pyenv_root / "versions" / "3.10*" / "bin" / "python3.10")), reverse=True)
    candidates += sorted(glob.glob(str(pyenv_root / "versions" / "3.10*" / "python.exe")), reverse=True)  # pyenv-win
    for candidate in filter(None, candidates):
        try:
            answer = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True, timeout=30
            )
        except OSError:
            continue
        if answer.returncode == 0 and answer.stdout.strip() == "(3, 10)":  # a pyenv shim may answer with an error
            return candidate
    return None


COMPILE_ALL = """
import sys
failed = 0
for path in sys.stdin.read().splitlines():
    try:
        compile(open(path, encoding="utf-8").read(), path, "exec")
    except SyntaxError as err:
        failed += 1
        print(f"{path}:{err.lineno}: {err.msg}")
sys.exit(1 if failed else 0)
"""


def test_the_package_byte_compiles_with_a_real_python_310(notebooks_as_python):
    interpreter = python_310()
    if interpreter is None:
        pytest.skip("no Python 3.10 here (python3.10 on PATH, pyenv's 3.10.x, `py -3.10`): vermin's check stands in")
    files = [*python_sources(), *notebooks_as_python]
    result = subprocess.run(  # compiled in memory: no .pyc is written into the checkout
        [interpreter, "-c", COMPILE_ALL], input="\n".join(map(str, files)), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{interpreter} cannot compile:\n{result.stdout}{result.stderr}"


def test_the_310_compile_check_can_fail(tmp_path):
    interpreter = python_310()
    if interpreter is None:
        pytest.skip("no Python 3.10 here (python3.10 on PATH, pyenv's 3.10.x, `py -3.10`)")
    newer = tmp_path / "newer.py"
    newer.write_text("try:\n    pass\nexcept* ValueError:\n    pass\n", encoding="utf-8")  # 3.11 syntax
    result = subprocess.run(
        [interpreter, "-c", COMPILE_ALL], input=str(newer), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and "newer.py:3" in result.stdout
