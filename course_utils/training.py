"""The fit / evaluate loop with tqdm progress bars and a history of loss and accuracy.

Nothing is decided behind your back: whether frozen BatchNorm layers stay in eval mode (``frozen_bn_eval``,
lesson 02's trap), whether training stops early and keeps the best epoch (``patience``, ``restore_best``),
and whether BatchNorm statistics are recalibrated before each evaluation (``recalibrate_with``) are all
arguments the caller writes out.

A training run may be several ``fit`` calls (lesson 05: a head warm-up, then everything unfrozen): passing the
History of the earlier calls continues the run. Its ``EarlyStopping`` (one class, also usable on its own) keeps the
best validation accuracy, its epoch and its weights over the whole run, so ``best_epoch`` and ``restore_best``
mean the best epoch of every call, not only of the last one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .backbones import frozen_batchnorm_to_eval


class EarlyStopping:
    """The best validation accuracy of a run so far: its value, its epoch, the weights it had, and the epochs since.

    ``update(accuracy, model)`` after each evaluation; ``exhausted()`` says whether ``patience`` epochs have passed
    without an improvement (never with ``patience=None``); ``restore(model)`` loads the best weights. Only a
    strictly higher accuracy counts as an improvement (the earliest of equal epochs is kept). The state is copied
    as evaluated, BatchNorm statistics included (recalibrated ones when the evaluation recalibrated them).
    ``keep_state=False`` tracks the numbers only.
    """

    def __init__(self, patience: int | None = None, keep_state: bool = True):
        self.patience, self.keep_state = patience, keep_state
        self.best_acc = -1.0
        self.best_epoch = 0  # 1-based, counted over the whole run; 0: nothing evaluated yet
        self.best_state: dict[str, torch.Tensor] | None = None
        self.since_best = 0
        self.epochs = 0  # evaluations seen

    def update(self, accuracy: float, model: nn.Module | None = None) -> bool:
        """Record one epoch's validation accuracy (and ``model``'s weights if it is the best); True if it is."""
        self.epochs += 1
        if accuracy > self.best_acc:
            self.best_acc, self.best_epoch, self.since_best = float(accuracy), self.epochs, 0
            if self.keep_state and model is not None:
                self.best_state = {name: t.detach().clone() for name, t in model.state_dict().items()}
            return True
        self.since_best += 1
        return False

    def exhausted(self) -> bool:
        """``patience`` epochs (or more) without an improvement."""
        return self.patience is not None and self.since_best >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the best epoch's weights into ``model``."""
        if self.best_state is None:
            raise ValueError("no weights were kept for the best epoch (keep_state=False, or no epoch evaluated yet)")
        model.load_state_dict(self.best_state)

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(patience={self.patience}, best_acc={self.best_acc:.4f}, best_epoch={self.best_epoch}, "
            f"since_best={self.since_best}, state kept: {self.best_state is not None})"
        )


@dataclass
class History:
    """Per-epoch train/val loss and accuracy, seconds per epoch, and (with validation) the best epoch of the run.

    ``early_stopping`` (not part of ``as_dict``) keeps the best validation accuracy and its weights, so that a
    ``fit`` call that continues this History knows the best epoch of the earlier calls.
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    best_epoch: int = 0  # 1-based epoch with the highest val_acc over every fit call of this run (0: no validation)
    stopped_early: bool = False
    early_stopping: EarlyStopping = field(default_factory=EarlyStopping, repr=False, compare=False)

    @property
    def best_val_acc(self) -> float | None:
        """The highest validation accuracy of the run (None without validation)."""
        return max(self.val_acc) if self.val_acc else None

    def as_dict(self) -> dict:
        """Plain lists and numbers, e.g. for json."""
        return {k: v for k, v in self.__dict__.items() if k != "early_stopping"}

    def last(self) -> dict[str, float]:
        """The last epoch's numbers."""
        return {k: v[-1] for k, v in self.__dict__.items() if isinstance(v, list) and v}


def _batches(loader, desc: str, progress: bool):
    return tqdm(loader, desc=desc, leave=False, disable=not progress, mininterval=0.5)


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
    *,
    frozen_bn_eval: bool,
    loss_fn: nn.Module | None = None,
    progress: bool = True,
    desc: str = "train",
) -> tuple[float, float]:
    """One pass over ``loader`` in train mode; returns (mean loss, accuracy).

    ``frozen_bn_eval=True`` puts BatchNorm layers whose parameters are all frozen back in eval mode after
    ``model.train()``, so their running statistics stay as they are (lesson 02); ``False`` leaves every layer
    in train mode.
    """
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model.train()
    if frozen_bn_eval:
        frozen_batchnorm_to_eval(model)
    total_loss, correct, seen = 0.0, 0, 0
    for inputs, targets in _batches(loader, desc, progress):
        inputs, targets = inputs.to(device), targets.to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = model(inputs)
        loss = loss_fn(logits, targets)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(targets)
        correct += (logits.argmax(1) == targets).sum().item()
        seen += len(targets)
    return total_loss / max(seen, 1), correct / max(seen, 1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | str,
    loss_fn: nn.Module | None = None,
    progress: bool = False,
) -> tuple[float, float]:
    """Mean loss and accuracy over ``loader`` in eval mode."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    for inputs, targets in _batches(loader, "eval", progress):
        inputs, targets = inputs.to(device), targets.to(device)
        logits = model(inputs)
        total_loss += loss_fn(logits, targets).item() * len(targets)
        correct += (logits.argmax(1) == targets).sum().item()
        seen += len(targets)
    return total_loss / max(seen, 1), correct / max(seen, 1)


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted class, true class) for every example of ``loader``, on the CPU."""
    model.eval()
    preds, trues = [], []
    for inputs, targets in loader:
        preds.append(model(inputs.to(device)).argmax(1).cpu())
        trues.append(torch.as_tensor(targets))
    return torch.cat(preds), torch.cat(trues)


def _trained_batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """BatchNorm layers whose statistics training changes: those with a trainable parameter (or no parameters)."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and m.track_running_stats
        and (not list(m.parameters(recurse=False)) or any(p.requires_grad for p in m.parameters(recurse=False)))
    ]


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, loader: DataLoader, device: torch.device | str, max_batches: int | None = None
) -> int:
    """Recompute the running mean and variance of the trained BatchNorm layers from ``loader``; return how many.

    During training the running statistics are an exponential average over past batches, computed while the
    weights were still moving: after few or large steps they lag behind the weights (a fast-learning randomly
    initialised network can then score 0.10 in eval mode). This resets them and averages them exactly over
    the given batches with the final weights ("precise BatchNorm"). Frozen BatchNorm layers keep their values.
    Weights are not touched; the model is left in eval mode.
    """
    layers = _trained_batchnorms(model)
    if not layers:
        return 0
    momenta = {layer: layer.momentum for layer in layers}
    model.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over every batch seen
        layer.train()
    try:
        for number, (inputs, _) in enumerate(loader):
            if max_batches is not None and number >= max_batches:
                break
            model(inputs.to(device))
    finally:
        for layer, momentum in momenta.items():
            layer.momentum = momentum
        model.eval()
    return len(layers)


def _continued(history: History | None) -> History:
    """A new History, or ``history`` when fit wrote it (its early stopping saw every validation epoch)."""
    if history is None:
        return History()
    if history.early_stopping.epochs != len(history.val_acc):
        raise ValueError(
            f"the History has {len(history.val_acc)} validation epochs but its early_stopping saw "
            f"{history.early_stopping.epochs}: continue only a History that fit wrote"
        )
    return history


def _validate(model, val_loader, device, loss_fn, recalibrate_with, history: History) -> float:
    """One epoch's validation (BatchNorm recalibrated first when asked), recorded in ``history``; the accuracy."""
    if recalibrate_with is not None:
        recalibrate_batchnorm(model, recalibrate_with, device)
    val_loss, val_acc = evaluate(model, val_loader, device, loss_fn)
    history.val_loss.append(val_loss)
    history.val_acc.append(val_acc)
    history.early_stopping.update(val_acc, model)
    history.best_epoch = history.early_stopping.best_epoch
    return val_acc


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    device: torch.device | str = "cpu",
    *,
    frozen_bn_eval: bool,
    val_loader: DataLoader | None = None,
    loss_fn: nn.Module | None = None,
    scheduler=None,
    patience: int | None = None,
    restore_best: bool = False,
    recalibrate_with: DataLoader | None = None,
    progress: bool = True,
    history: History | None = None,
) -> History:
    """Train for up to ``epochs`` (whole model or head alone: whatever the optimizer holds); return the History.

    - ``frozen_bn_eval``: keep BatchNorm layers whose parameters are frozen in eval mode (see train_one_epoch);
    - ``patience``: stop when validation accuracy has not improved for that many epochs (needs ``val_loader``);
    - ``restore_best``: at the end, load the weights of the epoch with the best validation accuracy;
    - ``recalibrate_with``: before each evaluation, recompute the trained BatchNorm layers' statistics from
      this loader (recalibrate_batchnorm), so that validation sees statistics that match the weights;
    - ``history``: continue a run (e.g. a warm-up, then fine-tuning): the epochs are appended to it, and the best
      epoch, the epochs since it (for ``patience``) and the weights ``restore_best`` loads are those of the whole
      run, earlier calls included (kept in ``history.early_stopping``).
    ``scheduler.step()`` is called once per epoch.
    """
    if (patience is not None or restore_best) and val_loader is None:
        raise ValueError("early stopping and restore_best choose by validation accuracy: pass val_loader")
    model.to(device)
    history = _continued(history)
    stopping = history.early_stopping
    stopping.patience = patience  # this call's patience; the epochs since the best count from earlier calls
    bar = tqdm(range(epochs), desc="epochs", disable=not progress)
    for _ in bar:
        if stopping.exhausted():  # continuing a run that had already run out of patience
            break
        start = time.perf_counter()
        train_loss, train_acc = train_one_epoch(
            model, train_loader, optimizer, device, frozen_bn_eval=frozen_bn_eval, loss_fn=loss_fn, progress=progress
        )
        if scheduler is not None:
            scheduler.step()
        history.seconds.append(time.perf_counter() - start)
        history.train_loss.append(train_loss)
        history.train_acc.append(train_acc)
        postfix = {"loss": f"{train_loss:.3f}", "acc": f"{train_acc:.3f}"}
        if val_loader is not None:
            postfix["val_acc"] = f"{_validate(model, val_loader, device, loss_fn, recalibrate_with, history):.3f}"
        bar.set_postfix(postfix)
    if stopping.exhausted():
        history.stopped_early = True
    if restore_best and stopping.best_epoch:
        stopping.restore(model)
    return history
