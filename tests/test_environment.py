"""The environment: pyproject.toml and environment.yml agree, what is installed satisfies them, and profiles and
device choice behave. Python 3.10 as the floor is checked in test_python_floor.py."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

from course_utils import device, profiles

try:
    import tomllib  # novm (the fallback below is for 3.10)
except ModuleNotFoundError:  # Python 3.10: the same parser from PyPI (declared in the [test] extra)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DESIGN_CARD = {"jupyterlab", "torch", "torchvision", "matplotlib", "nbval", "ipywidgets"}
LESSON_NEEDS = {"tqdm", "scikit-image", "scikit-learn"}


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


def test_lesson_00_reports_the_facts_every_measurement_records():
    """Lesson 00's set-up check and the tools' machine records describe the machine the same way (one source)."""
    record, report = device.machine_record(), device.environment_report()
    shared = ("python", "platform", "torch", "torchvision", "device")
    assert {k: report[k] for k in shared} == {k: record[k] for k in shared}
    assert report["cpu_threads"] == torch.get_num_threads() and report["executable"] == sys.executable
    assert str(torch.get_num_threads()) in device.describe_machine(record)
