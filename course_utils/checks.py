"""Checks that exercise test cells call: each failure says what is wrong and where to look.

A failed check raises ``CheckFailed`` (an AssertionError) whose message has two parts: what was found,
and "Where to look:" -- the function or cell of the exercise to fix. The grader copies that message
into its report.

The checks do not take a submission's word for anything: they read parameters, buffers, shapes and
optimizer groups through ``course_utils.genuine``, which refuses objects that could lie (a subclass of your
own, a replaced method, a foreign hook, something posing as a number).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torchvision import models

from .backbones import optimizer_problems
from .genuine import (
    GENUINE_WHERE,
    CheckFailed,
    detached_copy,
    equal,
    genuine_class,
    is_real_bool,
    is_real_tensor,
    max_abs_difference,
    module_dict,
    numel,
    real_modules,
    real_named_buffers,
    real_named_parameters,
    real_number,
    real_param_groups,
    requires_grad,
    shape_of,
)

__all__ = [  # what exercise notebooks use: CheckFailed and real_number live in course_utils.genuine
    "CheckFailed",
    "changed",
    "check",
    "expect_accuracy",
    "expect_changed",
    "expect_close",
    "expect_genuine_model",
    "expect_optimizer_matches",
    "expect_shape",
    "expect_trainable_exactly",
    "expect_type",
    "expect_unchanged",
    "head_parameter_names",
    "optimizer_groups",
    "real_number",
    "snapshot",
    "trainable_names",
]


def check(condition, problem: str, where: str) -> None:
    """Raise CheckFailed(problem + where to look) unless ``condition`` is True (a real True: a bool)."""
    if not is_real_bool(condition):
        raise CheckFailed(
            f"{problem}\n(the check got a {type(condition).__name__}, not True or False: an object that redefines "
            f"comparisons?)\nWhere to look: {where}"
        )
    if not bool(condition):
        raise CheckFailed(f"{problem}\nWhere to look: {where}")


def _listed(names: Iterable[str], limit: int = 3) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# ---------------------------------------------------------------------------------------- checks
def expect_genuine_model(model, where: str, what: str = "the model") -> None:
    """``model`` is built from torch/torchvision classes, with no replaced methods and no foreign hooks."""
    for _ in real_modules(model, what, where):
        pass


def expect_type(value, kind: type | tuple[type, ...], what: str, where: str) -> None:
    """``value`` is an instance of ``kind``: exactly, or a torch/torchvision subclass (not one of your own)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    name = " or ".join(k.__name__ for k in kinds)
    check(isinstance(value, kinds), f"{what} should be a {name}, but it is a {type(value).__name__}.", where)
    if type(value) not in kinds and not genuine_class(type(value)):
        check(
            False,
            f"{what} is a {type(value).__name__}, a class of your own made from {name}; return a plain {name} "
            "(a subclass can report values that are not real).",
            where,
        )
    if isinstance(value, nn.Module):
        expect_genuine_model(value, where, what)


def _expect_tensor(tensor, what: str, where: str) -> None:
    check(
        is_real_tensor(tensor),
        f"{what} should be a torch Tensor, but it is a {type(tensor).__name__}.",
        where,
    )


def expect_shape(tensor: torch.Tensor, shape: tuple[int, ...], what: str, where: str) -> None:
    """``tensor`` has exactly ``shape``."""
    _expect_tensor(tensor, what, where)
    actual = shape_of(tensor)
    check(actual == tuple(shape), f"{what} has shape {actual}, expected {tuple(shape)}.", where)


def head_parameter_names(model: nn.Module) -> set[str]:
    """Names (as in model.named_parameters) of the final Linear layer's parameters."""
    named = real_named_parameters(model)
    children = module_dict(model, "_modules")
    if isinstance(model, models.MobileNetV2):
        classifier = children.get("classifier")
        head = list(module_dict(classifier, "_modules").values())[-1] if classifier else None
    elif isinstance(model, models.ResNet):
        head = children.get("fc")
    else:
        kind = type(model).__name__
        raise CheckFailed(f"the model is a {kind}, not mobilenet_v2 or resnet18.\nWhere to look: {GENUINE_WHERE}")
    head_ids = {id(p) for p in module_dict(head, "_parameters").values() if p is not None}
    return {name for name, p in named if id(p) in head_ids}


def trainable_names(model: nn.Module) -> set[str]:
    """Names of the parameters with requires_grad=True."""
    return {name for name, p in real_named_parameters(model) if requires_grad(p)}


def expect_trainable_exactly(model: nn.Module, expected: set[str], where: str) -> None:
    """The trainable parameters are exactly ``expected`` (by name); lists the first few that differ."""
    params = dict(real_named_parameters(model, where=where))
    actual = {name for name, p in params.items() if requires_grad(p)}
    extra, missing = actual - set(expected), set(expected) - actual
    if extra:
        count = sum(numel(params[n]) for n in extra)
        check(False, f"{count:,} parameters should be frozen but have requires_grad=True: {_listed(extra)}.", where)
    if missing:
        count = sum(numel(params[n]) for n in missing if n in params)
        check(
            False, f"{count:,} parameters should be trainable but have requires_grad=False: {_listed(missing)}.", where
        )


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of every parameter and buffer (BatchNorm running statistics included)."""
    state = {f"param:{n}": detached_copy(p) for n, p in real_named_parameters(model)}
    state.update({f"buffer:{n}": detached_copy(b) for n, b in real_named_buffers(model)})
    return state


def changed(before: dict[str, torch.Tensor], model: nn.Module) -> set[str]:
    """Keys of ``snapshot`` whose values differ now ('param:...' or 'buffer:...')."""
    now = snapshot(model)
    return {key for key, value in before.items() if key in now and not equal(value, now[key])}


def expect_unchanged(before: dict[str, torch.Tensor], model: nn.Module, keep: set[str], what: str, where: str) -> None:
    """No parameter or buffer outside ``keep`` (snapshot keys) changed since ``before``."""
    moved = changed(before, model) - keep
    weights = {k.split(":", 1)[1] for k in moved if k.startswith("param:")}
    stats = {k.split(":", 1)[1] for k in moved if k.startswith("buffer:") and not k.endswith("num_batches_tracked")}
    check(not weights, f"{what}: {len(weights)} frozen weight tensors changed, e.g. {_listed(weights)}.", where)
    check(
        not stats,
        f"{what}: BatchNorm running statistics changed in {len(stats)} buffers, e.g. {_listed(stats)}. "
        "Frozen BatchNorm layers must be in eval mode while you train (model.train() puts them back in train mode).",
        where,
    )


def expect_changed(before: dict[str, torch.Tensor], model: nn.Module, names: set[str], what: str, where: str) -> None:
    """Every parameter in ``names`` changed since ``before`` (training really updated it)."""
    moved = changed(before, model)
    still = {n for n in names if f"param:{n}" not in moved}
    check(
        not still,
        f"{what}: {len(still)} parameter tensors did not change during training, e.g. {_listed(still)}.",
        where,
    )


def optimizer_groups(optimizer, where: str) -> list[dict]:
    """The optimizer's parameter groups, read from the optimizer itself; refuses an optimizer not from torch.optim."""
    check(
        isinstance(optimizer, torch.optim.Optimizer),
        f"the optimizer should be a torch.optim optimizer, but it is a {type(optimizer).__name__}.",
        where,
    )
    check(
        genuine_class(type(optimizer)),
        f"the optimizer is a {type(optimizer).__name__}, a class of your own; use one of torch.optim's.",
        where,
    )
    groups = real_param_groups(optimizer)
    check(groups is not None, "the optimizer's param_groups were replaced.", where)
    return groups


def expect_optimizer_matches(optimizer, model: nn.Module, where: str) -> None:
    """The optimizer holds exactly the model's trainable parameters."""
    groups = optimizer_groups(optimizer, where)
    in_optimizer = [p for group in groups for p in group["params"]]
    problems = optimizer_problems(in_optimizer, real_named_parameters(model, where=where), requires_grad)
    check(
        not problems,
        f"the optimizer should hold exactly the trainable parameters; {len(problems)} problems, e.g. "
        + "; ".join(problems[:3]),
        where,
    )


def expect_accuracy(accuracy, floor: float, what: str, where: str) -> None:
    """``accuracy`` is a real number in [0, 1] above ``floor`` (an object that only pretends to be one fails)."""
    value = real_number(accuracy)
    check(
        value is not None and 0.0 <= value <= 1.0,
        f"{what} should be a fraction between 0 and 1, got {type(accuracy).__name__} {accuracy!r}.",
        where,
    )
    check(value > floor, f"{what} is {value:.3f}, below the floor of {floor:.2f}.", where)


def expect_close(actual: torch.Tensor, expected: torch.Tensor, what: str, where: str, atol: float = 1e-4) -> None:
    """Same shape and values within ``atol``."""
    _expect_tensor(expected, "the expected values", where)
    expect_shape(actual, shape_of(expected), what, where)
    diff = max_abs_difference(actual, expected)
    check(diff <= atol, f"{what} differs from the expected values by up to {diff:.3g} (allowed {atol:g}).", where)
