"""The judge of exercises 2 and 3: plausible wrong solutions lose exactly the tasks about their mistake, and data
forged in the student's process earns nothing (the solution's full marks and the student copy's none are tested end
to end, in the sandbox, by tests/test_grade_judged.py).

The notebooks run for real (a fresh kernel each, then the judge's exports); scoring happens here, as the grader
does it, from the exported bytes alone.
"""

from __future__ import annotations

import io

import nbformat
import pytest
import torch
from helpers import with_solution

from course_utils import judge
from course_utils.judge import common, ex2, ex3
from course_utils.judge.local import export_locally
from course_utils.paths import checkout_root
from course_utils.tools.exercises import graded_cells, source_path

pytestmark = pytest.mark.slow

EX2, EX3 = "ex2_feature_cache", "ex3_unfreeze_discriminative"
IDS = {
    exercise: [cell.grade_id for cell in graded_cells(nbformat.read(source_path(exercise), as_version=4))]
    for exercise in (EX2, EX3)
}

# Wrong solutions: {function: new body of its solution region}, and the tasks they must lose (all others pass).
WRONG = {
    EX2: {
        "train_mode_cache": (  # no model.eval(): BatchNorm normalises with each batch and updates its statistics
            {
                "write_feature_cache": """
    path.parent.mkdir(parents=True, exist_ok=True)
    features, labels = [], []
    with torch.no_grad():
        for images, targets in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            features.append(body_features(model, images))
            labels.append(targets)
    torch.save({"features": torch.cat(features), "labels": torch.cat(labels)}, path)"""
            },
            {"ex2_cache_is_f_of_x"},
        ),
        "shuffled_cache": (  # pairs stay together, but row i is no longer the dataset's image i
            {
                "write_feature_cache": """
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    features, labels = [], []
    with torch.no_grad():
        for images, targets in DataLoader(dataset, batch_size=batch_size, shuffle=True):
            features.append(body_features(model, images))
            labels.append(targets)
    torch.save({"features": torch.cat(features), "labels": torch.cat(labels)}, path)"""
            },
            {"ex2_cache_round_trip", "ex2_cache_is_f_of_x"},
        ),
        "one_epoch_head": (  # ignores `epochs`: one optimizer step
            {
                "train_head_from_cache": """
    head = nn.Linear(features.shape[1], num_classes)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    optimizer.zero_grad()
    nn.functional.cross_entropy(head(features), labels).backward()
    optimizer.step()
    return head"""
            },
            {"ex2_head_accuracy", "ex2_cache_to_model"},
        ),
    },
    EX3: {
        "no_freeze_first": (  # unfreezes the later stages but leaves earlier ones as they were
            {
                "unfreeze_from_stage": """
    start = names.index(stage)
    for index, (name, module) in enumerate(stages(model).items()):
        if index >= start:
            for param in module.parameters():
                param.requires_grad = True"""
            },
            {"ex3_trainable_stages", "ex3_freeze_first", "ex3_training_moves_only_unfrozen"},
        ),
        "one_lr_for_all": (
            {
                "discriminative_optimizer": """
    groups = []
    for name, module in stages(model).items():
        params = [p for p in module.parameters() if p.requires_grad]
        if params:
            groups.append({"params": params, "lr": head_lr})
    return torch.optim.Adam(groups)"""
            },
            {"ex3_learning_rates"},
        ),
        "head_left_out": (  # an off-by-one: every stage but the last one, the head
            {
                "discriminative_optimizer": """
    groups = []
    names = stage_names(model)
    for name, module in list(stages(model).items())[:-1]:
        params = [p for p in module.parameters() if p.requires_grad]
        if params:
            steps_back = len(names) - 1 - names.index(name)
            groups.append({"params": params, "lr": head_lr * decay ** steps_back})
    return torch.optim.Adam(groups)"""
            },
            {"ex3_optimizer_holds_trainable", "ex3_learning_rates", "ex3_training_moves_only_unfrozen"},
        ),
    },
}
MESSAGES = {  # a phrase the student reads for each wrong solution's first lost task
    "train_mode_cache": ("ex2_cache_is_f_of_x", "BatchNorm running statistics"),
    "shuffled_cache": ("ex2_cache_round_trip", "did you shuffle?"),
    "one_epoch_head": ("ex2_head_accuracy", "the loss is far above the reference's"),
    "no_freeze_first": ("ex3_freeze_first", "should be frozen but are trainable"),
    "one_lr_for_all": ("ex3_learning_rates", "has lr 0.001; expected 2.7e-05"),
    "head_left_out": ("ex3_optimizer_holds_trainable", "trainable but not in the optimizer"),
}


def _wrong_notebook(exercise: str, variant: str, folder):
    """The source notebook with a wrong solution, its graded cells left out (the judge's exports replace them)."""
    nb = nbformat.read(source_path(exercise), as_version=4)
    for function, body in WRONG[exercise][variant][0].items():
        nb = with_solution(nb, function, body)
    nb.cells = [cell for cell in nb.cells if "grade" not in cell.metadata]
    path = folder / f"{exercise}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    """verdicts(exercise, variant) -> {grade id: Verdict} of a wrong solution; each notebook runs once per module."""
    done: dict = {}

    def get(exercise: str, variant: str) -> dict:
        if (exercise, variant) not in done:
            path = _wrong_notebook(exercise, variant, tmp_path_factory.mktemp(variant))
            with pytest.MonkeyPatch.context() as patch:  # a notebook outside the checkout finds the course by this
                patch.setenv("COURSE_ROOT", str(checkout_root()))
                exported = export_locally(path, exercise)
            done[exercise, variant] = {gid: judge.score(exercise, gid, data) for gid, data in exported.items()}
        return done[exercise, variant]

    return get


def test_the_judge_has_one_task_per_graded_cell_in_the_notebooks_order():
    for exercise in (EX2, EX3):
        assert list(judge.tasks(exercise)) == IDS[exercise]


# The solution's full marks and the student copy's none: tests/test_grade_judged.py, end to end in the sandbox.
@pytest.mark.slow
@pytest.mark.parametrize(("exercise", "variant"), [(ex, v) for ex in WRONG for v in WRONG[ex]])
def test_a_wrong_solution_loses_exactly_the_tasks_about_its_mistake(verdicts, exercise, variant):
    result = verdicts(exercise, variant)
    failed = {gid for gid, verdict in result.items() if not verdict.passed}
    assert failed == WRONG[exercise][variant][1], {gid: v.message for gid, v in result.items()}
    grade_id, phrase = MESSAGES[variant]
    assert phrase in result[grade_id].message, result[grade_id].message


def _bytes(data) -> bytes:
    buffer = io.BytesIO()
    torch.save(data, buffer)
    return buffer.getvalue()


def _forged_ex2() -> dict[str, list]:
    """Exports of the right shapes and types (random or copied numbers), and of the wrong ones, per task."""
    train, test = common.fashion(*ex2.CACHE_DATA)["train"][1], common.fashion(*ex2.CACHE_DATA)["test"][1]
    head = {"kind": "Linear", "state": {"weight": torch.randn(4, 1280), "bias": torch.randn(4)}}
    odd = [
        {},
        [1, 2],
        None,
        {"error": "no"},
        {"state": "weights"},
        {"state": {"weight": [1.0], "bias": None}},
        {"kind": 3},
    ]
    return {
        "ex2_cache_round_trip": [
            {
                "files": True,
                "train": [torch.randn(len(train), 1280), train],
                "test": [torch.randn(len(test), 1280), test],
            },
            {"files": 1, "train": "features", "test": None},
            {"files": True, "train": [torch.full((len(train), 1280), float("nan")), train], "test": []},
        ],
        "ex2_cache_is_f_of_x": [
            {"features": torch.randn(len(train), 1280), "state": common.pretrained_state()},
            {"features": torch.randn(len(train), 1280), "state": {"features.0.0.weight": torch.zeros(3)}},
        ],
        "ex2_head_shape": [{"wide": head, "narrow": head}, {"wide": {"kind": "Linear", "state": [1, 2]}}],
        "ex2_head_accuracy": [head, {"kind": "Linear", "state": {"0.weight": torch.randn(4, 1280)}}],
        "ex2_cache_to_model": [head, {"kind": "Linear", "state": {"weight": torch.randn(4, 1280).double(), "bias": 1}}],
        "any": odd,
    }


def _forged_ex3() -> dict[str, list]:
    names = list(common.parameter_stages("mobilenet_v2"))
    everything = {name: True for name in names}
    as_numbers = {name: 1 for name in names}
    block6 = {name: name in ex3.trainable_from("mobilenet_v2", "block6") for name in names}
    groups = [{"params": names, "lr": 1e-3}]  # frozen parameters too
    bad_groups = [{"params": ["not.a.parameter"], "lr": "0.001"}]
    untouched = {**common.pretrained_state(), **ex3._head_init()}
    renamed = {f"model.{k}": v for k, v in untouched.items()}
    return {
        "ex3_trainable_stages": [{f"{b}-{s}": everything for b, s in ex3.STAGE_CASES}, {"mobilenet_v2-block6": 1}],
        "ex3_freeze_first": [{f"{b}-{m}-{le}": as_numbers for b, m, le in ex3.REFREEZE_CASES}],
        "ex3_optimizer_holds_trainable": [{"mobilenet_v2-block6": {"groups": groups, "requires_grad": block6}}],
        "ex3_learning_rates": [
            {"mobilenet_v2-block6": {"groups": bad_groups, "requires_grad": block6}},
            {"mobilenet_v2-block6": {"groups": groups, "requires_grad": block6}},
        ],
        "ex3_training_moves_only_unfrozen": [{"state": untouched}, {"state": renamed}, {"state": [1, 2, 3]}],
        "any": [{}, [1, 2], None, {"error": "no"}, {"mobilenet_v2-block6": None}],
    }


@pytest.mark.slow
@pytest.mark.parametrize(("exercise", "forge"), [(EX2, _forged_ex2), (EX3, _forged_ex3)])
def test_forged_exports_earn_nothing_and_never_crash_the_judge(exercise, forge):
    torch.manual_seed(0)
    forged = forge()
    for grade_id in IDS[exercise]:
        for data in forged[grade_id] + forged["any"]:
            verdict = judge.tasks(exercise)[grade_id].score(data)  # the task's own score must not raise either
            assert not verdict.passed, (grade_id, data if not isinstance(data, dict) else list(data))
            assert "Where to look:" in verdict.message, verdict.message
            assert not judge.score(exercise, grade_id, _bytes(data)).passed
        for raw in (None, b"not a torch file", _bytes([1, 2, 3])):
            assert not judge.score(exercise, grade_id, raw).passed
