"""Exercise 4's export code: what runs in the student's kernel, with the judge's data, budget and grids.

Kept apart from the scoring (``ex4``) only for size; the constants here are the judge's, used on both sides.
"""

from __future__ import annotations

from .common import ON_THE_CPU, guarded

CLASSES = [1, 7, 8]  # Fashion-MNIST: Trouser, Sneaker, Bag (the exercise's classes)
IMAGE_SIZE = 32
N_TRAIN, N_VAL = 20, 20  # per class, as in the exercise: 60 training images in batches of 8
DATA_SEED = 11  # the judge's own draw of training and validation images
HELD_OUT_SEED, HELD_OUT_PER_CLASS = 4242, 100  # the judge's held-out images: never given to the student's code
EPOCHS = 4  # the equal budget of every run, fixed here whatever the notebook's EPOCHS says
GRIDS = {"pretrained": (1e-4, 3e-4, 1e-3), "random": (2e-3, 6e-3, 2e-2)}  # each start's own grid (lesson 05)
LEARNED = 0.5  # held-out accuracy (chance 1/3) a start must exceed: below it, the run was crippled
HEAD = ("classifier.1.weight", "classifier.1.bias")

# -------------------------------------------------------------------------- code run in the student's kernel
# The judge's own model for train_and_evaluate: ImageNet body, a head drawn from a fixed generator; BatchNorm
# trainable, or frozen (Keras' route). Run in the kernel and, to know where training started, by the judge.
MODEL_SOURCE = """
import torch as _torch
from torch import nn as _nn


def _j4_model(freeze_batchnorm):
    from course_utils.backbones import load_backbone
    model = load_backbone("mobilenet_v2")
    head = _nn.Linear(1280, 3)
    with _torch.no_grad():
        head.weight.copy_(_torch.randn(3, 1280, generator=_torch.Generator().manual_seed(4)) * 0.01)
        head.bias.zero_()
    model.classifier[-1] = head
    for module in model.modules():
        if isinstance(module, _nn.BatchNorm2d):
            module.weight.requires_grad = module.bias.requires_grad = not freeze_batchnorm
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("classifier")]
    groups = [{"params": body, "lr": 1e-3}, {"params": list(head.parameters()), "lr": 1e-2}]
    return model, _torch.optim.Adam(groups)
"""

_HELPERS = (
    MODEL_SOURCE
    + f"_J4 = dict(classes={CLASSES!r}, n={N_TRAIN}, n_val={N_VAL}, size={IMAGE_SIZE}, seed={DATA_SEED})\n"
    + ON_THE_CPU
    + """


def _j4_state(model):
    return {k: v.detach().cpu().clone() for k, v in _nn.Module.state_dict(model).items()}


def _j4_grad(model):
    return {k: bool(p.requires_grad) for k, p in _nn.Module.named_parameters(model)}


def _j4_number(value):
    from course_utils.genuine import real_number
    return real_number(value)


def _j4_optimizer(model, optimizer):
    names = {id(p): k for k, p in _nn.Module.named_parameters(model)}
    groups = optimizer.param_groups
    state = optimizer.state
    params = [p for g in groups for p in g["params"]]
    steps = [_j4_number(state[p].get("step")) if type(state.get(p)) is dict else None for p in params]
    return {"kind": f"{type(optimizer).__module__}.{type(optimizer).__qualname__}", "steps": steps,
            "groups": [{"params": [names.get(id(p), "") for p in g["params"]],
                        "lr": float(g.get("initial_lr", g["lr"]))} for g in groups]}


def _j4_loaders():
    from torch.utils.data import DataLoader
    from course_utils.fashion import fashion_mnist_splits
    s = fashion_mnist_splits(_J4["n"], _J4["n_val"], 1, size=_J4["size"], classes=_J4["classes"], seed=_J4["seed"])
    train = DataLoader(s["train"], batch_size=8, shuffle=True, generator=_torch.Generator().manual_seed(0))
    return train, DataLoader(s["val"], batch_size=128), DataLoader(s["train"], batch_size=64)


class _J4Counting:
    def __init__(self, loader):
        self.loader, self.passes, self.dataset, self.batch_size = loader, [], loader.dataset, loader.batch_size

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.passes.append(0)
        for batch in self.loader:
            self.passes[-1] += 1
            yield batch
"""
)

EXPORT_TRAINABLE = _HELPERS + guarded(
    """
cases = []
for pretrained, classes in [(True, 3), (False, 3), (False, 5)]:
    model, _ = prepare_full_fine_tuning(classes, pretrained=pretrained)
    cases.append({"pretrained": pretrained, "classes": classes, "state": _j4_state(model),
                  "requires_grad": _j4_grad(model)})
return {"cases": cases}
""",
    "_j4_trainable",
)
EXPORT_OPTIMIZER = _HELPERS + guarded(
    """
cases = []
for pretrained, lr in [(True, 3e-4), (False, 2e-3)]:
    model, optimizer = prepare_full_fine_tuning(3, pretrained=pretrained, lr=lr)
    cases.append({"pretrained": pretrained, "lr": lr, "requires_grad": _j4_grad(model),
                  **_j4_optimizer(model, optimizer)})
return {"cases": cases}
""",
    "_j4_optimizer_all",
)
EXPORT_TRAIN = _HELPERS + guarded(
    """
from course_utils.device import seed_everything
cases = []
for freeze_batchnorm in (False, True):
    train, val, recal = _j4_loaders()
    counting = _J4Counting(train)
    seed_everything(0)
    model, optimizer = _j4_model(freeze_batchnorm)
    accuracy = train_and_evaluate(model, optimizer, counting, val, recal, epochs=1)
    cases.append({"freeze_batchnorm": freeze_batchnorm, "state": _j4_state(model), "accuracy": _j4_number(accuracy),
                  "returned": type(accuracy).__name__, "passes": list(counting.passes)})
return {"cases": cases}
""",
    "_j4_train",
)
EXPORT_COMPARE = (
    _HELPERS
    + f"_J4_GRIDS, _J4_EPOCHS = {GRIDS!r}, {EPOCHS!r}\n"
    + guarded(
        """
train, val, recal = _j4_loaders()
counting_train, counting_val = _J4Counting(train), _J4Counting(val)
runs = compare_initializations(counting_train, counting_val, recal, 3, _J4_EPOCHS, dict(_J4_GRIDS), seed=0)
out = {"keys": sorted(str(k) for k in runs) if type(runs) is dict else [], "returned": type(runs).__name__,
       "train_passes": list(counting_train.passes), "val_passes": list(counting_val.passes), "runs": {}}
for name in ("pretrained", "random"):
    run = runs.get(name) if type(runs) is dict else None
    if type(run) is dict and {"model", "optimizer", "lr", "val_acc"} <= set(run):
        val_acc = run["val_acc"] if type(run["val_acc"]) is dict else {}
        out["runs"][name] = {"state": _j4_state(run["model"]), "requires_grad": _j4_grad(run["model"]),
                             "lr": _j4_number(run["lr"]), **_j4_optimizer(run["model"], run["optimizer"]),
                             "val_acc": [[_j4_number(k), _j4_number(v)] for k, v in val_acc.items()]}
return out
""",
        "_j4_compare",
    )
)
