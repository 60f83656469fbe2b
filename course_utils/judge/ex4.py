"""Exercise 4 (fine-tune everything: pretrained or random start?): the judge's tasks for its four graded cells.

The exports call the student's ``prepare_full_fine_tuning``, ``train_and_evaluate`` and ``compare_initializations``
with the judge's own data (Fashion-MNIST images of its own seed), budget (``EPOCHS``) and learning-rate grids, all
written here. ``train_and_evaluate`` is given the judge's own model and optimizer, so a mistake in
``prepare_full_fine_tuning`` costs only its own tasks. Scoring loads the exported state dicts into the judge's own
torchvision MobileNetV2, compares them with the verified ImageNet weights, recalibrates BatchNorm and measures
validation and held-out accuracy itself. The comparison is graded on its procedure (each start its own rate,
chosen on validation, the same budget), never on which start wins; only a start that stays near chance (a
crippled run) fails.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import nn

from . import Task, Verdict
from . import ex4_exports as ex
from .common import (
    entry,
    flags,
    judged,
    judged_cases,
    listed,
    load_state,
    lr_groups,
    number,
    optimizer_problems,
    pretrained_state,
    reference_model,
    require,
)

WHERE_TRAINABLE = (
    "prepare_full_fine_tuning: a new head with num_classes outputs, every convolution and linear layer trainable, "
    "and BatchNorm trainable for the random start"
)
WHERE_OPTIMIZER = (
    "prepare_full_fine_tuning: the optimizer holds exactly the trainable parameters; body at lr, head at lr or more"
)
WHERE_TRAIN = (
    "train_and_evaluate: every layer learns (zero_grad, forward, loss, backward, step for each batch), frozen "
    "BatchNorm stays in eval mode, then recalibrate_batchnorm(model, recal_loader, DEVICE), model.eval() and "
    "torch.no_grad() while measuring; return the accuracy as a number"
)
WHERE_COMPARE = (
    "compare_initializations: for each start, one fresh run per learning rate of its grid (seed_everything, "
    "prepare_full_fine_tuning, train_and_evaluate on val_loader), the best on validation kept with its model, "
    "optimizer, lr and every rate's validation accuracy"
)


# ----------------------------------------------------------------------------------------- the judge's side
def _model(state, requires_grad, classes: int, what: str) -> tuple[nn.Module, dict[str, bool]]:
    """The judge's MobileNetV2 holding an exported state, with the exported requires_grad applied."""
    model = load_state(reference_model("mobilenet_v2", classes), state, what)
    grads = flags(requires_grad, [n for n, _ in model.named_parameters()], f"the requires_grad map of {what}")
    for name, param in model.named_parameters():
        param.requires_grad = grads[name]
    return model, grads


def _layer_names(model: nn.Module, kinds: tuple[type, ...]) -> set[str]:
    return {name for name, module in model.named_modules() if isinstance(module, kinds)}


@lru_cache(maxsize=1)
def _splits() -> dict:
    from ..fashion import fashion_mnist_splits

    kept = fashion_mnist_splits(ex.N_TRAIN, ex.N_VAL, 1, size=ex.IMAGE_SIZE, classes=ex.CLASSES, seed=ex.DATA_SEED)
    held = fashion_mnist_splits(
        1, 0, ex.HELD_OUT_PER_CLASS, size=ex.IMAGE_SIZE, classes=ex.CLASSES, seed=ex.HELD_OUT_SEED
    )
    return {"train": kept["train"], "val": kept["val"], "test": held["test"]}


def _accuracy(model: nn.Module, part: str, recalibrate: bool = True) -> float:
    """Accuracy on the judge's ``part``, BatchNorm first recalibrated on the training images (in order, batch 64)."""
    from torch.utils.data import DataLoader

    from ..training import evaluate, recalibrate_batchnorm

    if recalibrate:
        recalibrate_batchnorm(model, DataLoader(_splits()["train"], batch_size=64), "cpu")
    return evaluate(model, DataLoader(_splits()[part], batch_size=128), "cpu")[1]


def _check_trainable(case: dict) -> str:
    pretrained, classes = case["pretrained"], case["classes"]
    model, grads = _model(case["state"], case["requires_grad"], classes, f"the model (pretrained={pretrained})")
    frozen = {n for n, g in grads.items() if not g}
    weights, norms = _layer_names(model, (nn.Conv2d, nn.Linear)), _layer_names(model, (nn.BatchNorm2d,))
    frozen_weights = {n for n in frozen if n.rsplit(".", 1)[0] in weights}
    require(
        not frozen_weights,
        f"{len(frozen_weights)} convolution or linear parameters are frozen, e.g. "
        f"{listed(frozen_weights)} (pretrained={pretrained})",
    )
    frozen_norms = {n.rsplit(".", 1)[0] for n in frozen if n.rsplit(".", 1)[0] in norms}
    require(
        pretrained or not frozen_norms,
        f"{len(frozen_norms)} BatchNorm layers are frozen in the random start, "
        f"e.g. {listed(frozen_norms)}: their statistics at initialization describe nothing, so a random network "
        "with frozen BatchNorm barely learns",
    )
    require(
        frozen_norms in (set(), norms),
        f"{len(frozen_norms)} of {len(norms)} BatchNorm layers are frozen "
        "(pretrained=True): freeze all of them (Keras' guide) or none (lesson 05)",
    )
    imagenet, state = pretrained_state(), model.state_dict()
    body = [n for n in imagenet if n.startswith("features.") and not n.endswith("num_batches_tracked")]
    same = {n for n in body if torch.equal(state[n], imagenet[n])}
    if pretrained:
        require(
            same == set(body),
            f"pretrained=True but {len(set(body) - same)} body tensors differ from the "
            f"ImageNet weights, e.g. {listed(set(body) - same)}; keep load_backbone's weights",
        )
    else:
        convs = {n for n in body if imagenet[n].dim() == 4}
        require(not convs & same, f"pretrained=False but {listed(convs & same)} equal the ImageNet weights")
    return f"pretrained={pretrained}, {classes} classes: {'BatchNorm frozen' if frozen_norms else 'all trainable'}"


def score_trainable(data: dict) -> Verdict:
    """ex4_everything_trainable: every layer trainable, the right head, where each start begins."""

    return judged_cases(data, WHERE_TRAINABLE, "models", 3, _check_trainable, "ok: ")


def _check_optimizer(case: dict, where_lr: str = "the lr argument") -> str:
    """Optimizer of a torch.optim class holding exactly the trainable parameters; body at lr, head at lr or more."""
    names = [n for n, _ in reference_model("mobilenet_v2", 3).named_parameters()]
    grads = flags(case["requires_grad"], names, "the requires_grad map")
    kind = entry(case, "kind", "optimizer class")
    require(
        isinstance(kind, str) and kind.startswith("torch.optim."), f"the optimizer is a {kind}: use torch.optim.Adam"
    )
    groups = lr_groups(entry(case, "groups", "optimizer groups"))
    problems = optimizer_problems(groups, {n for n, g in grads.items() if g})
    require(
        not problems,
        f"the optimizer should hold exactly the trainable parameters; {len(problems)} problems, "
        f"e.g. {'; '.join(problems[:3])}",
    )
    lr = number(case["lr"], "lr")
    rates = {name: rate for params, rate in groups for name in params}
    body = {rate for name, rate in rates.items() if name not in ex.HEAD}
    require(
        all(math.isclose(r, lr, rel_tol=1e-9) for r in body),
        f"the body's learning rates are {sorted(body)}, expected {where_lr} {lr:g} (pretrained={case['pretrained']})",
    )
    head = [rates.get(name, 0.0) for name in ex.HEAD]
    require(
        min(head) >= lr * (1 - 1e-9),
        f"the head's learning rate {min(head):g} is below the body's {lr:g} (pretrained={case['pretrained']})",
    )
    return f"pretrained={case['pretrained']}: body lr {lr:g}, head lr {min(head):g}"


def score_optimizer(data: dict) -> Verdict:
    """ex4_optimizer_all: for both starts, the optimizer holds exactly the trainable parameters at the right rates."""
    ok = "ok: the optimizer holds every trainable parameter; "
    return judged_cases(data, WHERE_OPTIMIZER, "optimizers", 2, _check_optimizer, ok)


@lru_cache(maxsize=2)
def _start(freeze_batchnorm: bool) -> dict[str, torch.Tensor]:
    """Where the judge's own model for train_and_evaluate starts (the same code as in the kernel)."""
    namespace: dict = {}
    exec(ex.MODEL_SOURCE, namespace)  # noqa: S102 - the judge's own code, never the student's
    model, _ = namespace["_j4_model"](freeze_batchnorm)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _check_training(case: dict) -> str:
    frozen_bn = entry(case, "freeze_batchnorm", "which model")
    require(frozen_bn in (True, False), "the export does not say which model was trained")
    start = _start(frozen_bn)
    model = load_state(reference_model("mobilenet_v2", 3), case["state"], "the trained model")
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.requires_grad = module.bias.requires_grad = not frozen_bn
    state = model.state_dict()
    weights = {f"{n}.weight" for n in _layer_names(model, (nn.Conv2d, nn.Linear))}
    still = {n for n in weights if torch.equal(state[n], start[n])}
    require(
        not still, f"{len(still)} convolution or linear weights did not change, e.g. {listed(still)}: train every layer"
    )
    if frozen_bn:
        stats = {
            n for n in start if n.endswith(("running_mean", "running_var")) and not torch.equal(state[n], start[n])
        }
        require(
            not stats,
            f"the running statistics of {len(stats) // 2} frozen BatchNorm layers changed: keep frozen "
            "BatchNorm layers in eval mode while training (lesson 02)",
        )
    passes = entry(case, "passes", "passes over the training data")
    batches = math.ceil(len(_splits()["train"]) / 8)
    require(
        passes == [batches],
        f"with epochs=1 train_and_evaluate should go once over the {batches} batches of "
        f"train_loader; it went {len(passes)} times ({passes} batches)",
    )
    value = case["accuracy"]
    require(type(value) is float, f"train_and_evaluate returned {case.get('returned')}, not a number")
    measured = _accuracy(model, "val")
    require(
        abs(value - measured) <= 1 / len(_splits()["val"]) + 1e-9,
        f"you returned accuracy {value:.4f}, but with "
        f"BatchNorm recalibrated on recal_loader and in eval mode the trained model scores {measured:.4f} on the "
        "loader you were given",
    )
    held_out = _accuracy(model, "test", recalibrate=False)
    require(  # with frozen BatchNorm one epoch at these rates need not learn: there the procedure is what counts
        frozen_bn or held_out > ex.LEARNED,
        f"after one epoch the model scores {held_out:.3f} on the judge's held-out images "
        f"(chance {1 / len(ex.CLASSES):.2f}): it did not learn",
    )
    return f"BatchNorm {'frozen' if frozen_bn else 'trained'}: validation {measured:.3f}, held-out {held_out:.3f}"


def score_training(data: dict) -> Verdict:
    """ex4_train_then_measure: the judge's model trained for one epoch, measured as the judge measures it."""
    return judged_cases(data, WHERE_TRAIN, "trained models", 2, _check_training, "ok: every layer trained; ")


def _check_run(name: str, run: dict, train_batches: int) -> tuple[nn.Module, float]:
    """One start's chosen run: where it started, that it trained, its budget, its rate and its validation score."""
    model, grads = _model(run["state"], run["requires_grad"], 3, f"the {name} model")
    imagenet, state = pretrained_state(), model.state_dict()
    first = "features.0.0.weight"
    distance = float((state[first] - imagenet[first]).norm() / imagenet[first].norm())
    require(
        (distance < 0.5) == (name == "pretrained"),
        f"the {name!r} model's first layer is {distance:.2f} of its "
        "size away from the ImageNet weights: the 'pretrained' model should start from them, the 'random' one not",
    )
    norms = _layer_names(model, (nn.BatchNorm2d,))
    frozen_norms = {n for n in norms if not grads[f"{n}.weight"] or not grads[f"{n}.bias"]}
    if name == "random":
        require(
            not frozen_norms,
            "BatchNorm is frozen in the random start: its statistics at initialization describe "
            "nothing, and a random network with frozen BatchNorm barely learns. Let it train "
            "(prepare_full_fine_tuning)",
        )
        shift = float(
            torch.cat([torch.cat([(state[f"{n}.weight"] - 1).abs(), state[f"{n}.bias"].abs()]) for n in norms]).mean()
        )
        require(
            shift > 1e-4,
            f"the random start's BatchNorm weights moved by {shift:.1e} on average from where every "
            "random start begins: it barely trained (a learning rate far too small?)",
        )
    else:
        if frozen_norms == norms:  # Keras' route: frozen BatchNorm stays in inference mode
            drifted = {
                n
                for n in imagenet
                if n.endswith(("running_mean", "running_var")) and not torch.equal(state[n], imagenet[n])
            }
            require(
                not drifted,
                f"the pretrained start froze BatchNorm but {len(drifted)} running statistics changed, "
                f"e.g. {listed(drifted, 2)}: keep frozen BatchNorm layers in eval mode while training",
            )
        convs = [n for n, t in imagenet.items() if n.startswith("features") and n.endswith("weight") and t.dim() == 4]
        change = math.sqrt(
            sum(float((state[n] - imagenet[n]).norm() ** 2) for n in convs)
            / sum(float(imagenet[n].norm() ** 2) for n in convs)
        )
        require(
            change > 1e-3,
            f"the pretrained start's convolutions moved by {change:.1e} of their size: it barely "
            "trained (a learning rate far too small?)",
        )
    _check_optimizer({**run, "pretrained": name == "pretrained"}, f"the chosen rate lr={run['lr']!r}, that is")
    steps = entry(run, "steps", "optimizer step counts")
    require(
        set(steps) == {float(ex.EPOCHS * train_batches)},
        f"optimizer steps of the chosen {name} run: "
        f"{sorted(set(steps), key=str)}; {ex.EPOCHS} epochs of {train_batches} batches are {ex.EPOCHS * train_batches} "
        "steps for every parameter (use torch.optim.Adam, and return the optimizer that trained the model)",
    )
    return model, _check_choice(name, run, model)


def _check_choice(name: str, run: dict, model: nn.Module) -> float:
    """The rate is the grid's best on validation, and that score is what the returned model scores."""
    pairs = entry(run, "val_acc", "validation accuracies")
    grid = ex.GRIDS[name]
    scores = {lr: acc for lr, acc in pairs}
    require(
        len(pairs) == len(scores) and None not in scores and sorted(scores) == sorted(grid),
        f"runs[{name!r}]['val_acc'] should give a validation accuracy for each rate of {grid}, got {scores}",
    )
    require(None not in scores.values(), f"runs[{name!r}]['val_acc'] holds something that is not a number")
    lr = run["lr"]
    require(
        lr in grid and scores[lr] == max(scores.values()),
        f"the {name} start chose lr {lr!r}, but the best "
        f"validation accuracy in {scores} is {max(scores.values()):.3f}: choose the rate that does best on validation",
    )
    measured = _accuracy(model, "val")
    require(
        abs(measured - scores[lr]) <= 1 / len(_splits()["val"]) + 1e-9,
        f"the {name} run reports validation "
        f"accuracy {scores[lr]:.3f} for lr {lr:g}, but the model it returned scores {measured:.3f} on val_loader "
        "(BatchNorm recalibrated on recal_loader)",
    )
    return lr


def score_compare(data: dict) -> Verdict:
    """ex4_pretrained_vs_random: the procedure (own grid, choice on validation, equal budget), measured by the judge."""

    def check(data: dict) -> str:
        keys = entry(data, "keys", "keys of the result")
        require(
            keys == ["pretrained", "random"],
            f"expected a dict with keys 'pretrained' and 'random', got {data.get('returned')} with keys {keys}",
        )
        runs = entry(data, "runs", "runs")
        missing = {"pretrained", "random"} - set(runs)
        require(
            not missing, f"runs[{listed(missing)!r}] should be a dict with 'model', 'optimizer', 'lr' and 'val_acc'"
        )
        train_batches = math.ceil(len(_splits()["train"]) / 8)
        candidates = sum(len(grid) for grid in ex.GRIDS.values())
        passes = entry(data, "train_passes", "passes over the training data")
        complete = [n for n in passes if n == train_batches]
        require(
            len(complete) == len(passes) == ex.EPOCHS * candidates,
            f"{len(passes)} passes over the training data "
            f"({len(complete)} complete); {candidates} runs (one per learning rate of each grid) of {ex.EPOCHS} "
            f"epochs each are {ex.EPOCHS * candidates}",
        )
        val_passes = [n for n in entry(data, "val_passes", "passes over val_loader") if n == 1]
        require(
            len(val_passes) >= candidates,
            f"val_loader was read {len(val_passes)} times; each of the {candidates} runs is measured on it",
        )
        chosen = {name: _check_run(name, runs[name], train_batches) for name in ("pretrained", "random")}
        held_out = {name: _accuracy(model, "test", recalibrate=False) for name, (model, _) in chosen.items()}
        for name, accuracy in held_out.items():
            require(
                accuracy > ex.LEARNED,
                f"the {name} start's chosen model scores {accuracy:.3f} on the judge's "
                f"held-out images (chance {1 / len(ex.CLASSES):.2f}): its run learned nothing; give it the same "
                "data, steps and care as the other start",
            )
        gap = held_out["pretrained"] - held_out["random"]
        rates = ", ".join(f"{name} lr {lr:g}" for name, (_, lr) in chosen.items())
        return (
            f"ok: the same budget for both starts, each rate chosen on validation ({rates}); held-out accuracy "
            f"pretrained {held_out['pretrained']:.3f}, random {held_out['random']:.3f}, gap {gap:+.3f} "
            "(one seed: a direction, not a verdict)"
        )

    return judged(data, WHERE_COMPARE, check)


TASKS = [
    Task("ex4_everything_trainable", ex.EXPORT_TRAINABLE, score_trainable),
    Task("ex4_optimizer_all", ex.EXPORT_OPTIMIZER, score_optimizer),
    Task("ex4_train_then_measure", ex.EXPORT_TRAIN, score_training),
    Task("ex4_pretrained_vs_random", ex.EXPORT_COMPARE, score_compare),
]
