"""Reading models, tensors and optimizers without trusting them: what the exercise checks stand on.

Exercise checks (``course_utils.checks``) never take a submission's word for anything. This module reads a
model's parameters and buffers from the dictionaries ``nn.Module`` keeps them in (walked here, with torch's
own C accessors), never through methods a subclass or an instance could override; and it refuses objects
that could lie: a model must be made of torch/torchvision classes (not subclasses defined elsewhere), with no
method replaced on an instance and no hooks of foreign code; a number must be a real number, a tensor a real
tensor, an optimizer's groups the plain lists torch keeps.

It relies on torch internals (the C tensor type, ``nn.Module``'s dictionaries and hook tables, an
optimizer's ``param_groups``); tests/test_genuine.py pins each of them, so an upgrade of torch that moves
one fails there first, by name.
"""

from __future__ import annotations

import os
import sys
from collections import OrderedDict
from collections.abc import Iterator
from typing import NoReturn

import torch
from torch import nn

# torch's C tensor type is immutable: these accessors cannot be replaced from Python.
TENSOR_BASE = torch._C.TensorBase if hasattr(torch._C, "TensorBase") else torch._C._TensorBase
_REQUIRES_GRAD = TENSOR_BASE.__dict__["requires_grad"]
_SHAPE = TENSOR_BASE.__dict__["shape"]
_DTYPE = TENSOR_BASE.__dict__["dtype"]
TRUSTED_PACKAGES = ("torch", "torchvision")
MODULE_DICTS = ("_parameters", "_buffers", "_modules")
HOOKS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)
GLOBAL_HOOKS = (
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


def refuse(problem: str, where: str) -> NoReturn:
    """Raise CheckFailed with the problem and where to look."""
    raise CheckFailed(f"{problem}\nWhere to look: {where}")


# ------------------------------------------------------------------------------ real values
def is_real_bool(value) -> bool:
    """True for a real boolean: bool, numpy's bool or a one-element bool tensor (not an object posing as one)."""
    if type(value) is bool:
        return True
    if type(value).__name__ in ("bool_", "bool") and type(value).__module__ == "numpy":
        return True
    if type(value) is not torch.Tensor or TENSOR_BASE.numel(value) != 1:
        return False
    return _DTYPE.__get__(value) is torch.bool


def real_number(value) -> float | None:
    """``value`` as a float when it is really a number (int, float, numpy scalar, one-element tensor), else None."""
    if type(value) is bool:
        return None
    if type(value) in (int, float):
        return float(value)
    if type(value).__module__ == "numpy" and hasattr(value, "dtype") and getattr(value, "shape", None) == ():
        return float(value.item()) if value.dtype.kind in "iuf" else None
    if type(value) is torch.Tensor and TENSOR_BASE.numel(value) == 1:
        return float(TENSOR_BASE.item(TENSOR_BASE.detach(value)))
    return None


def is_real_tensor(value) -> bool:
    """True for a torch Tensor whose class is torch's own (a subclass could report a false shape)."""
    return isinstance(value, torch.Tensor) and genuine_class(type(value))


def shape_of(tensor: torch.Tensor) -> tuple[int, ...]:
    """The tensor's shape, read with torch's own accessor."""
    return tuple(_SHAPE.__get__(tensor))


def numel(tensor: torch.Tensor) -> int:
    """How many values the tensor holds, read with torch's own accessor."""
    return int(TENSOR_BASE.numel(tensor))


def requires_grad(tensor: torch.Tensor) -> bool:
    """The tensor's requires_grad flag, read with torch's own accessor."""
    return bool(_REQUIRES_GRAD.__get__(tensor))


def detached_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A detached CPU copy, made with torch's own methods."""
    return TENSOR_BASE.clone(TENSOR_BASE.cpu(TENSOR_BASE.detach(tensor)))


def equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape and values, compared with torch's own method."""
    return bool(TENSOR_BASE.equal(a, b))


def max_abs_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest absolute difference between two tensors of one shape (0.0 when they are empty)."""
    if not TENSOR_BASE.numel(a):
        return 0.0
    difference = TENSOR_BASE.sub(TENSOR_BASE.float(a), TENSOR_BASE.float(b))
    return float(TENSOR_BASE.item(TENSOR_BASE.max(TENSOR_BASE.abs(difference))))


# ------------------------------------------------------------------------------ genuine classes
def _package_root(name: str) -> str:
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    return os.path.dirname(os.path.realpath(path)) if path else ""


def genuine_class(cls: type) -> bool:
    """True for a class defined by torch or torchvision itself (reachable by its name, from their files)."""
    module_name = getattr(cls, "__module__", None) or ""
    top = module_name.split(".")[0]
    if top not in TRUSTED_PACKAGES:
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
    return any(filename.startswith(_package_root(top) + os.sep) for top in TRUSTED_PACKAGES if _package_root(top))


# ------------------------------------------------------------------------------ genuine modules
def module_dict(module: nn.Module, key: str) -> dict:
    """One of the dictionaries nn.Module keeps ('_parameters', '_buffers', '_modules'), read from the instance."""
    return object.__getattribute__(module, "__dict__")[key]


def _problem_with_module(module: nn.Module, name: str) -> str:
    """Why ``module`` (at ``name``) cannot be trusted, or ''."""
    where = f"'{name}'" if name else "the top level"
    cls = type(module)
    if not genuine_class(cls):
        origin = "defined in your notebook" if cls.__module__ == "__main__" else f"from {cls.__module__}"
        return f"has a {cls.__name__} at {where} ({origin}), not a torch or torchvision class"
    state = object.__getattribute__(module, "__dict__")
    for key in MODULE_DICTS:
        if type(state.get(key)) not in (dict, OrderedDict):
            return f"has its {key} replaced at {where}"
    for key, value in state.items():
        if callable(value) and not isinstance(value, (nn.Module, torch.Tensor, type)) and hasattr(cls, key):
            return f"has the method {key} of the {cls.__name__} at {where} replaced"
    for key in HOOKS:
        for hook in (state.get(key) or {}).values():
            if not _trusted_code(hook):
                return f"has a hook ({key.strip('_')}) on the {cls.__name__} at {where} that torch did not put there"
    if isinstance(module, nn.Linear) and isinstance(state["_parameters"].get("weight"), torch.Tensor):
        weight = state["_parameters"]["weight"]
        if not isinstance(weight, nn.parameter.UninitializedParameter):
            shape = shape_of(weight)
            if shape != (state.get("out_features"), state.get("in_features")):
                return (
                    f"has a Linear at {where} that says {state.get('in_features')} -> {state.get('out_features')} "
                    f"but whose weight has shape {shape}"
                )
    return ""


def _global_hook_problem() -> str:
    from torch.nn.modules import module as module_file

    for key in GLOBAL_HOOKS:
        for hook in (getattr(module_file, key, None) or {}).values():
            if not _trusted_code(hook):
                return f"runs under a global module hook ({key.strip('_')})"
    return ""


def real_modules(model, what: str = "the model", where: str = GENUINE_WHERE) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) for the model and every submodule, as named_modules gives them; refuses untrustworthy ones."""
    if not isinstance(model, nn.Module):
        refuse(f"{what} should be a torch nn.Module, not a {type(model).__name__}.", where)
    problem = _global_hook_problem()
    if problem:
        refuse(f"{what} {problem}.", where)
    seen, stack = set(), [("", model)]
    while stack:
        name, module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        problem = _problem_with_module(module, name)
        if problem:
            refuse(f"{what} {problem}.", where)
        yield name, module
        for child_name, child in reversed(list(module_dict(module, "_modules").items())):
            if child is not None:
                stack.append((f"{name}.{child_name}" if name else child_name, child))


def _real_members(model, kind: str, what: str, where: str) -> list[tuple[str, torch.Tensor]]:
    out, seen = [], set()
    for prefix, module in real_modules(model, what, where):
        for key, value in module_dict(module, kind).items():
            if value is None or id(value) in seen:
                continue
            wanted = nn.Parameter if kind == "_parameters" else torch.Tensor
            if not isinstance(value, wanted) or not genuine_class(type(value)):
                refuse(
                    f"{what}: {prefix + '.' if prefix else ''}{key} is a {type(value).__name__}, not a real "
                    f"{wanted.__name__}.",
                    where,
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


# ------------------------------------------------------------------------------ optimizers
def real_param_groups(optimizer) -> list[dict] | None:
    """The optimizer's parameter groups read from the instance itself, or None when they are not the plain lists
    and dicts torch keeps (replaced by something that could report other parameters)."""
    groups = object.__getattribute__(optimizer, "__dict__").get("param_groups")
    ok = type(groups) is list and all(type(g) is dict and type(g.get("params")) is list for g in groups)
    return groups if ok else None
