"""The judge of exercise 1 on exports of real notebook runs of wrong solutions (the solution and the student copy:
tests/test_grade_judged.py, in the sandbox).

The notebooks run with ``judge.local.export_locally`` (trusted notebooks only, no sandbox); the points are the
judge's, decided from the exported data with its own models, weights and held-out images.
"""

from __future__ import annotations

import io
import sys

import nbformat
import pytest
import torch

from course_utils import judge
from course_utils.judge import ex1
from course_utils.judge.local import export_locally
from course_utils.paths import project_root
from course_utils.tools import judged
from course_utils.tools.exercises import graded_cells, source_path

pytestmark = pytest.mark.slow

EXERCISE = "ex1_freeze_and_head"
SOURCE = source_path(EXERCISE)
IDS = [t.grade_id for t in graded_cells(nbformat.read(SOURCE, as_version=4))]

NOT_FROZEN = """
def setup_transfer_learning(num_classes, backbone="mobilenet_v2", pretrained=True):
    model = load_backbone(backbone, pretrained=pretrained)  # nothing frozen
    if backbone == "mobilenet_v2":
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    else:
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model
"""
ALL_PARAMETERS = """
def head_optimizer(model, lr=0.01):
    return torch.optim.Adam(model.parameters(), lr=lr)  # frozen parameters too
"""
BATCHNORM_TRAINS = """
def train_head(model, loader, optimizer, epochs):
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()  # BatchNorm left in train mode: its running statistics move
        for images, labels in loader:
            optimizer.zero_grad()
            loss_fn(model(images), labels).backward()
            optimizer.step()
    return model
"""
HEAD_NOT_REPLACED = """
def setup_transfer_learning(num_classes, backbone="mobilenet_v2", pretrained=True):
    model = load_backbone(backbone, pretrained=pretrained)
    for param in model.parameters():
        param.requires_grad = False
    return model  # still the ImageNet head
"""
ONE_BATCH = """
def train_head(model, loader, optimizer, epochs):
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
    images, labels = next(iter(loader))  # one batch, whatever the budget
    optimizer.zero_grad()
    loss_fn(model(images), labels).backward()
    optimizer.step()
    return model
"""


def _cell(nb, marker: str):
    matches = [cell for cell in nb.cells if cell.cell_type == "code" and marker in cell.source]
    assert len(matches) == 1, marker
    return matches[0]


@pytest.fixture
def course_root(monkeypatch):
    """Notebooks written to a temporary folder read the course's data through COURSE_ROOT (the kernel inherits it)."""
    monkeypatch.setenv("COURSE_ROOT", str(project_root()))


def notebook(tmp_path, name: str, replace: dict[str, str]) -> object:
    """The source's solution with the given functions replaced, written to ``tmp_path``."""
    source = nbformat.read(SOURCE, as_version=4)
    for function, text in replace.items():
        _cell(source, f"def {function}(").source = text.strip()
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(source, path)
    return path


def verdicts(path) -> dict[str, judge.Verdict]:
    exports = export_locally(path, EXERCISE)
    return {grade_id: judge.score(EXERCISE, grade_id, data) for grade_id, data in exports.items()}


# ------------------------------------------------------------------------------------- no notebook needed
def test_the_judge_has_one_task_per_graded_cell_in_the_notebooks_order():
    assert list(judge.tasks(EXERCISE)) == IDS
    assert judged.judged(EXERCISE)


def test_an_exercise_is_judged_only_when_its_module_exists(monkeypatch, tmp_path):
    assert not judged.judged("tiny")  # not listed: the in-kernel verdicts
    monkeypatch.setitem(judge.MODULES, "ex9_not_written_yet", "ex9_not_written_yet")
    assert not judged.judged("ex9_not_written_yet")
    (tmp_path / "ex9_broken.py").write_text("raise RuntimeError('a broken judge module')\n", encoding="utf-8")
    monkeypatch.setattr(judge, "__path__", [*judge.__path__, str(tmp_path)])
    monkeypatch.setitem(judge.MODULES, "ex9_broken", "ex9_broken")
    monkeypatch.delitem(sys.modules, "course_utils.judge.ex9_broken", raising=False)
    with pytest.raises(RuntimeError, match="a broken judge module"):  # never silently the in-kernel cells
        judged.judged("ex9_broken")


class Smuggled:
    """Anything but plain data: weights_only refuses to build it."""

    def __reduce__(self):
        return (print, ("code ran in the grader",))


def _bytes(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("grade_id", IDS)
def test_forged_or_missing_exports_fail_without_running_code_or_crashing(grade_id, capsys):
    for data in [None, b"not a pickle", _bytes({"state": Smuggled()}), _bytes([1, 2]), _bytes({"wrong": 1})]:
        verdict = judge.score(EXERCISE, grade_id, data)
        assert verdict.passed is False and verdict.message
    assert "code ran in the grader" not in capsys.readouterr().out


def test_a_head_of_the_wrong_shape_is_named_in_the_judges_words():
    shapes = {k: list(v) for k, v in ex1.expected_shapes("resnet18", 7).items()}
    assert ex1.structure_problem(shapes, "resnet18", 7) == ""
    shapes["fc.weight"] = [3, 512]
    assert "fc.weight has shape [3, 512], expected [7, 512]" in ex1.structure_problem(shapes, "resnet18", 7)


# ---------------------------------------------------------------------------------- real notebook runs
# The solution's full marks and the student copy's none: tests/test_grade_judged.py, end to end in the sandbox.
@pytest.mark.slow
def test_a_trainable_body_an_optimizer_over_everything_and_moving_batchnorm_fail_their_tasks(tmp_path, course_root):
    path = notebook(
        tmp_path,
        "careless",
        {"setup_transfer_learning": NOT_FROZEN, "head_optimizer": ALL_PARAMETERS, "train_head": BATCHNORM_TRAINS},
    )
    results = verdicts(path)
    assert results["ex1_head_shape"].passed and results["ex1_body_pretrained"].passed
    assert "trainable but should be frozen" in results["ex1_only_head_trainable"].message
    assert not results["ex1_optimizer"].passed  # the judge's own model (layer4 and fc trainable) catches it
    assert "on a resnet18 with only layer4 and fc trainable" in results["ex1_optimizer"].message
    assert "in the optimizer but frozen: bn1.bias" in results["ex1_optimizer"].message
    frozen = results["ex1_frozen_stays_frozen"]
    assert not frozen.passed and "running_mean" in frozen.message, frozen.message


@pytest.mark.slow
def test_a_head_left_in_place_and_a_loop_that_stops_early_fail_their_tasks(tmp_path, course_root):
    path = notebook(tmp_path, "lazy", {"setup_transfer_learning": HEAD_NOT_REPLACED, "train_head": ONE_BATCH})
    results = verdicts(path)
    for grade_id in ("ex1_head_shape", "ex1_only_head_trainable", "ex1_body_pretrained", "ex1_optimizer"):
        assert not results[grade_id].passed, grade_id
    assert "classifier.1.weight has shape [1000, 1280], expected [3, 1280]" in results["ex1_head_shape"].message
    assert results["ex1_frozen_stays_frozen"].passed  # one batch still moves the head and nothing else
    assert not results["ex1_accuracy"].passed
    accuracy = verdicts(notebook(tmp_path, "one_batch", {"train_head": ONE_BATCH}))["ex1_accuracy"]
    assert not accuracy.passed and "held-out" in accuracy.message, accuracy.message
