"""The fit / evaluate loop with tqdm progress bars and a history of loss and accuracy."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .backbones import frozen_batchnorm_to_eval


@dataclass
class History:
    """Per-epoch train/val loss and accuracy, and seconds per epoch."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[float]]:
        """Plain lists, e.g. for json."""
        return dict(self.__dict__)

    def last(self) -> dict[str, float]:
        """The last epoch's numbers."""
        return {k: v[-1] for k, v in self.__dict__.items() if v}


def _batches(loader, desc: str, progress: bool):
    return tqdm(loader, desc=desc, leave=False, disable=not progress, mininterval=0.5)


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, device: torch.device | str,
                    loss_fn: nn.Module | None = None, progress: bool = True, desc: str = "train") -> tuple[float, float]:
    """One pass over ``loader``; frozen BatchNorm layers stay in eval mode. Returns (mean loss, accuracy)."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model.train()
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
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device | str, loss_fn: nn.Module | None = None,
             progress: bool = False) -> tuple[float, float]:
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


def fit(model: nn.Module, train_loader: DataLoader, optimizer: torch.optim.Optimizer, epochs: int,
        device: torch.device | str = "cpu", val_loader: DataLoader | None = None, loss_fn: nn.Module | None = None,
        scheduler=None, progress: bool = True, history: History | None = None) -> History:
    """Train for ``epochs`` (whole model or head alone: whatever the optimizer holds) and return the History.

    Frozen BatchNorm layers are kept in eval mode, so a frozen body stays frozen, running statistics included.
    """
    model.to(device)
    history = history or History()
    bar = tqdm(range(epochs), desc="epochs", disable=not progress)
    for _ in bar:
        start = time.perf_counter()
        train_loss, train_acc = train_one_epoch(model, train_loader, optimizer, device, loss_fn, progress)
        if scheduler is not None:
            scheduler.step()
        history.seconds.append(time.perf_counter() - start)
        history.train_loss.append(train_loss)
        history.train_acc.append(train_acc)
        postfix = {"loss": f"{train_loss:.3f}", "acc": f"{train_acc:.3f}"}
        if val_loader is not None:
            val_loss, val_acc = evaluate(model, val_loader, device, loss_fn)
            history.val_loss.append(val_loss)
            history.val_acc.append(val_acc)
            postfix["val_acc"] = f"{val_acc:.3f}"
        bar.set_postfix(postfix)
    return history
