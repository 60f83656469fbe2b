"""Checks that exercise test cells call: each failure says what is wrong and where to look.

A failed check raises ``CheckFailed`` (an AssertionError) whose message has two parts: what was found,
and "Where to look:" -- the function or cell of the exercise to fix. The grader copies that message
into its report.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .backbones import head_of, optimizer_parameter_problems


class CheckFailed(AssertionError):
    """An exercise check did not hold; the message says what is wrong and where to look."""


def check(condition: bool, problem: str, where: str) -> None:
    """Raise CheckFailed(problem + where to look) unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(f"{problem}\nWhere to look: {where}")


def _listed(names: Iterable[str], limit: int = 3) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def expect_type(value, kind: type | tuple[type, ...], what: str, where: str) -> None:
    """``value`` is an instance of ``kind``."""
    name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
    check(isinstance(value, kind), f"{what} should be a {name}, but it is a {type(value).__name__}.", where)


def expect_shape(tensor: torch.Tensor, shape: tuple[int, ...], what: str, where: str) -> None:
    """``tensor`` has exactly ``shape``."""
    expect_type(tensor, torch.Tensor, what, where)
    check(
        tuple(tensor.shape) == tuple(shape), f"{what} has shape {tuple(tensor.shape)}, expected {tuple(shape)}.", where
    )


def head_parameter_names(model: nn.Module) -> set[str]:
    """Names (as in model.named_parameters) of the final Linear layer's parameters."""
    head_ids = {id(p) for p in head_of(model).parameters()}
    return {name for name, p in model.named_parameters() if id(p) in head_ids}


def trainable_names(model: nn.Module) -> set[str]:
    """Names of the parameters with requires_grad=True."""
    return {name for name, p in model.named_parameters() if p.requires_grad}


def expect_trainable_exactly(model: nn.Module, expected: set[str], where: str) -> None:
    """The trainable parameters are exactly ``expected`` (by name); lists the first few that differ."""
    actual = trainable_names(model)
    extra, missing = actual - expected, expected - actual
    params = dict(model.named_parameters())
    if extra:
        count = sum(params[n].numel() for n in extra)
        check(False, f"{count:,} parameters should be frozen but have requires_grad=True: {_listed(extra)}.", where)
    if missing:
        count = sum(params[n].numel() for n in missing)
        check(
            False, f"{count:,} parameters should be trainable but have requires_grad=False: {_listed(missing)}.", where
        )


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of every parameter and buffer (BatchNorm running statistics included)."""
    state = {f"param:{n}": p.detach().cpu().clone() for n, p in model.named_parameters()}
    state.update({f"buffer:{n}": b.detach().cpu().clone() for n, b in model.named_buffers()})
    return state


def changed(before: dict[str, torch.Tensor], model: nn.Module) -> set[str]:
    """Keys of ``snapshot`` whose values differ now ('param:...' or 'buffer:...')."""
    now = snapshot(model)
    return {key for key, value in before.items() if key in now and not torch.equal(value, now[key])}


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
    still = {n for n in names if f"param:{n}" not in changed(before, model)}
    check(
        not still,
        f"{what}: {len(still)} parameter tensors did not change during training, e.g. {_listed(still)}.",
        where,
    )


def expect_optimizer_matches(optimizer, model: nn.Module, where: str) -> None:
    """The optimizer holds exactly the model's trainable parameters."""
    expect_type(optimizer, torch.optim.Optimizer, "the optimizer", where)
    problems = optimizer_parameter_problems(optimizer, model)
    check(
        not problems,
        f"the optimizer should hold exactly the trainable parameters; {len(problems)} problems, e.g. "
        + "; ".join(problems[:3]),
        where,
    )


def expect_accuracy(accuracy: float, floor: float, what: str, where: str) -> None:
    """``accuracy`` is a number in [0, 1] above ``floor``."""
    check(
        isinstance(accuracy, (int, float)) and 0.0 <= accuracy <= 1.0,
        f"{what} should be a fraction between 0 and 1, got {accuracy!r}.",
        where,
    )
    check(accuracy > floor, f"{what} is {accuracy:.3f}, below the floor of {floor:.2f}.", where)


def expect_close(actual: torch.Tensor, expected: torch.Tensor, what: str, where: str, atol: float = 1e-4) -> None:
    """Same shape and values within ``atol``."""
    expect_shape(actual, tuple(expected.shape), what, where)
    diff = (actual.float() - expected.float()).abs().max().item() if actual.numel() else 0.0
    check(diff <= atol, f"{what} differs from the expected values by up to {diff:.3g} (allowed {atol:g}).", where)
