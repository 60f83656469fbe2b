"""Exercise 3 (unfreeze from a named stage, discriminative learning rates): the judge's tasks for its five graded
cells.

The exports build their own models with course_utils (never the notebook's ``fresh_model``), call the student's
``unfreeze_from_stage`` and ``discriminative_optimizer`` with the judge's stages, learning rates and decays (the
hidden tests' resnet18 cases and a few of the judge's own included), and export ``requires_grad`` maps by
parameter name, optimizer groups as parameter names and learning rates, and the state dict after one epoch of
the course's ``fit``. Where a task is about the optimizer alone, the export freezes with the course's own
``unfreeze_from``, so that a mistake in one function costs only its own tasks. Scoring decides with the judge's
own models' parameter names and stage boundaries, and its own verified pretrained weights.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import (
    ON_THE_CPU,
    checked_state,
    differing,
    entry,
    flags,
    guarded,
    judged_task,
    listed,
    lr_groups,
    optimizer_problems,
    parameter_stages,
    pretrained_state,
    reference_model,
    require,
    stage_order,
    state_stages,
    trainable,
    trainable_from,
)

STAGE_CASES = [("mobilenet_v2", "block6"), ("resnet18", "layer3"), ("mobilenet_v2", "stem"), ("mobilenet_v2", "head")]
STAGE_CASES += [("resnet18", "layer1"), ("mobilenet_v2", "last_conv")]
REFREEZE_CASES = [("mobilenet_v2", "block4", "block7"), ("resnet18", "layer1", "layer4")]  # more, then less
OPTIMIZER_CASES = [("mobilenet_v2", "block6", "block4"), ("resnet18", "layer3", "layer1")]  # built, then rebuilt
RATE_CASES = [
    ("mobilenet_v2", "block6", 1e-3, 0.3),
    ("resnet18", "layer2", 0.01, 0.5),
    ("mobilenet_v2", "block3", 0.02, 0.5),
]
CLASSES = 3
TRAIN_FROM, TRAIN_HEAD_LR, HEAD_SEED = "block7", 1e-3, 1234  # the training check: its budget and the head's init

WHERE_STAGES = "unfreeze_from_stage: parameters of `stage` and every later stage trainable, all earlier ones frozen"
WHERE_FREEZE_FIRST = (
    "unfreeze_from_stage: set requires_grad = False on every parameter before unfreezing the later stages"
)
WHERE_OPTIMIZER = "discriminative_optimizer: put every trainable parameter in exactly one group, and no frozen one"
WHERE_RATES = (
    "discriminative_optimizer: lr = head_lr * decay ** k, k = number of stages between this stage and the head"
)
WHERE_TRAINING = (
    "unfreeze_from_stage and discriminative_optimizer together: frozen stages fixed, unfrozen stages trained"
)

# -------------------------------------------------------------------------- code run in the student's kernel
_HELPERS = f"""
import torch as _torch
from torch import nn as _nn

{ON_THE_CPU}

def _judge_model(backbone, pretrained=False):
    from course_utils.backbones import load_backbone, replace_head
    model = load_backbone(backbone, pretrained=pretrained)
    _torch.manual_seed({HEAD_SEED})
    replace_head(model, {CLASSES})
    return model


def _judge_flags(model):
    return {{k: bool(p.requires_grad) for k, p in _nn.Module.named_parameters(model)}}


def _judge_groups(model, optimizer):
    if not isinstance(optimizer, _torch.optim.Optimizer):
        raise TypeError(f"discriminative_optimizer returned a {{type(optimizer).__name__}}, not a torch.optim one")
    names = {{id(p): k for k, p in _nn.Module.named_parameters(model)}}
    groups = _torch.optim.Optimizer.__getattribute__(optimizer, "param_groups")
    return [{{"params": [names.get(id(p), "") for p in g["params"]], "lr": float(g["lr"])}} for g in groups]
"""

EXPORT_STAGES = _HELPERS + guarded(
    f"""
return {{f"{{b}}-{{s}}": _judge_flags(unfreeze_from_stage(_judge_model(b), s)) for b, s in {STAGE_CASES!r}}}
""",
    "_judge_ex3_stages",
)
EXPORT_FREEZE_FIRST = _HELPERS + guarded(
    f"""
out = {{}}
for backbone, more, less in {REFREEZE_CASES!r}:
    model = _judge_model(backbone)
    unfreeze_from_stage(model, more)
    unfreeze_from_stage(model, less)  # less unfrozen now: the stages in between must be frozen again
    out[f"{{backbone}}-{{more}}-{{less}}"] = _judge_flags(model)
return out
""",
    "_judge_ex3_freeze_first",
)
EXPORT_OPTIMIZER = _HELPERS + guarded(
    f"""
from course_utils.backbones import unfreeze_from  # the course's own freezing: this task is about the optimizer
out = {{}}
for backbone, first, then in {OPTIMIZER_CASES!r}:
    model = _judge_model(backbone)
    for stage in (first, then):  # built, then rebuilt after unfreezing more
        unfreeze_from(model, stage)
        groups = _judge_groups(model, discriminative_optimizer(model))
        out[f"{{backbone}}-{{stage}}"] = {{"groups": groups, "requires_grad": _judge_flags(model)}}
return out
""",
    "_judge_ex3_optimizer",
)
EXPORT_RATES = _HELPERS + guarded(
    f"""
from course_utils.backbones import unfreeze_from  # the course's own freezing: this task is about the optimizer
out = {{}}
for backbone, stage, head_lr, decay in {RATE_CASES!r}:
    model = _judge_model(backbone)
    unfreeze_from(model, stage)
    groups = _judge_groups(model, discriminative_optimizer(model, head_lr=head_lr, decay=decay))
    out[f"{{backbone}}-{{stage}}"] = {{"groups": groups, "requires_grad": _judge_flags(model)}}
return out
""",
    "_judge_ex3_rates",
)
EXPORT_TRAINING = _HELPERS + guarded(
    f"""
from torch.utils.data import DataLoader
from course_utils.device import seed_everything
from course_utils.fashion import fashion_mnist_splits
from course_utils.training import fit
splits = fashion_mnist_splits(n_train=10, n_test=1, size=32, classes=[1, 7, 8], seed=0)
loader = DataLoader(splits["train"], batch_size=16, shuffle=True, generator=_torch.Generator().manual_seed(0))
seed_everything(0)
model = unfreeze_from_stage(_judge_model("mobilenet_v2", pretrained=True), {TRAIN_FROM!r})
optimizer = discriminative_optimizer(model, head_lr={TRAIN_HEAD_LR!r})
fit(model, loader, optimizer, epochs=1, frozen_bn_eval=True, progress=False)
return {{"state": {{k: v.detach().clone() for k, v in _nn.Module.state_dict(model).items()}}}}
""",
    "_judge_ex3_training",
)


# ------------------------------------------------------------------------------------- the judge's side
def _trainable_exactly(exported, backbone: str, expected: set[str], what: str) -> None:
    """The exported requires_grad map of ``backbone`` with a new head makes exactly ``expected`` trainable."""
    actual = trainable(flags(exported, parameter_stages(backbone), f"{what}: the requires_grad map"))
    extra, missing = actual - expected, expected - actual
    require(not extra, f"{what}: {len(extra)} parameter tensors should be frozen but are trainable: {listed(extra)}")
    require(
        not missing, f"{what}: {len(missing)} parameter tensors should be trainable but are frozen: {listed(missing)}"
    )


def _check_stages(data: dict) -> str:
    for backbone, stage in STAGE_CASES:
        case = entry(data, f"{backbone}-{stage}", f"{backbone} unfrozen from {stage}")
        _trainable_exactly(case, backbone, trainable_from(backbone, stage), f"{backbone} unfrozen from {stage}")
    return f"ok: {len(STAGE_CASES)} backbone and stage choices make exactly the right stages trainable"


def _check_freeze_first(data: dict) -> str:
    for backbone, more, less in REFREEZE_CASES:
        what = f"{backbone} unfrozen from {more}, then from {less}"
        case = entry(data, f"{backbone}-{more}-{less}", what)
        _trainable_exactly(case, backbone, trainable_from(backbone, less), what)
    return "ok: unfreezing from a later stage freezes the stages in between again"


def _checked_case(case, backbone: str, stage: str, what: str) -> list[tuple[list[str], float]]:
    """The exported groups, after checking that building the optimizer left the course's freezing as it was."""
    requires_grad = entry(case, "requires_grad", "requires_grad map")
    expected = trainable_from(backbone, stage)
    actual = trainable(flags(requires_grad, parameter_stages(backbone), f"{what}: the requires_grad map"))
    require(
        actual == expected,
        f"{what}: building the optimizer changed which parameters are trainable ({listed(actual ^ expected)}); "
        "it should only read requires_grad",
    )
    return lr_groups(entry(case, "groups", "optimizer groups"), f"{what}: the optimizer's groups")


def _check_optimizer(data: dict) -> str:
    for backbone, first, then in OPTIMIZER_CASES:
        for stage in (first, then):
            what = f"{backbone} unfrozen from {stage}" + (" (rebuilt after unfreezing more)" if stage == then else "")
            groups = _checked_case(entry(data, f"{backbone}-{stage}", what), backbone, stage, what)
            problems = optimizer_problems(groups, trainable_from(backbone, stage))
            require(
                not problems,
                f"{what}: the optimizer should hold exactly the trainable parameters; {len(problems)} problems, "
                "e.g. " + "; ".join(problems[:3]),
            )
    return "ok: the optimizer holds exactly the trainable parameters, before and after unfreezing more"


def _rates_problem(groups, backbone: str, stage: str, head_lr: float, decay: float) -> str:
    """What is wrong with the groups' learning rates, stage by stage ('' when nothing)."""
    order, stage_of = stage_order(backbone), parameter_stages(backbone)
    expected_names = trainable_from(backbone, stage)
    rates: dict[str, float] = {}
    for names, lr in groups:
        for name in names:
            require(name in stage_of, f"the optimizer holds a tensor that is not a parameter of {backbone}")
            rates[name] = lr
    for name in sorted(expected_names, key=lambda n: order.index(stage_of[n])):
        expected = head_lr * decay ** (len(order) - 1 - order.index(stage_of[name]))
        if name not in rates:
            return f"{name} (stage {stage_of[name]}) has no learning rate: it is in no group; expected {expected:.3g}"
        if abs(rates[name] - expected) > 1e-12 + 1e-6 * expected:
            return f"{name} (stage {stage_of[name]}) has lr {rates[name]:.3g}; expected {expected:.3g}"
    return ""


def _check_rates(data: dict) -> str:
    for backbone, stage, head_lr, decay in RATE_CASES:
        what = f"{backbone} unfrozen from {stage}, head_lr={head_lr:g}, decay={decay:g}"
        groups = _checked_case(entry(data, f"{backbone}-{stage}", what), backbone, stage, what)
        problem = _rates_problem(groups, backbone, stage, head_lr, decay)
        require(not problem, f"{what}: {problem}")
    return f"ok: every stage gets head_lr * decay ** k in {len(RATE_CASES)} settings"


def _head_init() -> dict[str, torch.Tensor]:
    """The new head's weights before training: the seed the export set right before making it."""
    with torch.random.fork_rng():
        torch.manual_seed(HEAD_SEED)
        head = nn.Linear(1280, CLASSES)
    return {f"classifier.1.{k}": v.detach() for k, v in head.state_dict().items()}


def _check_training(data: dict) -> str:
    before = {**pretrained_state(), **_head_init()}  # the new head replaces the ImageNet one
    expected = reference_model("mobilenet_v2", CLASSES).state_dict()
    state = checked_state(entry(data, "state", "state after training"), expected, "the model after one epoch")
    stage_of, order = state_stages("mobilenet_v2"), stage_order("mobilenet_v2")
    unfrozen = set(order[order.index(TRAIN_FROM) :])
    params = set(parameter_stages("mobilenet_v2"))
    frozen = {k for k, s in stage_of.items() if s not in unfrozen and not k.endswith("num_batches_tracked")}
    moved = differing(state, before, frozen)
    weights, stats = moved & params, moved - params
    require(not weights, f"after one epoch: {len(weights)} frozen weight tensors changed, e.g. {listed(weights)}")
    require(
        not stats,
        f"after one epoch: BatchNorm running statistics changed in {len(stats)} frozen buffers, e.g. {listed(stats)}",
    )
    trained = {k for k in params if stage_of[k] in unfrozen}
    still = trained - differing(state, before, trained)
    require(not still, f"the unfrozen stages: {len(still)} parameter tensors did not change, e.g. {listed(still)}")
    return f"ok: {len(trained)} unfrozen tensors moved, the frozen stages did not"


TASKS = [
    judged_task("ex3_trainable_stages", EXPORT_STAGES, WHERE_STAGES, _check_stages),
    judged_task("ex3_freeze_first", EXPORT_FREEZE_FIRST, WHERE_FREEZE_FIRST, _check_freeze_first),
    judged_task("ex3_optimizer_holds_trainable", EXPORT_OPTIMIZER, WHERE_OPTIMIZER, _check_optimizer),
    judged_task("ex3_learning_rates", EXPORT_RATES, WHERE_RATES, _check_rates),
    judged_task("ex3_training_moves_only_unfrozen", EXPORT_TRAINING, WHERE_TRAINING, _check_training),
]
