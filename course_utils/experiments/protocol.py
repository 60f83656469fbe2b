"""One fair training protocol for every contender of the sweep and the freeze-depth experiment.

Every run, whatever the scenario:

- trains with Adam on mini-batches of ``batch_size``, for at most ``max_epochs`` epochs, and stops when the
  validation accuracy has not improved for ``patience`` epochs; the weights of the best validation epoch are kept;
- gets its learning rate from a small grid, chosen on the validation split (never on test); when the winner sits at
  an edge of the grid, the grid is extended one step (half a decade) in that direction and searched again, so the
  chosen rate is always bracketed. With ``probe_epochs`` set (the large sizes), every candidate trains that many
  epochs and only the best continues (successive halving), which saves hours without looking at test;
- runs on one device (``device``), in FP32, on one numeric path: ``channels_last`` memory format for the model and
  its image-shaped inputs (1.5x faster on a CPU, logits equal to ~1e-6; ``course bench`` measures it);
- is evaluated with BatchNorm statistics that match its weights: the trained BatchNorm layers are recalibrated on
  training images before every evaluation (see course_utils.training.recalibrate_batchnorm);
- touches the test set once, at the end.

The scenarios differ only in what is trained:

- ``raw``: multinomial logistic regression on the 784 raw pixels (standardised), the no-transfer baseline;
- ``A``: a linear head on frozen ImageNet features f(x) (cached once);
- ``B`` (and every freeze depth): A's trained head as the warm-up, then the stages from ``first_trainable`` on
  and the head trained from a boundary cache (body at ``lr``, head at ``10 * lr``); the earlier stages frozen;
- ``C``: the same with nothing frozen (``first_trainable='stem'``);
- ``scratch``: the same architecture from random initialization, everything trained at one rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..backbones import freeze_all, replace_head, split_at, unfreeze_from
from ..lr_search import MAX_EXTENSIONS, bracketed_search, chosen
from ..training import EarlyStopping, History, evaluate, fit
from .checkpoints import Checkpoints


class ArrayBatches:
    """(inputs, labels) batches from arrays in memory or memory-mapped on disk, without per-item overhead.

    ``inputs[indices]`` may be a uint8 image tensor or a numpy memmap of cached activations; ``convert`` turns a
    batch into model input (e.g. resize and normalise). Shuffled batches differ every epoch, reproducibly.
    ``channels_last``: image-shaped (4-d) batches are laid out channels-last, to match a channels-last model.
    ``flip``: each image of a batch is mirrored left-right with probability 1/2 (training augmentation), drawn from
    a generator of its own, so the batches' order and contents are those of the same loader without flips.
    """

    def __init__(
        self,
        inputs,
        labels,
        indices: np.ndarray,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        convert: Callable[[torch.Tensor], torch.Tensor] | None = None,
        channels_last: bool = False,
        flip: bool = False,
    ):
        self.inputs, self.labels, self.indices = inputs, labels, np.asarray(indices, dtype=np.int64)
        self.batch_size, self.shuffle, self.convert = batch_size, shuffle, convert
        self.channels_last = channels_last
        self.generator = torch.Generator().manual_seed(seed)
        self.flips = torch.Generator().manual_seed(seed + 7919) if flip else None

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __iter__(self):
        order = self.indices
        if self.shuffle:
            order = order[torch.randperm(len(order), generator=self.generator).numpy()]
        for start in range(0, len(order), self.batch_size):
            chunk = np.sort(order[start : start + self.batch_size])  # sorted rows read faster from a memmap
            x = self.inputs[chunk]
            x = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
            y = self.labels[chunk]
            y = torch.from_numpy(np.asarray(y, dtype=np.int64)) if not isinstance(y, torch.Tensor) else y
            x = self.convert(x) if self.convert else x.float()
            if self.flips is not None:
                mirrored = torch.rand(len(x), generator=self.flips) < 0.5
                x = torch.where(mirrored.view(-1, *[1] * (x.dim() - 1)), x.flip(-1), x)
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y


@dataclass(frozen=True)
class Budget:
    """How long every contender may train at one size."""

    max_epochs: int
    patience: int
    probe_epochs: int | None = None  # successive halving: candidates train this long, the best continues


@dataclass
class Data:
    """One split of one size and seed: loaders over train, validation, test and a recalibration subset."""

    train: ArrayBatches
    val: ArrayBatches
    test: ArrayBatches
    recalibrate: ArrayBatches  # up to 2,048 training examples, for BatchNorm statistics


@dataclass
class RunResult:
    """A trained contender: its learning rate, validation and test accuracy, and what the run cost."""

    lr: float
    lr_search: dict[str, float]  # candidate learning rate -> best validation accuracy it reached
    lr_grid: list[float]  # the final grid, extensions included, ascending
    lr_at_edge: bool  # the winner still sits at an edge of the final grid (only when the extensions ran out)
    val_acc: float
    test_acc: float
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    train_seconds: float
    train_cpu_seconds: float
    search_seconds: float
    trainable_params: int
    model: nn.Module
    resumed_cpu_seconds: float = 0.0  # CPU time an earlier, stopped run spent on it (read back from checkpoints)


def _adam(groups: list[dict]) -> torch.optim.Optimizer:
    return torch.optim.Adam([g for g in groups if g["params"]])


def _trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@dataclass
class _Candidate:
    """One learning rate's run: its model and optimizer, and its History (whose EarlyStopping keeps the best
    validation accuracy, its epoch and weights: the same code as fit's, counted over the whole run)."""

    lr: float
    model: nn.Module
    optimizer: torch.optim.Optimizer
    history: History
    wall: float = 0.0
    cpu: float = 0.0

    @property
    def stopping(self) -> EarlyStopping:
        """The run's early stopping: best accuracy, epoch and weights so far."""
        return self.history.early_stopping

    def train_to(
        self,
        epochs: int,
        data: Data,
        recalibrate: ArrayBatches | None,
        patience: int | None,
        device: torch.device,
        checkpoints: Checkpoints | None = None,
    ) -> None:
        """Train until the run has ``epochs`` epochs in all, or until ``patience`` epochs (counted over the whole run)
        pass without progress; one epoch per ``fit`` call, each saved to ``checkpoints`` (if any) as it ends."""
        while len(self.history.val_acc) < epochs and not self.history.stopped_early:
            if checkpoints:
                checkpoints.resume_streams()
            wall, cpu = time.perf_counter(), time.process_time()
            fit(
                self.model,
                data.train,
                self.optimizer,
                1,
                device,
                frozen_bn_eval=True,
                val_loader=data.val,
                recalibrate_with=recalibrate,
                patience=patience,
                progress=False,
                history=self.history,
            )
            self.wall += time.perf_counter() - wall
            self.cpu += time.process_time() - cpu
            if checkpoints:  # the call's last epoch is always saved: no other candidate moves on before it is
                checkpoints.after_epoch(self, last=len(self.history.val_acc) >= epochs or self.history.stopped_early)


def select_and_train(
    build: Callable[[float], tuple[nn.Module, torch.optim.Optimizer]],
    lrs: Sequence[float],
    data: Data,
    budget: Budget,
    recalibrate: bool,
    fixed_lr: float | None = None,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    checkpoints: Path | None = None,
    checkpoint_every_s: float = 120.0,
) -> RunResult:
    """Train a model for each candidate learning rate (or only ``fixed_lr``), keep the best on validation, test it.

    ``build(lr)`` returns a fresh (model, optimizer). Without ``budget.probe_epochs`` every candidate trains to its
    early stop; with it, each candidate trains ``probe_epochs`` and only the best continues to its early stop.
    A winner at an edge of the grid adds the next rate beyond that edge (``lr_search.bracketed_search``).
    ``checkpoints``: a folder where the candidates' training is saved as it goes (``checkpoints.Checkpoints``);
    a run stopped part-way resumes from it, with the numbers of a run that never stopped.
    """
    device = torch.device(device)
    recal = data.recalibrate if recalibrate else None
    searching = fixed_lr is None and len(lrs) > 1
    probe = budget.probe_epochs if searching else None
    start = time.perf_counter()
    saved = Checkpoints(checkpoints, data.train, checkpoint_every_s) if checkpoints is not None else None

    def run(lr: float) -> _Candidate:
        if saved and not saved.has(lr):
            saved.resume_streams()  # a new candidate: its build happens after the latest saved epoch
        model, optimizer = build(lr)
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        candidate = _Candidate(lr, model, optimizer, History())
        if saved:
            saved.restore(candidate)
        candidate.train_to(probe or budget.max_epochs, data, recal, None if probe else budget.patience, device, saved)
        return candidate

    def accuracy(candidate: _Candidate) -> float:
        return candidate.stopping.best_acc

    first = [fixed_lr] if fixed_lr is not None else list(lrs)
    runs = bracketed_search(run, first, accuracy, MAX_EXTENSIONS if searching else 0)  # course_utils.lr_search
    best, candidates = runs[chosen(runs, accuracy)], list(runs.values())
    grid = sorted(runs)
    if probe:
        best.train_to(budget.max_epochs, data, recal, budget.patience, device, saved)
    best.stopping.restore(best.model)
    _, test_acc = evaluate(best.model, data.test, device)
    for candidate in candidates:
        if candidate is not best:
            candidate.model = candidate.optimizer = candidate.stopping.best_state = None  # free the losers' memory
    return RunResult(
        lr=best.lr,
        lr_search={f"{c.lr:g}": round(c.stopping.best_acc, 4) for c in sorted(candidates, key=lambda c: c.lr)},
        lr_grid=grid,
        lr_at_edge=searching and best.lr in (grid[0], grid[-1]),
        val_acc=best.stopping.best_acc,
        test_acc=test_acc,
        epochs_run=len(best.history.val_acc),
        best_epoch=best.history.best_epoch,
        stopped_early=best.history.stopped_early,
        train_seconds=best.wall,
        train_cpu_seconds=best.cpu,
        search_seconds=time.perf_counter() - start + (saved.resumed_wall if saved else 0.0),
        trainable_params=_trainable(best.model),
        model=best.model,
        resumed_cpu_seconds=saved.resumed_cpu if saved else 0.0,
    )


def linear_builder(in_features: int, num_classes: int, seed: int):
    """build(lr) for a linear head or logistic regression: Linear(in_features, num_classes) and Adam."""

    def build(lr: float):
        torch.manual_seed(seed)
        head = nn.Linear(in_features, num_classes)
        return head, _adam([{"params": list(head.parameters()), "lr": lr}])

    return build


def finetune_builder(
    make_model: Callable[[], nn.Module],
    first_trainable: str,
    warm_head: nn.Linear | None,
    num_classes: int,
    seed: int,
    head_lr_factor: float = 10.0,
):
    """build(lr) for B/C/freeze depths: the model's stages from ``first_trainable`` on, trained from the boundary.

    Returns the part of the model after the cut (``split_at``), which reads boundary activations. The new head
    starts from ``warm_head`` (A's trained head: the warm-up) when given. Body at ``lr``, head at ``10 * lr``.
    """

    def build(lr: float):
        torch.manual_seed(seed)
        model = make_model()
        head = replace_head(model, num_classes)
        if warm_head is not None:
            head.load_state_dict(warm_head.state_dict())
        freeze_all(model)
        unfreeze_from(model, first_trainable)
        _, rest = split_at(model, first_trainable)
        head_ids = {id(p) for p in head.parameters()}
        body = [p for p in rest.parameters() if p.requires_grad and id(p) not in head_ids]
        groups = [{"params": body, "lr": lr}, {"params": list(head.parameters()), "lr": lr * head_lr_factor}]
        return rest, _adam(groups)

    return build


def scratch_builder(make_model: Callable[[], nn.Module], num_classes: int, seed: int):
    """build(lr) for from-scratch training: random initialization, everything trained at one rate."""

    def build(lr: float):
        torch.manual_seed(seed)
        model = make_model()
        replace_head(model, num_classes)
        return model, _adam([{"params": list(model.parameters()), "lr": lr}])

    return build
