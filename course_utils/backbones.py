"""Backbones (mobilenet_v2 by default, resnet18): load, replace the head, freeze, unfreeze by stage, report."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torchvision import models

from .weights import WeightsError, ensure_weights, spec_for

BACKBONES = ("mobilenet_v2", "resnet18")

# mobilenet_v2.features indices grouped by output resolution / width (torchvision's layout).
_MOBILENET_STAGES = OrderedDict(
    [
        ("stem", [0]),
        ("block1", [1]),
        ("block2", [2, 3]),
        ("block3", [4, 5, 6]),
        ("block4", [7, 8, 9, 10]),
        ("block5", [11, 12, 13]),
        ("block6", [14, 15, 16]),
        ("block7", [17]),
        ("last_conv", [18]),
    ]
)


def family_of(model: nn.Module) -> str:
    """'mobilenet_v2' or 'resnet18'-style ('resnet') for a torchvision model, else a clear error."""
    if isinstance(model, models.MobileNetV2):
        return "mobilenet_v2"
    if isinstance(model, models.ResNet):
        return "resnet"
    raise TypeError(f"{type(model).__name__} is not a supported backbone; use one of {', '.join(BACKBONES)}")


def load_backbone(name: str = "mobilenet_v2", pretrained: bool = True, fetch: bool = True) -> nn.Module:
    """A torchvision model with verified ImageNet weights (IMAGENET1K_V1), or random init if not pretrained.

    The checkpoint is checked by sha256 and loaded with ``weights_only=True``. With ``fetch`` it is
    fetched first if missing (see course_utils.weights); offline and missing, the error says what to do.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; supported: {', '.join(BACKBONES)}")
    model = getattr(models, name)(weights=None)
    if not pretrained:
        return model
    spec = spec_for(name)
    if fetch:
        report = ensure_weights(name, log=lambda msg: print(msg))
        path = report.path
    else:
        from .weights import verified_cached

        path = verified_cached(spec)
        if path is None:
            raise WeightsError(
                f"{spec.filename} is not in the hub cache; run `course fetch weights --backbone {name}`."
            )
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model


def imagenet_categories(name: str = "mobilenet_v2") -> list[str]:
    """The 1000 ImageNet class names in the order of the pretrained head."""
    weights = {
        "mobilenet_v2": models.MobileNet_V2_Weights.IMAGENET1K_V1,
        "resnet18": models.ResNet18_Weights.IMAGENET1K_V1,
    }
    return list(weights[name].meta["categories"])


def head_of(model: nn.Module) -> nn.Linear:
    """The final Linear layer (classifier[-1] for mobilenet_v2, fc for resnet)."""
    return model.classifier[-1] if family_of(model) == "mobilenet_v2" else model.fc


def feature_dim(model: nn.Module) -> int:
    """Width of the features that the head reads (1280 for mobilenet_v2, 512 for resnet18)."""
    return head_of(model).in_features


def replace_head(model: nn.Module, num_classes: int, dropout: float | None = None) -> nn.Linear:
    """Put a new, trainable Linear(feature_dim, num_classes) where the ImageNet head was; return it."""
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes}: a classifier needs at least 2 classes")
    new_head = nn.Linear(feature_dim(model), num_classes)
    if family_of(model) == "mobilenet_v2":
        if dropout is not None:
            model.classifier[0].p = dropout
        model.classifier[-1] = new_head
    else:
        model.fc = new_head
    return new_head


def stages(model: nn.Module) -> OrderedDict[str, nn.Module]:
    """The model's stages in forward order, from the stem (full resolution) to the last (coarsest) one, then 'head'."""
    out: OrderedDict[str, nn.Module] = OrderedDict()
    if family_of(model) == "mobilenet_v2":
        for stage, indices in _MOBILENET_STAGES.items():
            out[stage] = nn.ModuleList([model.features[i] for i in indices])
        out["head"] = model.classifier
    else:
        out["stem"] = nn.ModuleList([model.conv1, model.bn1])
        for layer in ("layer1", "layer2", "layer3", "layer4"):
            out[layer] = getattr(model, layer)
        out["head"] = model.fc
    return out


def stage_names(model: nn.Module) -> list[str]:
    """Names accepted by unfreeze_from, in forward order."""
    return list(stages(model))


def freeze_all(model: nn.Module) -> nn.Module:
    """requires_grad=False for every parameter (the head included); returns the model."""
    for param in model.parameters():
        param.requires_grad = False
    return model


def unfreeze_from(model: nn.Module, stage: str) -> list[str]:
    """Make ``stage`` and every later stage (the head too) trainable, earlier ones frozen; return the trainable ones."""
    names = stage_names(model)
    if stage not in names:
        raise ValueError(f"unknown stage {stage!r} for {family_of(model)}; stages: {', '.join(names)}")
    start = names.index(stage)
    for index, module in enumerate(stages(model).values()):
        for param in module.parameters():
            param.requires_grad = index >= start
    return names[start:]


def _forward_pieces(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(stage, module) in the order forward() applies them, pooling and flattening included, head last."""
    if family_of(model) == "mobilenet_v2":
        pieces = [(stage, model.features[i]) for stage, indices in _MOBILENET_STAGES.items() for i in indices]
        return [*pieces, ("head", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), model.classifier))]
    pieces = [("stem", model.conv1), ("stem", model.bn1), ("stem", model.relu), ("stem", model.maxpool)]
    pieces += [(layer, getattr(model, layer)) for layer in ("layer1", "layer2", "layer3", "layer4")]
    return [*pieces, ("head", nn.Sequential(model.avgpool, nn.Flatten(1), model.fc))]


def split_at(model: nn.Module, first_trainable: str) -> tuple[nn.Module, nn.Module]:
    """(trunk, rest): ``rest(trunk(x)) == model(x)``, the cut just before stage ``first_trainable``.

    The trunk holds the stages before it (frozen in Scenario B), the rest that stage, every later one and the
    head. Both share their layers with ``model`` (no copies), so training ``rest`` trains ``model``. At
    'head' the trunk is f(x), the pooled features of Scenario A; at the first stage it is the identity.
    """
    names = stage_names(model)
    if first_trainable not in names:
        raise ValueError(f"unknown stage {first_trainable!r} for {family_of(model)}; stages: {', '.join(names)}")
    pieces = _forward_pieces(model)
    cut = next(i for i, (stage, _) in enumerate(pieces) if stage == first_trainable)
    trunk = nn.Sequential(*[m for _, m in pieces[:cut]]) if cut else nn.Identity()
    if first_trainable == "head":  # the pooling belongs to f(x); the rest is the head alone
        head_module = pieces[-1][1]
        trunk = nn.Sequential(*[m for _, m in pieces[:cut]], *list(head_module)[:2])
        return trunk, head_module[2]
    return trunk, nn.Sequential(*[m for _, m in pieces[cut:]])


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (scalars), optionally only those with requires_grad."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_report(model: nn.Module) -> list[dict]:
    """One row per stage: {'stage', 'total', 'trainable'}, plus a final 'all' row."""
    rows = [
        {"stage": name, "total": count_parameters(module), "trainable": count_parameters(module, trainable_only=True)}
        for name, module in stages(model).items()
    ]
    rows.append({"stage": "all", "total": count_parameters(model), "trainable": count_parameters(model, True)})
    return rows


def format_parameter_rows(rows: list[dict]) -> str:
    """Rows of parameter_report as an aligned text table."""
    lines = [f"{'stage':<10} {'total':>12} {'trainable':>12}"]
    lines += [f"{row['stage']:<10} {row['total']:>12,} {row['trainable']:>12,}" for row in rows]
    return "\n".join(lines)


def format_parameter_report(model: nn.Module) -> str:
    """The model's parameter_report as an aligned text table."""
    return format_parameter_rows(parameter_report(model))


def optimizer_problems(
    in_optimizer: Iterable[torch.Tensor],
    named: Iterable[tuple[str, torch.Tensor]],
    is_trainable: Callable[[torch.Tensor], bool] = lambda p: p.requires_grad,
) -> list[str]:
    """The one optimizer-vs-trainable comparison (lessons and exercise checks): a sorted line per parameter that is
    trainable but not in the optimizer, or in the optimizer but frozen (or not the model's at all)."""
    named = list(named)
    names = {id(p): n for n, p in named}
    held = {id(p) for p in in_optimizer}
    trainable = {id(p) for _, p in named if is_trainable(p)}
    problems = [f"trainable but not in the optimizer (never updated): {names[i]}" for i in trainable - held]
    problems += [
        f"in the optimizer but frozen: {names.get(i, '<not a parameter of this model>')}" for i in held - trainable
    ]
    return sorted(problems)


def optimizer_parameter_problems(optimizer: torch.optim.Optimizer, model: nn.Module) -> list[str]:
    """What differs between the optimizer's parameters and the model's trainable ones (empty: they match)."""
    return optimizer_problems(
        (p for group in optimizer.param_groups for p in group["params"]), model.named_parameters()
    )


def optimizer_matches_trainable(optimizer: torch.optim.Optimizer, model: nn.Module) -> bool:
    """True when the optimizer holds exactly the model's trainable parameters."""
    return not optimizer_parameter_problems(optimizer, model)


def frozen_batchnorm_to_eval(model: nn.Module) -> int:
    """Put BatchNorm layers whose parameters are all frozen in eval mode (their running stats then stay put).

    Call after ``model.train()``. Returns how many layers it switched.
    """
    switched = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
                switched += 1
    return switched


def body_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """f(x): the pooled features the head reads (N x feature_dim), without the head."""
    if family_of(model) == "mobilenet_v2":
        x = model.features(images)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
    x = model.maxpool(model.relu(model.bn1(model.conv1(images))))
    x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    return torch.flatten(model.avgpool(x), 1)
