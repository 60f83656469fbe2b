"""Exercise 1 (freeze the body, train a new head): the judge's tasks for its six graded cells.

Each export calls the student's ``setup_transfer_learning``, ``head_optimizer`` and ``train_head`` with the
judge's own arguments (the hidden tests' class counts and backbones included), budgets (``EPOCHS``, seeds and
data written here, never read from the notebook) and, where a task is about one function, the judge's own
model, so that a mistake in one function costs only its own task. It exports state dicts, ``requires_grad``
maps and optimizer groups as parameter names. Scoring loads them into the judge's own torchvision models and
``nn.Linear`` heads, compares the body with the verified pretrained weights, and measures accuracy itself on
held-out Fashion-MNIST images of its choosing against a reference it trains with the same budget.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from functools import lru_cache

import torch
from torch import nn

from . import Task, Verdict
from .common import ON_THE_CPU, fail, listed, pretrained_state, reference_model

CLASSES = [1, 7, 8]  # Fashion-MNIST: Trouser, Sneaker, Bag (the source's parameters)
IMAGE_SIZE = 32
N_PER_CLASS = 30
EPOCHS = 10  # the source's EPOCHS, fixed here: a notebook that sets EPOCHS = 0 trains nothing for the judge
LR = 0.01
HELD_OUT_SEED = 7351  # the judge's held-out images (never inside the sandbox: this folder is hidden there)
HELD_OUT_PER_CLASS = 100
HEADS = {"mobilenet_v2": ("classifier.1.", 1280), "resnet18": ("fc.", 512)}
WHERE_HEAD = "setup_transfer_learning: the new head must be nn.Linear(features, num_classes) in place of the old one"
WHERE_TRAINABLE = (
    "setup_transfer_learning: freeze every parameter (requires_grad = False) *before* you add the new head; "
    "the new head's weight and bias must stay trainable"
)
WHERE_BODY = (
    "setup_transfer_learning: keep the weights load_backbone gave you; do not re-initialise, reload or train the "
    "body, and leave every layer but the last one in place"
)
WHERE_OPTIMIZER = "head_optimizer: give Adam exactly the parameters that have requires_grad=True, and the lr argument"
WHERE_FROZEN = (
    "train_head: after model.train(), put the BatchNorm layers of the frozen body in eval mode; "
    "call optimizer.zero_grad(), loss.backward() and optimizer.step() for every batch"
)
WHERE_ACCURACY = (
    "train_head (and the head in setup_transfer_learning): with the same data, seed and budget, your training "
    "should do as well as a correct loop"
)

# -------------------------------------------------------------------------- code run in the student's kernel
_HELPERS = (
    f"_J_N, _J_SIZE, _J_CLASSES, _J_LR, _J_EPOCHS = {N_PER_CLASS!r}, {IMAGE_SIZE!r}, {CLASSES!r}, {LR!r}, {EPOCHS!r}\n"
)
_HELPERS += """
import torch as _torch
from torch import nn as _nn
"""
_HELPERS += (
    ON_THE_CPU
    + """



def _judge_state(model):
    return {k: v.detach().cpu().clone() for k, v in _nn.Module.state_dict(model).items()}


def _judge_shapes(model):
    return {k: list(v.shape) for k, v in _nn.Module.state_dict(model).items()}


def _judge_trainable(model):
    return {k: bool(p.requires_grad) for k, p in _nn.Module.named_parameters(model)}


def _judge_loader():
    from torch.utils.data import DataLoader
    from course_utils.fashion import fashion_mnist_splits
    splits = fashion_mnist_splits(n_train=_J_N, n_test=1, size=_J_SIZE, classes=_J_CLASSES, seed=0)
    return DataLoader(splits["train"], batch_size=32, shuffle=True, generator=_torch.Generator().manual_seed(0))
"""
)

SHAPE_CASES = [("mobilenet_v2", True, 3), ("resnet18", False, 3), ("mobilenet_v2", False, 7), ("resnet18", False, 7)]
TRAINABLE_CASES = [
    ("mobilenet_v2", True, 3),
    ("resnet18", False, 3),
    ("mobilenet_v2", False, 10),
    ("resnet18", False, 10),
]

EXPORT_HEAD_SHAPE = (
    _HELPERS
    + f"""
course_export({{f"{{b}}-{{n}}": _judge_shapes(setup_transfer_learning(n, b, pretrained=p))
               for b, p, n in {SHAPE_CASES!r}}})
"""
)
EXPORT_ONLY_HEAD = (
    _HELPERS
    + f"""
def _judge_only_head(n, b, p):
    model = setup_transfer_learning(n, b, pretrained=p)
    return {{"trainable": _judge_trainable(model), "shapes": _judge_shapes(model)}}


course_export({{f"{{b}}-{{n}}": _judge_only_head(n, b, p) for b, p, n in {TRAINABLE_CASES!r}}})
"""
)
EXPORT_BODY = (
    _HELPERS
    + """
course_export({"state": _judge_state(setup_transfer_learning(3))})
"""
)
EXPORT_OPTIMIZER = (
    _HELPERS
    + """
def _judge_groups(model, optimizer):
    names = {id(p): k for k, p in _nn.Module.named_parameters(model)}
    return [{"params": [names.get(id(p), "") for p in g["params"]], "lr": float(g["lr"])}
            for g in _torch.optim.Optimizer.__getattribute__(optimizer, "param_groups")]


def _judge_optimizers():
    import torchvision
    out = {}
    for key, build, lr in [("mobilenet_v2-3", lambda: setup_transfer_learning(3), 0.01),
                           ("resnet18-5", lambda: setup_transfer_learning(5, "resnet18", pretrained=False), 0.003)]:
        model = build()
        out[key] = {"trainable": _judge_trainable(model), "groups": _judge_groups(model, head_optimizer(model, lr=lr))}
    own = torchvision.models.resnet18(weights=None)  # the judge's own freezing: layer4 and fc trainable
    for name, param in own.named_parameters():
        param.requires_grad = name.startswith(("layer4.", "fc."))
    groups = _judge_groups(own, head_optimizer(own, lr=0.02))
    out["own-resnet18"] = {"trainable": _judge_trainable(own), "groups": groups}
    return out


course_export(_judge_optimizers())
"""
)
EXPORT_FROZEN = (
    _HELPERS
    + """
def _judge_frozen():
    from course_utils.backbones import load_backbone
    from course_utils.device import seed_everything
    seed_everything(0)
    model = load_backbone("mobilenet_v2")  # the judge's own set-up: this task is about train_head alone
    for param in model.parameters():
        param.requires_grad = False
    model.classifier[-1] = _nn.Linear(1280, 3)
    head = {k: v.detach().clone() for k, v in model.classifier[-1].state_dict().items()}
    optimizer = _torch.optim.Adam(model.classifier[-1].parameters(), lr=_J_LR)
    train_head(model, _judge_loader(), optimizer, 1)
    return {"head_before": head, "after": _judge_state(model)}


course_export(_judge_frozen())
"""
)
EXPORT_ACCURACY = (
    _HELPERS
    + """
def _judge_trained():
    from course_utils.device import seed_everything
    seed_everything(0)
    model = setup_transfer_learning(3)
    train_head(model, _judge_loader(), head_optimizer(model, lr=_J_LR), _J_EPOCHS)
    return {"state": _judge_state(model)}


course_export(_judge_trained())
"""
)


# ------------------------------------------------------------------------------------- the judge's side
@lru_cache(maxsize=16)
def expected_shapes(backbone: str, classes: int) -> dict[str, list[int]]:
    """Name -> shape of every tensor in the state dict of the judge's model (cached: building one takes a second)."""
    return {k: list(v.shape) for k, v in reference_model(backbone, classes).state_dict().items()}


@lru_cache(maxsize=16)
def expected_parameters(backbone: str, classes: int) -> dict[str, int]:
    """Name -> number of elements of every parameter of the judge's model."""
    return {k: p.numel() for k, p in reference_model(backbone, classes).named_parameters()}


def structure_problem(state: dict, backbone: str, classes: int) -> str:
    """Why ``state`` (names to tensors or shapes) does not fit the judge's model with that head, or ''."""
    expected = expected_shapes(backbone, classes)
    if not isinstance(state, dict):
        return f"{backbone}: the model's state is a {type(state).__name__}, not a dict"
    shapes = {str(k): list(v.shape) if isinstance(v, torch.Tensor) else [int(x) for x in v] for k, v in state.items()}
    missing, extra = set(expected) - set(shapes), set(shapes) - set(expected)
    if missing or extra:
        parts = ([f"missing {listed(missing)}"] if missing else []) + ([f"unexpected {listed(extra)}"] if extra else [])
        return f"{backbone} with {classes} classes is not the backbone with a new head: " + "; ".join(parts)
    wrong = [k for k in expected if shapes[k] != expected[k]]
    if wrong:
        k = wrong[0]
        return f"{backbone} with {classes} classes: {k} has shape {shapes[k]}, expected {expected[k]}"
    return ""


def same_tensor(value, reference: torch.Tensor) -> bool:
    """``value`` is a tensor of ``reference``'s dtype holding the same values."""
    return isinstance(value, torch.Tensor) and value.dtype == reference.dtype and torch.equal(value, reference)


def changed_body(state: dict, same: Callable[[object, torch.Tensor], bool]) -> tuple[str, list[str]]:
    """Why ``state`` is not mobilenet_v2 with a head of 3 classes (or ''), and else the names of its body tensors
    (all but the new head's) that ``same`` finds changed from the verified pretrained weights."""
    problem = structure_problem(state, "mobilenet_v2", 3)
    if problem:
        return problem, []
    reference = pretrained_state()
    return "", [k for k in reference if not k.startswith("classifier.1.") and not same(state[k], reference[k])]


def score_head_shape(data: dict) -> Verdict:
    """Every backbone and class count gives the backbone with an nn.Linear(features, classes) head."""
    for backbone, _pretrained, classes in SHAPE_CASES:
        problem = structure_problem(data[f"{backbone}-{classes}"], backbone, classes)
        if problem:
            return fail(problem, WHERE_HEAD)
    return Verdict(True, "ok: both backbones give one score per class")


def score_only_head(data: dict) -> Verdict:
    """Exactly the head's weight and bias are trainable, for every backbone and class count."""
    for backbone, _pretrained, classes in TRAINABLE_CASES:
        case = data[f"{backbone}-{classes}"]
        trainable, shapes = case["trainable"], case["shapes"]
        expected = expected_parameters(backbone, classes)
        if set(trainable) != set(expected):
            return fail(f"{backbone} with {classes} classes: not the backbone's parameters with a new head", WHERE_HEAD)
        prefix, features = HEADS[backbone]
        on = {k for k, flag in trainable.items() if flag is True}
        head = {k for k in expected if k.startswith(prefix)}
        if on != head:
            problems = [f"trainable but should be frozen: {listed(on - head)}"] if on - head else []
            problems += [f"frozen but should be trainable: {listed(head - on)}"] if head - on else []
            return fail(f"{backbone} with {classes} classes: " + "; ".join(problems), WHERE_TRAINABLE)
        count = sum(math.prod(int(x) for x in shapes[k]) for k in on)
        if count != features * classes + classes:
            return fail(
                f"{backbone} with {classes} classes should have {features * classes + classes:,} trainable parameters "
                f"(the head's), not {count:,}",
                WHERE_TRAINABLE,
            )
    return Verdict(True, "ok: only the head is trainable")


def score_body(data: dict) -> Verdict:
    """The body is the verified pretrained mobilenet_v2, every tensor equal; the head is new."""
    problem, different = changed_body(data["state"], same_tensor)
    if problem or different:
        return fail(
            problem or f"{len(different)} backbone tensors differ from the pretrained ones, e.g. {listed(different)}",
            WHERE_BODY,
        )
    return Verdict(True, "ok: the body is the pretrained mobilenet_v2")


def optimizer_problem(case: dict, expected: set[str]) -> str:
    """What differs between an exported optimizer's groups and the ``expected`` parameter names ('' when none)."""
    held = [name for group in case["groups"] for name in group["params"]]
    problems = [f"in the optimizer but frozen: {n or '<not a parameter of this model>'}" for n in set(held) - expected]
    problems += [f"trainable but not in the optimizer (never updated): {n}" for n in expected - set(held)]
    if len(held) != len(set(held)):
        problems.append("a parameter is in the optimizer twice")
    return "; ".join(sorted(problems)[:3]) + (f" ({len(problems)} problems)" if len(problems) > 3 else "")


def score_optimizer(data: dict) -> Verdict:
    """The optimizer holds exactly the trainable parameters at the lr given, on the student's and the judge's model."""
    own = {k for k in expected_parameters("resnet18", 1000) if k.startswith(("layer4.", "fc."))}
    cases = [
        ("mobilenet_v2-3", 0.01, None, "setup_transfer_learning(3)"),
        ("resnet18-5", 0.003, None, "setup_transfer_learning(5, 'resnet18')"),
        ("own-resnet18", 0.02, own, "a resnet18 with only layer4 and fc trainable"),
    ]
    for key, lr, expected, what in cases:
        case = data[key]
        wanted = expected if expected is not None else {k for k, flag in case["trainable"].items() if flag is True}
        problem = optimizer_problem(case, wanted)
        if problem:
            return fail(
                f"on {what}, the optimizer should hold exactly the trainable parameters: {problem}", WHERE_OPTIMIZER
            )
        rates = sorted({float(group["lr"]) for group in case["groups"]})
        if rates != [lr]:
            return fail(f"learning rates in the optimizer: {rates}, expected [{lr}] (the lr argument)", WHERE_OPTIMIZER)
    return Verdict(True, "ok: the optimizer holds exactly the trainable parameters")


def score_frozen(data: dict) -> Verdict:
    """After one epoch of train_head the body, BatchNorm statistics included, is unchanged and the head moved."""
    after = data["after"]
    problem, moved = changed_body(after, torch.equal)
    if problem or moved:
        return fail(
            problem or f"after one epoch of train_head, {len(moved)} body tensors changed, e.g. {listed(moved)}",
            WHERE_FROZEN,
        )
    still = [k for k, v in data["head_before"].items() if torch.equal(after[f"classifier.1.{k}"], v)]
    if still:
        return fail(f"the new head did not change in one epoch of train_head: {listed(still)}", WHERE_FROZEN)
    return Verdict(True, "ok: the head learned, the body and its BatchNorm statistics did not move")


def _loaders():
    """The training loader the export uses, and the judge's held-out images."""
    from torch.utils.data import DataLoader

    from ..fashion import fashion_mnist_splits

    train = fashion_mnist_splits(n_train=N_PER_CLASS, n_test=1, size=IMAGE_SIZE, classes=CLASSES, seed=0)["train"]
    held = fashion_mnist_splits(
        n_train=1, n_test=HELD_OUT_PER_CLASS, size=IMAGE_SIZE, classes=CLASSES, seed=HELD_OUT_SEED
    )["test"]
    loader = DataLoader(train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    return loader, DataLoader(held, batch_size=128)


def _evaluate(model: nn.Module, loader) -> tuple[float, float]:
    from ..training import evaluate

    with torch.no_grad():
        return evaluate(model, loader, "cpu")


_REFERENCE_LOCK = threading.Lock()  # `course grade --jobs N` scores submissions in threads: train it once


def reference_result() -> tuple[float, float]:
    """(held-out loss, accuracy) of the judge's own head trained with the same data, seed and budget (cached)."""
    with _REFERENCE_LOCK:
        return _train_reference()


@lru_cache(maxsize=1)
def _train_reference() -> tuple[float, float]:
    from ..device import seed_everything
    from ..training import fit

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train, held = _loaders()
        seed_everything(0)
        model = reference_model("mobilenet_v2", len(CLASSES), pretrained=True)
        for name, param in model.named_parameters():
            param.requires_grad = name.startswith("classifier.1.")
        optimizer = torch.optim.Adam(model.classifier[-1].parameters(), lr=LR)
        fit(model, train, optimizer, EPOCHS, frozen_bn_eval=True, progress=False)
        return _evaluate(model, held)
    finally:
        torch.set_num_threads(threads)


def score_accuracy(data: dict) -> Verdict:
    """The trained model, in the judge's own network, does about as well as the reference on held-out images."""
    state = data["state"]
    problem = structure_problem(state, "mobilenet_v2", len(CLASSES))
    if problem:
        return fail(problem, WHERE_ACCURACY)
    model = reference_model("mobilenet_v2", len(CLASSES))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    ref_loss, ref_accuracy = reference_result()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loss, accuracy = _evaluate(model, _loaders()[1])
    finally:
        torch.set_num_threads(threads)
    shown = (
        f"held-out loss {loss:.3f} and accuracy {accuracy:.3f}; the reference: {ref_loss:.3f} and {ref_accuracy:.3f}"
    )
    if not loss <= max(1.5 * ref_loss, ref_loss + 0.1):
        return fail(f"{shown}: the loss is far above the reference's, the head is barely trained", WHERE_ACCURACY)
    if not accuracy >= ref_accuracy - 0.05:
        return fail(f"{shown}: the accuracy is more than 0.05 below the reference's", WHERE_ACCURACY)
    return Verdict(True, f"ok: {shown}")


TASKS = [
    Task("ex1_head_shape", EXPORT_HEAD_SHAPE, score_head_shape),
    Task("ex1_only_head_trainable", EXPORT_ONLY_HEAD, score_only_head),
    Task("ex1_body_pretrained", EXPORT_BODY, score_body),
    Task("ex1_optimizer", EXPORT_OPTIMIZER, score_optimizer),
    Task("ex1_frozen_stays_frozen", EXPORT_FROZEN, score_frozen),
    Task("ex1_accuracy", EXPORT_ACCURACY, score_accuracy),
]
