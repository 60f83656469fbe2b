"""`course bench`'s Scenario B (lesson 04): the boundary cache timed against epochs through the frozen stages.

Also the pieces both scenarios share: the benchmark's input tensors, its seeded loaders and the sum of stopwatches.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ..backbones import freeze_all, load_backbone, replace_head, split_at, unfreeze_from
from ..cache import cache_boundary
from ..device import loader_kwargs, seed_everything
from ..fashion import fashion_mnist_splits
from ..preprocess import to_backbone_input
from ..timing import Stopwatch, timed
from ..training import fit

TIME_KINDS = (("wall", "seconds"), ("cpu", "cpu_seconds"))  # each figure in wall-clock and in CPU time


def bench_data(n: int, size: int, seed: int) -> TensorDataset:
    """The benchmark's input: about n Fashion-MNIST training images at ``size`` px, as backbone input, and labels."""
    seed_everything(seed)
    split = fashion_mnist_splits(max(1, n // 10), n_test=1, size=size, seed=seed)["train"]
    return TensorDataset(to_backbone_input(split.images, size), split.targets)


def seeded_loader(dataset, batch_size: int, seed: int, device) -> DataLoader:
    """A shuffling loader whose order depends on ``seed`` alone."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        **loader_kwargs(device),
    )


def total(watches: list[Stopwatch], attr: str) -> float:
    """The sum of one reading (``seconds`` or ``cpu_seconds``) over stopwatches."""
    return sum(getattr(w, attr) for w in watches)


def epoch_breakdown(trunk: nn.Module, rest: nn.Module, optimizer: torch.optim.Optimizer, loader, device) -> dict:
    """Seconds one training epoch of Scenario B spends in each part: frozen forward, trainable forward, backward, step.

    The frozen stages run in eval mode without a graph (as with frozen_bn_eval=True); the trainable stages train.
    """
    parts = dict.fromkeys(("frozen_forward", "trainable_forward", "backward", "optimizer_step"), 0.0)
    trunk.eval()
    rest.train()
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        with timed() as t, torch.no_grad():
            boundary = trunk(images)
        parts["frozen_forward"] += t.seconds
        optimizer.zero_grad(set_to_none=True)
        with timed() as t:
            loss = nn.functional.cross_entropy(rest(boundary), labels)
        parts["trainable_forward"] += t.seconds
        with timed() as t:
            loss.backward()
        parts["backward"] += t.seconds
        with timed() as t:
            optimizer.step()
        parts["optimizer_step"] += t.seconds
    return {k: round(v, 4) for k, v in parts.items()}


def _b_model(first_trainable: str, seed: int) -> nn.Module:
    """MobileNetV2 with a 10-class head, trainable from ``first_trainable`` on, its weights seeded alike every time."""
    torch.manual_seed(seed)
    model = load_backbone("mobilenet_v2")
    replace_head(model, 10, dropout=0.0)
    freeze_all(model)
    unfreeze_from(model, first_trainable)
    return model


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)


def _interleaved_epochs(through, shortcut, rest, cached, data, epochs, batch_size, seed, device):
    """Epoch by epoch: (a) through the frozen stages, then (b) from the cache; the stopwatches of each side."""
    loader_a, opt_a = seeded_loader(data, batch_size, seed, device), _sgd(through)
    loader_b, opt_b = seeded_loader(TensorDataset(*cached.tensors()), batch_size, seed, device), _sgd(shortcut)
    epochs_a, epochs_b = [], []
    for _ in range(epochs):
        with timed() as clock:
            fit(through, loader_a, opt_a, 1, device=device, frozen_bn_eval=True, progress=False)
        epochs_a.append(clock)
        with timed() as clock:
            fit(rest, loader_b, opt_b, 1, device=device, frozen_bn_eval=True, progress=False)
        epochs_b.append(clock)
    return epochs_a, epochs_b


def _comparison_times(epochs_a: list[Stopwatch], epochs_b: list[Stopwatch], clock_cache: Stopwatch, attr: str) -> dict:
    """The whole comparison in one reading of the stopwatches (``seconds`` or ``cpu_seconds``)."""
    a, b = total(epochs_a, attr), total(epochs_b, attr)
    return {
        "a_through_frozen_stages_s": round(a, 3),
        "b_cache_build_s": round(getattr(clock_cache, attr), 3),
        "b_epochs_from_cache_s": round(b, 3),
        "speedup_total": round(a / (getattr(clock_cache, attr) + b), 2),
        "speedup_per_epoch": round(a / b, 2),
    }


def _boundary_parts(first_trainable: str, data: TensorDataset, batch_size: int, seed: int, device) -> dict:
    """One epoch with the frozen stages up to ``first_trainable``, split into parts, and what a cache would save."""
    model = _b_model(first_trainable, seed)
    trunk, rest = split_at(model, first_trainable)
    loader = seeded_loader(data, batch_size, seed, device)
    parts = epoch_breakdown(trunk, rest, _sgd(model), loader, device)
    with torch.no_grad():
        boundary = trunk.eval()(data.tensors[0][:1])
    through_s = sum(parts.values())
    from_cache_s = through_s - parts["frozen_forward"]
    return {
        "channels": int(boundary.shape[1]),
        "epoch_parts_s": parts,
        "epoch_through_frozen_s": round(through_s, 3),
        "epoch_from_cache_s": round(from_cache_s, 3),
        "speedup_per_epoch": round(through_s / from_cache_s, 2),
    }


def boundary_speed(
    n: int,
    size: int,
    epochs: int,
    batch_size: int,
    device,
    seed: int,
    root: Path,
    boundaries: tuple[str, ...] = ("block5", "block6", "block7"),
) -> dict:
    """Scenario B (lesson 04): epochs through the frozen stages vs a boundary cache + epochs from it, one run.

    For the course's B (the first of ``boundaries``) the whole comparison is timed and the trained weights of both
    ways are compared; for every boundary one epoch each way is timed, split into its parts.
    """
    data = bench_data(n, size, seed)
    course_b = boundaries[0]
    through, shortcut = _b_model(course_b, seed), _b_model(course_b, seed)
    with timed() as clock_cache:
        cached = cache_boundary(
            shortcut,
            data,
            course_b,
            "bench_boundary",
            root=root,
            batch_size=batch_size,
            device=device,
            progress=False,
            verbose=False,
        )
    _, rest = split_at(shortcut, course_b)
    epochs_a, epochs_b = _interleaved_epochs(through, shortcut, rest, cached, data, epochs, batch_size, seed, device)
    weights_a, weights_b = through.state_dict(), shortcut.state_dict()
    out = {
        "images": len(data),
        "size_px": size,
        "epochs": epochs,
        "batch_size": batch_size,
        "first_trainable": course_b,
        "boundary_shape": list(cached.features.shape[1:]),
        "weights_max_abs_difference": float(
            max((weights_a[k].float() - weights_b[k].float()).abs().max() for k in weights_a)
        ),
    }
    for kind, attr in TIME_KINDS:
        out[kind] = _comparison_times(epochs_a, epochs_b, clock_cache, attr)
    out["per_boundary"] = {b: _boundary_parts(b, data, batch_size, seed, device) for b in boundaries}
    return out
