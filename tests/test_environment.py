"""pyproject.toml and environment.yml declare the same dependencies; profiles and device choice behave."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib
import torch

from course_utils import device, profiles

ROOT = Path(__file__).resolve().parents[1]
DESIGN_CARD = {"jupyterlab", "torch", "torchvision", "matplotlib", "nbval", "ipywidgets"}
LESSON_NEEDS = {"tqdm", "scikit-image", "scikit-learn"}


def pyproject_requirements() -> dict[str, str]:
    """Every requirement a full install (`pip install -e .[test]`) brings, the project's own extras expanded."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    specs = project["dependencies"] + [
        s for extra in extras.values() for s in extra if not s.startswith(project["name"])
    ]
    return dict(re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", s).groups() for s in specs)


def conda_requirements() -> dict[str, str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = lines.index("  - pip:")
    specs = [line.strip()[2:] for line in lines[start + 1 :] if line.strip().startswith("- ")]
    return dict(re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", s).groups() for s in specs)


def test_environment_yml_and_pyproject_agree():
    assert conda_requirements() == pyproject_requirements()


def test_required_packages_are_declared():
    assert set(pyproject_requirements()) >= DESIGN_CARD | LESSON_NEEDS


def test_declared_torch_range_admits_the_installed_torch():
    spec = pyproject_requirements()["torch"]
    major, minor = map(int, torch.__version__.split(".")[:2])
    low = tuple(map(int, re.search(r">=([\d.]+)", spec).group(1).split(".")[:2]))
    assert (major, minor) >= low and f"<{major + 1}" not in spec.replace(" ", "").split(",")[0]


def test_profiles(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "quick")
    assert profiles.course_profile() == "quick" and profiles.pick(quick=1, full=2) == 1
    monkeypatch.setenv("COURSE_PROFILE", "full")
    assert profiles.pick(quick=1, full=2) == 2
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
    assert device.loader_kwargs("cpu") == {"num_workers": 0, "pin_memory": False}
