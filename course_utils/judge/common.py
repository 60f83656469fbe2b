"""What the exercise judges share: exported data checked and loaded into the judge's own objects, its models,
its held-out Fashion-MNIST and its reference heads.

Nothing here runs student code. A check that fails raises ``Rejected`` with the sentence a student reads;
``judged`` turns that (and anything else an odd export makes go wrong) into a failed ``Verdict`` that ends with
"Where to look:" and the graded cell's own hint. Models, images and features are cached per process, so
scoring a class costs each of them once; cached objects are never handed out to be changed.
"""

from __future__ import annotations

import copy
import math
import textwrap
from collections.abc import Callable, Iterable
from functools import lru_cache

import torch
from torch import nn

from . import Task, Verdict

ERROR_KEY = "error"  # an export whose student call raised: {"error": "NotImplementedError: ..."}


class Rejected(Exception):
    """The exported data fails a check; the message says what is wrong."""


def fail(problem: str, where: str) -> Verdict:
    """A failed task, worded as the notebook's checks word it."""
    return Verdict(False, f"{problem}\nWhere to look: {where}")


def require(condition: bool, problem: str) -> None:
    """Raise Rejected(problem) unless ``condition`` holds."""
    if not condition:
        raise Rejected(problem)


def listed(names: Iterable[str], limit: int = 3) -> str:
    """The first few names, sorted, and how many more."""
    names = sorted(str(n) for n in names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def judged(data: dict, where: str, check: Callable[[dict], str]) -> Verdict:
    """Verdict of ``check(data)`` (it returns the passing message, raises Rejected); never raises itself."""
    if isinstance(data, dict) and ERROR_KEY in data:
        return fail(f"your code raised {str(data[ERROR_KEY])[:500]}", where)
    try:
        return Verdict(True, check(data))
    except Rejected as exc:
        return fail(str(exc), where)
    except Exception as exc:  # noqa: BLE001 - forged keys, types and shapes: a failed task, never a crash
        return fail(f"the exported data is not what the task asks for ({type(exc).__name__}: {exc})", where)


def judged_task(grade_id: str, export: str, where: str, check: Callable[[dict], str]) -> Task:
    """The Task of a graded cell whose verdict is ``judged(data, where, check)``."""
    return Task(grade_id, export, lambda data: judged(data, where, check))


def judged_cases(data: dict, where: str, what: str, count: int, check_case: Callable[[dict], str], ok: str) -> Verdict:
    """Verdict on ``data['cases']``, a list of ``count`` exported ``what``: each is checked by ``check_case`` (it
    returns the case's part of the passing message, raises Rejected); the passing message is ``ok`` and those parts."""

    def check(data: dict) -> str:
        cases = entry(data, "cases", what)
        require(isinstance(cases, list) and len(cases) == count, f"the export should hold {_WORDS[count]} {what}")
        return ok + "; ".join(map(check_case, cases))

    return judged(data, where, check)


_WORDS = {2: "two", 3: "three"}  # how many cases an export holds, as the verdicts say it


# Export code's first lines in the student's kernel (after ``import torch as _torch``): the notebook's functions train
# on its global DEVICE (a GPU when there is one); the judge's runs use the CPU whatever the machine, so that the data
# it scores do not depend on where the notebook ran.
ON_THE_CPU = 'DEVICE = _torch.device("cpu")\n'


def guarded(body: str, name: str) -> str:
    """Export code: ``body`` (statements ending in ``return data``) as a function whose errors are exported too."""
    inner = textwrap.indent(textwrap.dedent(body).strip("\n"), " " * 8)
    return (
        f"\n\ndef {name}():\n    try:\n{inner}\n"
        f"    except Exception as _exc:  # the student's code raised: the judge says so\n"
        f"        return {{{ERROR_KEY!r}: f'{{type(_exc).__name__}}: {{_exc}}'}}\n\n\ncourse_export({name}())\n"
    )


# ------------------------------------------------------------------------------ exported values, checked
def entry(data: dict, key: str, what: str):
    """``data[key]``, or Rejected naming what is missing."""
    require(isinstance(data, dict) and key in data, f"the export has no {what} ({key!r})")
    return data[key]


def tensor(value, what: str, shape: tuple[int, ...] | None = None, floating: bool = True) -> torch.Tensor:
    """A plain tensor of ``shape`` with finite real values, as float32 (``floating``) or as int64 whole numbers."""
    require(type(value) in (torch.Tensor, nn.Parameter), f"{what} should be a tensor, not a {type(value).__name__}")
    value = value.detach()
    require(value.dtype != torch.bool and not value.is_complex(), f"{what} has dtype {value.dtype}, not numbers")
    if shape is not None:
        require(tuple(value.shape) == tuple(shape), f"{what} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    if value.dtype.is_floating_point:
        require(bool(torch.isfinite(value).all()), f"{what}: NaN or infinite values")
    if floating:
        return value.float()
    require(not value.dtype.is_floating_point or bool((value == value.round()).all()), f"{what} are not whole numbers")
    return value.long()


def number(value, what: str) -> float:
    """A finite real number (int or float, not bool)."""
    require(type(value) in (int, float), f"{what} should be a number, not a {type(value).__name__}")
    require(math.isfinite(value), f"{what} is {value}")
    return float(value)


def flags(value, names: Iterable[str], what: str) -> dict[str, bool]:
    """A {parameter name: True/False} map over exactly ``names``."""
    names = set(names)
    require(isinstance(value, dict), f"{what} should be a dict of parameter names, not a {type(value).__name__}")
    missing, extra = names - set(value), set(value) - names
    require(not missing, f"{what}: {len(missing)} parameters of the model are missing, e.g. {listed(missing)}")
    require(not extra, f"{what}: {len(extra)} names are not parameters of the model, e.g. {listed(extra)}")
    odd = [n for n, flag in value.items() if type(flag) is not bool]
    require(not odd, f"{what}: requires_grad of {listed(odd)} is not True or False")
    return dict(value)


def trainable(requires_grad: dict[str, bool]) -> set[str]:
    """Names of the parameters with requires_grad=True in a checked ``flags`` map."""
    return {name for name, flag in requires_grad.items() if flag}


def lr_groups(value, what: str = "the optimizer's groups") -> list[tuple[list[str], float]]:
    """Optimizer groups exported as [{'params': [parameter names], 'lr': number}] -> [(names, lr)]."""
    require(isinstance(value, list) and value, f"{what} should be a non-empty list of groups")
    out = []
    for number_, group in enumerate(value):
        require(isinstance(group, dict), f"group {number_} of {what} is a {type(group).__name__}, not a dict")
        names = entry(group, "params", f"parameter list in group {number_}")
        require(isinstance(names, list) and all(isinstance(n, str) for n in names), f"group {number_}: bad names")
        out.append((list(names), number(entry(group, "lr", f"lr of group {number_}"), f"the lr of group {number_}")))
    return out


def optimizer_problems(groups: list[tuple[list[str], float]], expected: set[str]) -> list[str]:
    """Sorted lines on what differs between the groups' parameter names and the ``expected`` trainable ones."""
    held = [name for names, _ in groups for name in names]
    problems = [f"in the optimizer but frozen: {n or '<not a parameter of this model>'}" for n in set(held) - expected]
    problems += [f"trainable but not in the optimizer (never updated): {n}" for n in expected - set(held)]
    twice = sorted({n for n in held if held.count(n) > 1})
    problems += [f"in the optimizer twice: {n}" for n in twice]
    return sorted(problems)


def checked_state(state, expected: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """An exported state dict with exactly ``expected``'s names and shapes, finite, in ``expected``'s dtypes."""
    require(isinstance(state, dict), f"{what} should be a state dict, not a {type(state).__name__}")
    missing, extra = set(expected) - set(state), set(state) - set(expected)
    require(not missing, f"{what} lacks {len(missing)} entries, e.g. {listed(missing)}")
    require(not extra, f"{what} has {len(extra)} entries the judge's model does not, e.g. {listed(extra)}")
    return {
        name: tensor(state[name], f"{name!r} of {what}", tuple(ref.shape), ref.dtype.is_floating_point).to(ref.dtype)
        for name, ref in expected.items()
    }


def differing(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], names: Iterable[str]) -> set[str]:
    """Which of ``names`` hold different values in ``state`` and ``reference`` (both checked)."""
    return {name for name in names if not torch.equal(state[name], reference[name])}


def load_state(module: nn.Module, state, what: str) -> nn.Module:
    """``module`` (the judge's own) with the exported ``state`` loaded: same names, shapes, finite values."""
    module.load_state_dict(checked_state(state, module.state_dict(), what), strict=True)
    return module


def linear_from_state(state, in_features: int, out_features: int, what: str) -> nn.Linear:
    """The judge's own nn.Linear(in_features, out_features) holding an exported head's weight and bias."""
    if isinstance(state, dict) and set(state) != {"weight", "bias"}:
        raise Rejected(f"{what} should be a plain nn.Linear (a weight and a bias), but its state has {listed(state)}")
    return load_state(nn.Linear(in_features, out_features), state, what).eval()


# ------------------------------------------------------------------------------------ the judge's models
def reference_model(backbone: str = "mobilenet_v2", classes: int = 3, pretrained: bool = False) -> nn.Module:
    """A new model of the judge's own: the torchvision backbone with an nn.Linear head of ``classes`` outputs.

    ``pretrained`` (mobilenet_v2 only): the verified ImageNet weights, body frozen, in eval mode.
    """
    from ..backbones import load_backbone, replace_head

    if pretrained and backbone != "mobilenet_v2":
        raise ValueError(f"the judge has pretrained weights for mobilenet_v2 only, not {backbone}")
    model = copy.deepcopy(_pretrained_model()) if pretrained else load_backbone(backbone, pretrained=False)
    replace_head(model, classes)
    return model


@lru_cache(maxsize=1)
def _pretrained_model() -> nn.Module:
    from ..backbones import freeze_all, load_backbone

    return freeze_all(load_backbone("mobilenet_v2", fetch=False)).eval()


@lru_cache(maxsize=1)
def pretrained_state() -> dict[str, torch.Tensor]:
    """The verified pretrained mobilenet_v2's state dict (sha256-checked checkpoint); do not change it."""
    return {k: v.detach().clone() for k, v in _pretrained_model().state_dict().items()}


@lru_cache(maxsize=4)
def state_stages(backbone: str = "mobilenet_v2") -> dict[str, str]:
    """{state-dict name: stage name} of the backbone with a new head (parameters and buffers), stages as
    course_utils.backbones names them."""
    from ..backbones import stages

    model = reference_model(backbone)
    by_id = {id(t): name for name, module in stages(model).items() for t in [*module.parameters(), *module.buffers()]}
    return {name: by_id[id(t)] for name, t in model.state_dict(keep_vars=True).items()}


@lru_cache(maxsize=4)
def parameter_stages(backbone: str = "mobilenet_v2") -> dict[str, str]:
    """{parameter name: stage name} of the backbone with a new head."""
    names = {name for name, _ in reference_model(backbone).named_parameters()}
    return {name: stage for name, stage in state_stages(backbone).items() if name in names}


def stage_order(backbone: str = "mobilenet_v2") -> list[str]:
    """The stage names in forward order, 'head' last."""
    return list(dict.fromkeys(parameter_stages(backbone).values()))


def trainable_from(backbone: str, stage: str) -> set[str]:
    """Names of the parameters of ``stage`` and every later stage: what unfreezing from ``stage`` makes trainable."""
    order = stage_order(backbone)
    later = set(order[order.index(stage) :])
    return {name for name, s in parameter_stages(backbone).items() if s in later}


@torch.no_grad()
def features_of(images: torch.Tensor) -> torch.Tensor:
    """f(x) of a batch of backbone input by the judge's frozen pretrained mobilenet_v2 (eval mode)."""
    from ..backbones import body_features

    return torch.cat([body_features(_pretrained_model(), part) for part in images.split(128)])


# ------------------------------------------------------------------------------ data and reference heads
@lru_cache(maxsize=8)
def fashion(classes: tuple[int, ...], n_train: int, n_test: int, size: int, seed: int) -> dict:
    """fashion_mnist_splits with these arguments, as {part: (images N x 3 x size x size, labels)}; cached."""
    from ..fashion import fashion_mnist_splits

    splits = fashion_mnist_splits(n_train=n_train, n_test=n_test, size=size, classes=list(classes), seed=seed)
    return {part: (split.transform(split.images), split.targets.clone()) for part, split in splits.items()}


@lru_cache(maxsize=8)
def fashion_features(classes: tuple[int, ...], n_train: int, n_test: int, size: int, seed: int) -> dict:
    """{part: (f(x) by the judge's backbone, labels)} of ``fashion(...)``; cached."""
    return {part: (features_of(x), y) for part, (x, y) in fashion(classes, n_train, n_test, size, seed).items()}


@torch.no_grad()
def loss_and_accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (eval mode) on ``inputs``."""
    model.eval()
    logits = torch.cat([model(part) for part in inputs.split(256)])
    loss = nn.functional.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()


@lru_cache(maxsize=8)
def _reference_head(key: tuple, epochs: int, lr: float) -> nn.Linear:
    from torch.utils.data import DataLoader, TensorDataset

    from ..training import fit

    features, labels = fashion_features(*key)["train"]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        head = nn.Linear(features.shape[1], int(labels.max()) + 1)
        loader = DataLoader(TensorDataset(features, labels), batch_size=len(labels))
        fit(head, loader, torch.optim.Adam(head.parameters(), lr=lr), epochs, frozen_bn_eval=False, progress=False)
    return head.eval()


def reference_head_scores(key: tuple, epochs: int, lr: float) -> tuple[float, float]:
    """Held-out (loss, accuracy) of the reference head: the course's ``fit`` with Adam, one full batch per epoch,
    on the judge's own train features of ``fashion(*key)``, evaluated on its test features."""
    features, labels = fashion_features(*key)["test"]
    return loss_and_accuracy(_reference_head(key, epochs, lr), features, labels)
