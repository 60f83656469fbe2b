"""Checks that exercise test cells call: each failure says what is wrong and where to look.

A failed check raises ``CheckFailed`` (an AssertionError) whose message has two parts: what was found,
and "Where to look:" -- the function or cell of the exercise to fix. The grader copies that message
into its report.

The checks do not take a submission's word for anything. They read a model's parameters and buffers from
the dictionaries ``nn.Module`` keeps them in (walked here, with torch's own C accessors), never through
methods a subclass or an instance could override; and they refuse objects that could lie: a model must be
made of torch/torchvision classes (not subclasses defined elsewhere), with no method replaced on an
instance and no hooks of foreign code; an accuracy must be a real number, a tensor a real tensor, an
optimizer one of torch.optim's.
"""

from __future__ import annotations

import os
import sys
from collections import OrderedDict
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torchvision import models

# torch's C tensor type is immutable: these accessors cannot be replaced from Python.
_TENSOR = torch._C.TensorBase if hasattr(torch._C, "TensorBase") else torch._C._TensorBase
_REQUIRES_GRAD = _TENSOR.__dict__["requires_grad"]
_SHAPE = _TENSOR.__dict__["shape"]
_TRUSTED_PACKAGES = ("torch", "torchvision")
_HOOKS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)
_GLOBAL_HOOKS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
)
GENUINE_WHERE = (
    "the model your functions return: build it from torchvision's model and torch layers, without subclassing "
    "them, replacing their methods or adding hooks (a class of your own can report values that are not real)"
)


class CheckFailed(AssertionError):
    """An exercise check did not hold; the message says what is wrong and where to look."""


def _is_bool(value) -> bool:
    if type(value) is bool:
        return True
    if type(value).__name__ in ("bool_", "bool") and type(value).__module__ == "numpy":
        return True
    if type(value) is not torch.Tensor or _TENSOR.numel(value) != 1:
        return False
    return _TENSOR.__dict__["dtype"].__get__(value) is torch.bool


def check(condition, problem: str, where: str) -> None:
    """Raise CheckFailed(problem + where to look) unless ``condition`` is True (a real True: a bool)."""
    if not _is_bool(condition):
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


# ------------------------------------------------------------------------------ genuine objects
def _package_root(name: str) -> str:
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    return os.path.dirname(os.path.realpath(path)) if path else ""


def genuine_class(cls: type) -> bool:
    """True for a class defined by torch or torchvision itself (reachable by its name, from their files)."""
    module_name = getattr(cls, "__module__", None) or ""
    top = module_name.split(".")[0]
    if top not in _TRUSTED_PACKAGES:
        return False
    module = sys.modules.get(module_name)
    obj = module
    for part in getattr(cls, "__qualname__", "").split("."):
        obj = vars(obj).get(part) if obj is not None and hasattr(obj, "__dict__") else None
    if obj is not cls:
        return False
    path = os.path.realpath(getattr(module, "__file__", "") or "")
    root = _package_root(top)
    return bool(root) and path.startswith(root + os.sep)


def _trusted_code(function) -> bool:
    function = getattr(function, "__func__", function)
    code = getattr(function, "__code__", None)
    if code is None:  # a callable object: torch wraps some hooks in classes of its own
        return genuine_class(type(function))
    filename = os.path.realpath(code.co_filename)
    return any(filename.startswith(_package_root(top) + os.sep) for top in _TRUSTED_PACKAGES if _package_root(top))


def _problem_with_module(module: nn.Module, name: str) -> str:
    """Why ``module`` (at ``name``) cannot be trusted, or ''."""
    where = f"'{name}'" if name else "the top level"
    cls = type(module)
    if not genuine_class(cls):
        origin = "defined in your notebook" if cls.__module__ == "__main__" else f"from {cls.__module__}"
        return f"has a {cls.__name__} at {where} ({origin}), not a torch or torchvision class"
    state = object.__getattribute__(module, "__dict__")
    for key in ("_parameters", "_buffers", "_modules"):
        if type(state.get(key)) not in (dict, OrderedDict):
            return f"has its {key} replaced at {where}"
    for key, value in state.items():
        if callable(value) and not isinstance(value, (nn.Module, torch.Tensor, type)) and hasattr(cls, key):
            return f"has the method {key} of the {cls.__name__} at {where} replaced"
    for key in _HOOKS:
        for hook in (state.get(key) or {}).values():
            if not _trusted_code(hook):
                return f"has a hook ({key.strip('_')}) on the {cls.__name__} at {where} that torch did not put there"
    if isinstance(module, nn.Linear) and isinstance(state["_parameters"].get("weight"), torch.Tensor):
        weight = state["_parameters"]["weight"]
        if not isinstance(weight, nn.parameter.UninitializedParameter):
            shape = tuple(_SHAPE.__get__(weight))
            if shape != (state.get("out_features"), state.get("in_features")):
                return (
                    f"has a Linear at {where} that says {state.get('in_features')} -> {state.get('out_features')} "
                    f"but whose weight has shape {shape}"
                )
    return ""


def _global_hook_problem() -> str:
    from torch.nn.modules import module as module_file

    for key in _GLOBAL_HOOKS:
        for hook in (getattr(module_file, key, None) or {}).values():
            if not _trusted_code(hook):
                return f"runs under a global module hook ({key.strip('_')})"
    return ""


def real_modules(model, what: str = "the model", where: str = GENUINE_WHERE) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) for the model and every submodule, as named_modules gives them; refuses untrustworthy ones."""
    if not isinstance(model, nn.Module):
        raise CheckFailed(f"{what} should be a torch nn.Module, not a {type(model).__name__}.\nWhere to look: {where}")
    problem = _global_hook_problem()
    if problem:
        raise CheckFailed(f"{what} {problem}.\nWhere to look: {where}")
    seen, stack = set(), [("", model)]
    while stack:
        name, module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        problem = _problem_with_module(module, name)
        if problem:
            raise CheckFailed(f"{what} {problem}.\nWhere to look: {where}")
        yield name, module
        children = object.__getattribute__(module, "__dict__")["_modules"]
        for child_name, child in reversed(list(children.items())):
            if child is not None:
                stack.append((f"{name}.{child_name}" if name else child_name, child))


def _real_members(model, kind: str, what: str, where: str) -> list[tuple[str, torch.Tensor]]:
    out, seen = [], set()
    for prefix, module in real_modules(model, what, where):
        for key, value in object.__getattribute__(module, "__dict__")[kind].items():
            if value is None or id(value) in seen:
                continue
            wanted = nn.Parameter if kind == "_parameters" else torch.Tensor
            if not isinstance(value, wanted) or not genuine_class(type(value)):
                raise CheckFailed(
                    f"{what}: {prefix + '.' if prefix else ''}{key} is a {type(value).__name__}, not a real "
                    f"{wanted.__name__}.\nWhere to look: {where}"
                )
            seen.add(id(value))
            out.append((f"{prefix}.{key}" if prefix else key, value))
    return out


def real_named_parameters(model, what: str = "the model", where: str = GENUINE_WHERE) -> list[tuple[str, nn.Parameter]]:
    """The model's parameters as named_parameters() would list them, read from the modules themselves."""
    return _real_members(model, "_parameters", what, where)


def real_named_buffers(model, what: str = "the model", where: str = GENUINE_WHERE) -> list[tuple[str, torch.Tensor]]:
    """The model's buffers (BatchNorm statistics...) as named_buffers() would list them, read from the modules."""
    return _real_members(model, "_buffers", what, where)


def requires_grad(tensor: torch.Tensor) -> bool:
    """The tensor's requires_grad flag, read with torch's own accessor."""
    return bool(_REQUIRES_GRAD.__get__(tensor))


def expect_genuine_model(model, where: str, what: str = "the model") -> None:
    """``model`` is built from torch/torchvision classes, with no replaced methods and no foreign hooks."""
    for _ in real_modules(model, what, where):
        pass


# ---------------------------------------------------------------------------------------- checks
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
        isinstance(tensor, torch.Tensor) and genuine_class(type(tensor)),
        f"{what} should be a torch Tensor, but it is a {type(tensor).__name__}.",
        where,
    )


def expect_shape(tensor: torch.Tensor, shape: tuple[int, ...], what: str, where: str) -> None:
    """``tensor`` has exactly ``shape``."""
    _expect_tensor(tensor, what, where)
    actual = tuple(_SHAPE.__get__(tensor))
    check(actual == tuple(shape), f"{what} has shape {actual}, expected {tuple(shape)}.", where)


def head_parameter_names(model: nn.Module) -> set[str]:
    """Names (as in model.named_parameters) of the final Linear layer's parameters."""
    named = real_named_parameters(model)
    children = object.__getattribute__(model, "__dict__")["_modules"]
    if isinstance(model, models.MobileNetV2):
        classifier = children.get("classifier")
        head = list(object.__getattribute__(classifier, "__dict__")["_modules"].values())[-1] if classifier else None
    elif isinstance(model, models.ResNet):
        head = children.get("fc")
    else:
        kind = type(model).__name__
        raise CheckFailed(f"the model is a {kind}, not mobilenet_v2 or resnet18.\nWhere to look: {GENUINE_WHERE}")
    head_ids = {id(p) for p in object.__getattribute__(head, "__dict__")["_parameters"].values() if p is not None}
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
        count = sum(_TENSOR.numel(params[n]) for n in extra)
        check(False, f"{count:,} parameters should be frozen but have requires_grad=True: {_listed(extra)}.", where)
    if missing:
        count = sum(_TENSOR.numel(params[n]) for n in missing if n in params)
        check(
            False, f"{count:,} parameters should be trainable but have requires_grad=False: {_listed(missing)}.", where
        )


def _copy(tensor: torch.Tensor) -> torch.Tensor:
    return _TENSOR.clone(_TENSOR.cpu(_TENSOR.detach(tensor)))


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of every parameter and buffer (BatchNorm running statistics included)."""
    state = {f"param:{n}": _copy(p) for n, p in real_named_parameters(model)}
    state.update({f"buffer:{n}": _copy(b) for n, b in real_named_buffers(model)})
    return state


def changed(before: dict[str, torch.Tensor], model: nn.Module) -> set[str]:
    """Keys of ``snapshot`` whose values differ now ('param:...' or 'buffer:...')."""
    now = snapshot(model)
    return {key for key, value in before.items() if key in now and not _TENSOR.equal(value, now[key])}


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
    groups = object.__getattribute__(optimizer, "__dict__").get("param_groups")
    ok = type(groups) is list and all(type(g) is dict and type(g.get("params")) is list for g in groups)
    check(ok, "the optimizer's param_groups were replaced.", where)
    return groups


def expect_optimizer_matches(optimizer, model: nn.Module, where: str) -> None:
    """The optimizer holds exactly the model's trainable parameters."""
    groups = optimizer_groups(optimizer, where)
    named = real_named_parameters(model, where=where)
    names = {id(p): n for n, p in named}
    in_optimizer = {id(p) for group in groups for p in group["params"]}
    trainable = {id(p) for _, p in named if requires_grad(p)}
    problems = [f"trainable but not in the optimizer (never updated): {names[i]}" for i in trainable - in_optimizer]
    problems += [
        f"in the optimizer but frozen: {names.get(i, '<not a parameter of this model>')}"
        for i in in_optimizer - trainable
    ]
    problems.sort()
    check(
        not problems,
        f"the optimizer should hold exactly the trainable parameters; {len(problems)} problems, e.g. "
        + "; ".join(problems[:3]),
        where,
    )


def real_number(value) -> float | None:
    """``value`` as a float when it is really a number (int, float, numpy scalar, one-element tensor), else None."""
    if type(value) is bool:
        return None
    if type(value) in (int, float):
        return float(value)
    if type(value).__module__ == "numpy" and hasattr(value, "dtype") and getattr(value, "shape", None) == ():
        return float(value.item()) if value.dtype.kind in "iuf" else None
    if type(value) is torch.Tensor and _TENSOR.numel(value) == 1:
        return float(_TENSOR.item(_TENSOR.detach(value)))
    return None


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
    expect_shape(actual, tuple(_SHAPE.__get__(expected)), what, where)
    if _TENSOR.numel(actual):
        difference = _TENSOR.sub(_TENSOR.float(actual), _TENSOR.float(expected))
        diff = float(_TENSOR.item(_TENSOR.max(_TENSOR.abs(difference))))
    else:
        diff = 0.0
    check(diff <= atol, f"{what} differs from the expected values by up to {diff:.3g} (allowed {atol:g}).", where)
