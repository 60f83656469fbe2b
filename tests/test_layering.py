"""The package's layering, checked on the source (no imports run): what lessons import stays small and light.

- lesson helpers (course_utils/*.py) import nothing from course_utils.tools or course_utils.experiments;
- course_utils.measurements and course_utils.advisor import no torch (lesson 07's plots and the advisor load in a
  blink, and `course results` reads the committed files without it), directly or through another course module;
- notebooks import nothing from course_utils.tools or course_utils.experiments.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "course_utils"
HELPERS = sorted(p for p in PACKAGE.glob("*.py"))
WINGS = ("course_utils.tools", "course_utils.experiments")


def imported_modules(source: str, module: str) -> set[str]:
    """Absolute names of every module ``source`` imports (relative imports resolved against ``module``)."""
    names = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            names.add(target)
            names |= {f"{target}.{alias.name}" for alias in node.names}
    return names


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_the_parser_resolves_relative_imports():
    found = imported_modules("from ..measurements import stat\nfrom . import sweep\nimport torch", "course_utils.x.y")
    assert {"course_utils.measurements", "course_utils.x.sweep", "torch"} <= found


@pytest.mark.parametrize("path", HELPERS, ids=[p.name for p in HELPERS])
def test_lesson_helpers_import_nothing_from_the_tools_or_experiments(path):
    imports = imported_modules(path.read_text(encoding="utf-8"), module_name(path))
    assert not [name for name in imports if name.startswith(WINGS)], f"{path.name} imports an instructor/author wing"


def _closure(module: str) -> set[str]:
    """Every course module ``module`` imports, transitively, and the outside modules they import."""
    seen, todo, outside = set(), [module], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = ROOT / (name.replace(".", "/") + ".py")
        if not path.exists():
            continue
        for imported in imported_modules(path.read_text(encoding="utf-8"), name):
            if imported.startswith("course_utils"):
                todo.append(imported)
            else:
                outside.add(imported.split(".")[0])
    return outside


@pytest.mark.parametrize("module", ["course_utils.measurements", "course_utils.advisor"])
def test_reading_the_measurements_needs_no_torch(module):
    assert not {"torch", "torchvision"} & _closure(module)


NOTEBOOKS = sorted((ROOT / "notebooks").rglob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_import_nothing_from_the_tools_or_experiments(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    imports = set()
    for cell in cells:
        if cell["cell_type"] == "code":  # IPython's %magics and !commands are not Python: left out
            lines = "".join(cell["source"]).splitlines()
            imports |= imported_modules("\n".join(x for x in lines if not x.lstrip().startswith(("%", "!"))), "nb")
    assert not [name for name in imports if name.startswith(WINGS)]
