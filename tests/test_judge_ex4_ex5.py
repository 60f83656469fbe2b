"""The judge of exercises 4 and 5 on real notebook runs: wrong solutions (small edits of the source's solution code)
lose exactly the tasks whose procedure they break. That the solution earns every task and the student copy none is
tested end to end, in the sandbox, by tests/test_grade_judged.py (those runs are not repeated here).

Each notebook runs once per module (a kernel, the course's real functions and torchvision models); the wrong ones
run without their graded cells, whose work the judge's exports do not need. Forged exports are scored directly.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import nbformat
import pytest
import torch

from course_utils import advisor, judge
from course_utils.judge import ex4_exports, ex5_exports
from course_utils.judge.local import export_locally
from course_utils.tools.exercises import graded_cells

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ROOT / "notebooks" / "exercises"
EX4, EX5 = "ex4_finetune_vs_random", "ex5_use_your_model"


def _source(exercise: str) -> nbformat.NotebookNode:
    return nbformat.read(EXERCISES / "source" / f"{exercise}.ipynb", as_version=4)


def _wrong(folder: Path, exercise: str, edits: list[tuple[str, str]]) -> Path:
    """The source notebook with ``edits`` (old, new) made in its code, and without its graded test cells."""
    nb = _source(exercise)
    graded = {cell.source for cell in (c for c in nb.cells if c.cell_type == "code") if "# Graded test" in cell.source}
    nb.cells = [cell for cell in nb.cells if cell.source not in graded]
    for old, new in edits:
        hits = [cell for cell in nb.cells if cell.cell_type == "code" and old in cell.source]
        assert len(hits) == 1, f"the edit's text is not (once) in the source's code: {old!r}"
        hits[0].source = hits[0].source.replace(old, new)
    path = folder / f"{exercise}.ipynb"
    folder.mkdir(parents=True)
    nbformat.write(nb, path)
    return path


def _verdicts(notebook: Path, exercise: str) -> dict[str, judge.Verdict]:
    old = os.environ.get("COURSE_ROOT")
    os.environ["COURSE_ROOT"] = str(ROOT)  # notebooks copied outside the checkout use it as their course folder
    try:
        exported = export_locally(notebook, exercise)
    finally:
        os.environ.pop("COURSE_ROOT") if old is None else os.environ.update(COURSE_ROOT=old)
    return {grade_id: judge.score(exercise, grade_id, data) for grade_id, data in exported.items()}


def _failed(verdicts: dict[str, judge.Verdict]) -> set[str]:
    return {grade_id for grade_id, verdict in verdicts.items() if not verdict.passed}


def _runs(folder: Path, exercise: str, wrongs: dict[str, list[tuple[str, str]]]) -> dict[str, dict[str, judge.Verdict]]:
    """The verdicts of each named wrong solution."""
    return {name: _verdicts(_wrong(folder / name, exercise, edits), exercise) for name, edits in wrongs.items()}


def _export(data: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(data, buffer)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------- fast
def test_the_judge_has_one_task_per_graded_cell_in_the_notebooks_order():
    for exercise in (EX4, EX5):
        ids = [cell.grade_id for cell in graded_cells(_source(exercise))]
        assert list(judge.tasks(exercise)) == ids


def test_the_judges_measurements_ask_for_every_answer_the_advisor_can_give():
    """An advisor that always says 'A' (or never 'not measured') must be able to fail on the judge's inputs."""
    namespace: dict = {}
    exec(ex5_exports.SOURCE, namespace)
    said = {
        advisor.choose_scenario(points, n)[0] for points in namespace["_j5_point_sets"]() for n in ex5_exports.SIZES
    }
    assert said == {"A", "B", "C", "scratch", advisor.NOT_MEASURED}


# ------------------------------------------------------------------------------------------ exercise 4
EX4_ONE_RATE = [
    ("for lr in lr_grids[name]:", 'for lr in lr_grids["pretrained"]:')
]  # the random start never gets its own
EX4_CRIPPLED = [  # the random start learns from shuffled labels: same budget, its rates chosen on validation
    (
        "def compare_initializations(",
        "class ShuffledLabels:\n"
        "    def __init__(self, loader):\n"
        "        self.loader, self.dataset, self.batch_size = loader, loader.dataset, loader.batch_size\n\n"
        "    def __len__(self):\n"
        "        return len(self.loader)\n\n"
        "    def __iter__(self):\n"
        "        return ((x, y[torch.randperm(len(y))]) for x, y in self.loader)\n\n\n"
        "def compare_initializations(",
    ),
    (
        "accuracy = train_and_evaluate(model, optimizer, train_loader, val_loader, recal_loader, epochs)",
        "loader = train_loader if pretrained else ShuffledLabels(train_loader)\n"
        "            accuracy = train_and_evaluate(model, optimizer, loader, val_loader, recal_loader, epochs)",
    ),
]
EX4_NO_BATCHNORM_IN_OPTIMIZER = [  # BatchNorm weights trainable but never given to the optimizer
    (
        "body = [p for p in model.parameters() if all(p is not h for h in head)]",
        "body = [p for n, p in model.named_parameters() if p.dim() > 1 and all(p is not h for h in head)]",
    )
]


@pytest.fixture(scope="module")
def ex4_runs(tmp_path_factory) -> dict[str, dict[str, judge.Verdict]]:
    wrongs = {"one_rate": EX4_ONE_RATE, "crippled": EX4_CRIPPLED, "optimizer": EX4_NO_BATCHNORM_IN_OPTIMIZER}
    return _runs(tmp_path_factory.mktemp("judge_ex4"), EX4, wrongs)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("wrong", "failed", "said"),
    [
        ("one_rate", {"ex4_pretrained_vs_random"}, "validation accuracy for each rate of"),
        ("crippled", {"ex4_pretrained_vs_random"}, "random start's chosen model scores"),
        ("optimizer", {"ex4_optimizer_all", "ex4_pretrained_vs_random"}, "trainable but not in the optimizer"),
    ],
)
def test_ex4_wrong_procedures_lose_exactly_their_tasks(ex4_runs, wrong, failed, said):
    verdicts = ex4_runs[wrong]
    assert _failed(verdicts) == failed, {k: v.message for k, v in verdicts.items()}
    assert said in verdicts[sorted(failed)[-1]].message


def test_ex4_forged_exports_fail_with_a_sentence():
    forged_state = {k: torch.randn(v.shape) if v.is_floating_point() else v for k, v in ex4_exports_state().items()}
    grads = {k: True for k in forged_state if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    run = {
        "state": forged_state,
        "requires_grad": grads,
        "lr": 1e-3,
        "kind": "torch.optim.adam.Adam",
        "steps": [32.0],
        "groups": [{"params": sorted(grads), "lr": 1e-3}],
        "val_acc": [[lr, 0.9] for lr in ex4_exports.GRIDS["random"]],
    }
    forged = {
        "ex4_everything_trainable": {
            "cases": [{"pretrained": True, "classes": 3, "state": "weights", "requires_grad": {}}] * 3
        },
        "ex4_optimizer_all": {
            "cases": [{"pretrained": True, "lr": "3e-4", "requires_grad": [], "groups": 5, "kind": 1}] * 2
        },
        "ex4_train_then_measure": {
            "cases": [{"freeze_batchnorm": False, "state": forged_state, "accuracy": 0.9, "passes": [8]}] * 2
        },
        "ex4_pretrained_vs_random": {
            "keys": ["pretrained", "random"],
            "runs": {"pretrained": run, "random": run},
            "train_passes": [8] * 24,
            "val_passes": [1] * 6,
        },
    }
    for grade_id, data in forged.items():
        verdict = judge.score(EX4, grade_id, _export(data))
        assert not verdict.passed and "Where to look:" in verdict.message, (grade_id, verdict)
    assert not judge.score(EX4, "ex4_optimizer_all", b"not a torch file").passed
    assert not judge.score(EX4, "ex4_optimizer_all", None).passed


def ex4_exports_state() -> dict[str, torch.Tensor]:
    from course_utils.judge.common import reference_model

    return reference_model("mobilenet_v2", 3).state_dict()


# ------------------------------------------------------------------------------------------ exercise 5
EX5_HEAD_ONLY = [
    (
        'save_classifier(path, model, classes, "mobilenet_v2", IMAGE_SIZE)',
        "torch.save(model.classifier[-1].state_dict(), path)",
    )
]
EX5_IGNORES_FILE = [  # the new process reads a file of the notebook's own, not the one it is given
    (
        "command = [sys.executable,",
        "OWN = WORK / 'own.pt'\n    save_classifier(OWN, model, CLASSES, 'mobilenet_v2', IMAGE_SIZE)\n"
        "    model_path = OWN\n    command = [sys.executable,",
    )
]
EX5_ALWAYS_A = [
    ('return ("scratch" if scratch and scratch.verdict == "ahead" else choice), nearest', 'return "A", nearest')
]


@pytest.fixture(scope="module")
def ex5_runs(tmp_path_factory) -> dict[str, dict[str, judge.Verdict]]:
    wrongs = {"head_only": EX5_HEAD_ONLY, "ignores_file": EX5_IGNORES_FILE, "always_a": EX5_ALWAYS_A}
    return _runs(tmp_path_factory.mktemp("judge_ex5"), EX5, wrongs)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("wrong", "failed", "said"),
    [
        ("head_only", {"ex5_save_load", "ex5_held_out_accuracy"}, "holds only weights"),
        ("ignores_file", {"ex5_fresh_process", "ex5_held_out_accuracy"}, "predictions differ"),
        ("always_a", {"ex5_choose_scenario"}, "the course's verdict says"),
    ],
)
def test_ex5_wrong_solutions_lose_exactly_their_tasks(ex5_runs, wrong, failed, said):
    verdicts = ex5_runs[wrong]
    assert _failed(verdicts) == failed, {k: v.message for k, v in verdicts.items()}
    assert all(said in verdicts[grade_id].message for grade_id in failed)


def test_ex5_forged_exports_fail_with_a_sentence():
    model_file = io.BytesIO()
    torch.save(
        {
            "format": "course-classifier",
            "backbone": "mobilenet_v2",
            "classes": ["trouser", "sneaker", "bag"],
            "preprocess": {"size": 32, "resize": 32, "mean": [0.5] * 3, "std": [0.2] * 3},
            "state_dict": {k: torch.randn(v.shape) for k, v in ex4_exports_state().items()},
        },
        model_file,
    )
    answer = {"type": "dict", "items": [["0000.png", "coat"], ["IMG_cut.jpg", None]]}
    forged = {
        "ex5_save_load": {"files": {"imagenet": model_file.getvalue(), "random": b"PK\x03\x04 cut"}},
        "ex5_fresh_process": {"answer": answer, "subset": answer, "started_python": True, "opened_here": False},
        "ex5_held_out_accuracy": {"file": model_file.getvalue(), "answer": answer},
        "ex5_choose_scenario": {"answers": [[["A", 10]] * len(ex5_exports.SIZES)] * 9},
    }
    for grade_id, data in forged.items():
        verdict = judge.score(EX5, grade_id, _export(data))
        assert not verdict.passed and "Where to look:" in verdict.message, (grade_id, verdict)
    odd = judge.score(EX5, "ex5_choose_scenario", _export({"answers": "A"}))
    assert not odd.passed and "every answer" in odd.message
