"""The environment: pyproject.toml and environment.yml agree, what is installed satisfies them, Python 3.10 is the
floor (students' laptops), and profiles and device choice behave."""

from __future__ import annotations

import ast
import glob
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import nbformat
import pytest
import torch
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from course_utils import device, profiles

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser from PyPI (declared in the [test] extra)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
FLOOR = (3, 10)
DESIGN_CARD = {"jupyterlab", "torch", "torchvision", "matplotlib", "nbval", "ipywidgets"}
LESSON_NEEDS = {"tqdm", "scikit-image", "scikit-learn"}
# The standard library's newer parts a 3.10 interpreter lacks: module -> version, (module, name) -> version.
NEWER_MODULES = {"tomllib": "3.11", "wsgiref.types": "3.11", "_interpreters": "3.13"}
NEWER_NAMES = {
    ("typing", "Self"): "3.11",
    ("typing", "LiteralString"): "3.11",
    ("typing", "Never"): "3.11",
    ("typing", "NotRequired"): "3.11",
    ("typing", "Required"): "3.11",
    ("typing", "assert_never"): "3.11",
    ("typing", "reveal_type"): "3.11",
    ("typing", "TypeVarTuple"): "3.11",
    ("typing", "Unpack"): "3.11",
    ("typing", "override"): "3.12",
    ("datetime", "UTC"): "3.11",
    ("enum", "StrEnum"): "3.11",
    ("contextlib", "chdir"): "3.11",
    ("hashlib", "file_digest"): "3.11",
    ("asyncio", "TaskGroup"): "3.11",
    ("asyncio", "timeout"): "3.11",
    ("itertools", "batched"): "3.12",
}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def as_dict(specs: list[str]) -> dict[str, Requirement]:
    requirements = [Requirement(s) for s in specs]
    return {r.name.lower(): r for r in requirements}


def pyproject_requirements() -> dict[str, Requirement]:
    """Every requirement a full install (`pip install -e .[test]`) brings, the project's own extras expanded."""
    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    specs = project["dependencies"] + [
        s for extra in extras.values() for s in extra if Requirement(s).name != project["name"]
    ]
    return as_dict(specs)


def conda_requirements() -> dict[str, Requirement]:
    lines = (ROOT / "environment.yml").read_text(encoding="utf-8").splitlines()
    start = lines.index("  - pip:")
    specs = [line.strip()[2:] for line in lines[start + 1 :] if line.strip().startswith("- ")]
    return as_dict(specs)


def unmet(requirements: dict[str, Requirement], installed) -> list[str]:
    """Requirements that apply here (markers) and that the installed versions do not satisfy, in words."""
    problems = []
    for name, requirement in sorted(requirements.items()):
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        version = installed(name)
        if version is None:
            problems.append(f"{name} is declared ({requirement}) but not installed")
        elif not requirement.specifier.contains(Version(version), prereleases=True):
            problems.append(f"{name} {version} is installed, outside the declared range {requirement.specifier}")
    return problems


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def test_environment_yml_and_pyproject_agree():
    assert {n: str(r) for n, r in conda_requirements().items()} == {
        n: str(r) for n, r in pyproject_requirements().items()
    }


def test_required_packages_are_declared():
    assert set(pyproject_requirements()) >= DESIGN_CARD | LESSON_NEEDS | {"jupyterlab-rise", "jinja2", "packaging"}


def test_installed_torch_and_torchvision_satisfy_the_declared_ranges():
    declared = pyproject_requirements()
    for name, module in (("torch", torch), ("torchvision", pytest.importorskip("torchvision"))):
        spec = declared[name].specifier
        version = Version(module.__version__)  # e.g. 2.14.1+cu130: the local part does not matter
        assert spec.contains(version), f"{name} {version} is outside the declared {spec}"
    assert unmet(declared, installed_version) == []  # every declared package, with its extras


def test_the_version_check_can_fail():
    """The check above compares real ranges: an old torch, a torch 3, a missing package are all caught."""
    declared = {"torch": Requirement("torch>=2.1,<3"), "jupyterlab-rise": Requirement("jupyterlab-rise>=0.40")}
    fake = {"torch": "2.0.1", "jupyterlab-rise": "0.43.1"}
    assert unmet(declared, fake.get) == ["torch 2.0.1 is installed, outside the declared range <3,>=2.1"]
    fake["torch"] = "3.0.0"
    assert unmet(declared, fake.get) == ["torch 3.0.0 is installed, outside the declared range <3,>=2.1"]
    fake["torch"] = "2.14.1+cu130"
    assert unmet(declared, fake.get) == []
    assert unmet(declared, {"torch": "2.3"}.get) == [
        "jupyterlab-rise is declared (jupyterlab-rise>=0.40) but not installed"
    ]
    only_old = {"tomli": Requirement("tomli>=2.0; python_version < '3.0'")}  # a marker that does not apply here
    assert unmet(only_old, {}.get) == []


# ---------------------------------------------------------------- Python 3.10 is the floor


def python_sources() -> list[Path]:
    """Every .py file of the project (package, tests, scripts)."""
    return sorted(
        p for p in ROOT.rglob("*.py") if not ({".venv", "build", "data", ".git"} & set(p.relative_to(ROOT).parts))
    )


def notebook_code() -> list[tuple[str, str]]:
    """(where, source) for every code cell of every notebook, IPython's %magic and !shell lines left out."""
    cells = []
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type == "code":
                source = "\n".join(
                    line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))
                )
                cells.append((f"{path.relative_to(ROOT)} cell {index}", source))
    return cells


def test_requires_python_is_the_310_floor():
    assert pyproject()["project"]["requires-python"] == ">=3.10"
    assert pyproject()["tool"]["ruff"]["target-version"] == "py310"
    assert Version(f"{sys.version_info.major}.{sys.version_info.minor}") in SpecifierSet(">=3.10")
    assert len(python_sources()) > 40 and any(p.name == "cli.py" for p in python_sources())


def test_every_file_and_notebook_cell_parses_as_python_310():
    failures = []
    for path in python_sources():
        try:
            ast.parse(path.read_text(encoding="utf-8"), str(path), feature_version=FLOOR)
        except SyntaxError as err:
            failures.append(f"{path.relative_to(ROOT)}:{err.lineno}: {err.msg}")
    for where, source in notebook_code():
        try:
            ast.parse(source, where, feature_version=FLOOR)
        except SyntaxError as err:
            failures.append(f"{where}, line {err.lineno}: {err.msg}")
    assert not failures, "not Python 3.10 syntax:\n" + "\n".join(failures)


def _guarded(node: ast.AST, parents: dict) -> bool:
    """True when an import sits in a `try:` whose handler catches ImportError (a fallback exists)."""
    while node in parents:
        parent = parents[node]
        if isinstance(parent, ast.Try) and node in parent.body:
            for handler in parent.handlers:
                names = [handler.type] if not isinstance(handler.type, ast.Tuple) else handler.type.elts
                if any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names):
                    return True
        node = parent
    return False


def newer_stdlib_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for each use of a standard-library module or name that Python 3.10 lacks, without a fallback."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name) for a in node.names if a.name in NEWER_MODULES and not _guarded(node, parents)
            ]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module in NEWER_MODULES and not _guarded(node, parents):
                found.append((node.lineno, node.module))
            found += [
                (node.lineno, f"{node.module}.{a.name}") for a in node.names if (node.module, a.name) in NEWER_NAMES
            ]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (node.value.id, node.attr) in NEWER_NAMES
        ):
            found.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return found


def test_no_standard_library_newer_than_310_is_used():
    found = [
        f"{p.relative_to(ROOT)}:{line}: {what}"
        for p in python_sources()
        for line, what in newer_stdlib_uses(p.read_text(encoding="utf-8"))
    ]
    found += [
        f"{where}, line {line}: {what}" for where, source in notebook_code() for line, what in newer_stdlib_uses(source)
    ]
    assert not found, "needs Python > 3.10 (the floor):\n" + "\n".join(found)


def test_the_stdlib_check_finds_what_it_looks_for():
    source = "import tomllib\nfrom typing import Self\nimport datetime\nx = datetime.UTC\n"
    source += "try:\n    import tomllib\nexcept ModuleNotFoundError:\n    import tomli as tomllib\n"
    assert newer_stdlib_uses(source) == [(1, "tomllib"), (2, "typing.Self"), (4, "datetime.UTC")]


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


def test_the_package_byte_compiles_with_a_real_python_310():
    interpreter = python_310()
    if interpreter is None:
        pytest.skip(
            "no Python 3.10 here (python3.10 on PATH, pyenv's 3.10.x, `py -3.10`): the ast checks above stand in"
        )
    files = "\n".join(str(p) for p in python_sources())
    result = subprocess.run(  # compiled in memory: no .pyc is written into the checkout
        [interpreter, "-c", COMPILE_ALL], input=files, capture_output=True, text=True, timeout=300
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


# ---------------------------------------------------------------- profiles and devices


def test_profiles(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "quick")
    assert profiles.course_profile() == "quick" and profiles.pick(quick=1, full=2) == 1
    monkeypatch.setenv("COURSE_PROFILE", "full")
    assert profiles.pick(quick=1, full=2) == 2
    monkeypatch.setenv("COURSE_PROFILE", " Quick ")
    assert profiles.course_profile() == "quick"
    assert profiles.pick(quick=1, full=2, profile="full") == 2  # an explicit profile wins over the environment
    monkeypatch.delenv("COURSE_PROFILE")
    assert profiles.course_profile() == "full"
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    with pytest.raises(ValueError, match="use one of quick, full"):
        profiles.course_profile()


def test_device_choice_and_seeding(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert device.pick_device().type == expected
    assert device.pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            device.pick_device("cuda")
    device.seed_everything(3)
    a = torch.rand(3)
    device.seed_everything(3)
    assert torch.equal(a, torch.rand(3))
    device.seed_everything(4)
    assert not torch.equal(a, torch.rand(3))  # the seed matters
    assert device.loader_kwargs("cpu") == {"num_workers": 0, "pin_memory": False}
