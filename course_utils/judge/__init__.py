"""The judge: an exercise's points decided outside the student's process, from plain data its run exported.

A submission runs in the sandbox. After its notebook, the runner executes each task's ``export`` code in the
student's kernel: the code calls the student's functions with the judge's own inputs and budgets (never a
variable the student can edit) and hands plain data (tensors, numbers, strings, and lists and dicts of
them: a state dict, a ``requires_grad`` map, optimizer groups as parameter names and learning rates,
predictions) to ``course_export(data)``. That writes the data to a file the runner reads back at once,
before any later code of the student's runs, and passes on. The grader loads it with
``torch.load(weights_only=True)`` (``load_export``) and each task's ``score`` decides with the judge's own
objects: its own architecture and weights, its own checks, held-out data of its own choosing. Nothing the
student's process does after the fact changes the data, and nothing in it can change how it is scored: a
forged export that passes is a solution. The judge's modules are hidden from the sandbox, so hidden tests
never enter it.

Each exercise module (``ex1`` ... ``ex5``) defines ``TASKS``: one ``Task`` per graded cell id of its source
notebook, in the notebook's order.
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

JUDGE_DIR = Path(__file__).resolve().parent
EXPORT_FUNCTION = "course_export"
EXPORT_LIMIT = 256 * 1024**2  # bytes: the largest export read back (a MobileNetV2 state dict is 14 MB)

# the exercise (its source notebook's stem) -> the judge module that scores it
MODULES = {
    "ex1_freeze_and_head": "ex1",
    "ex2_feature_cache": "ex2",
    "ex3_unfreeze_discriminative": "ex3",
    "ex4_finetune_vs_random": "ex4",
    "ex5_use_your_model": "ex5",
}


class ExportError(ValueError):
    """An export that is missing, too large, or not plain data."""


@dataclass(frozen=True)
class Verdict:
    """A task's result: passed or not, and the sentence the student reads."""

    passed: bool
    message: str = ""


@dataclass(frozen=True)
class Task:
    """One graded cell: the code that exports the student's data, and the function that scores it."""

    grade_id: str
    export: str  # run in the student's kernel after the notebook; ends with course_export({...})
    score: Callable[[dict], Verdict]


def export_prelude(path_variable: str = "COURSE_EXPORT_PATH") -> str:
    """Code run once in the kernel before the exports: defines ``course_export(data)`` writing to $path_variable."""
    return f"def course_export(data):\n    import os, torch\n    torch.save(data, os.environ[{path_variable!r}])\n"


def tasks(exercise: str) -> dict[str, Task]:
    """The judged tasks of ``exercise`` by grade id (KeyError names the exercises the judge knows)."""
    if exercise not in MODULES:
        raise KeyError(f"the judge has no tasks for {exercise!r}; it knows {', '.join(MODULES)}")
    module = importlib.import_module(f"{__name__}.{MODULES[exercise]}")
    return {task.grade_id: task for task in module.TASKS}


def load_export(data: bytes | None) -> dict:
    """The exported data, loaded without running code (``weights_only=True``); ExportError when unusable."""
    import torch

    if data is None:
        raise ExportError("nothing was exported: the task's code did not finish (see the cell's error)")
    if len(data) > EXPORT_LIMIT:
        raise ExportError(f"the export is {len(data) / 1024**2:.0f} MB, over the judge's limit")
    try:
        value = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - anything unreadable is the submission's problem
        raise ExportError(f"the export could not be read as plain data ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise ExportError(f"the export is a {type(value).__name__}, not a dict")
    return value


def score(exercise: str, grade_id: str, data: bytes | None) -> Verdict:
    """One task's verdict from its exported bytes; never raises for anything the submission did."""
    task = tasks(exercise)[grade_id]
    try:
        return task.score(load_export(data))
    except ExportError as exc:
        return Verdict(False, str(exc))
    except Exception as exc:  # noqa: BLE001 - forged shapes, missing keys: a failed task, never a crash
        return Verdict(False, f"the exported data is not what the task asks for ({type(exc).__name__}: {exc})")
