"""fit's explicit choices do what they say: frozen BatchNorm, early stopping with the best epoch, recalibration."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils.device import seed_everything
from course_utils.training import EarlyStopping, History, evaluate, fit, recalibrate_batchnorm, train_one_epoch


def bn_net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def data(n=64, shift=3.0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator) * 2 + shift
    return TensorDataset(x, (x[:, 0] > shift).long())


def test_frozen_bn_eval_is_the_callers_choice_and_does_what_it_says():
    for keep_eval, should_move in ((True, False), (False, True)):
        seed_everything(0)
        model = bn_net()
        for p in model[1].parameters():
            p.requires_grad = False  # the BatchNorm layer is frozen
        before = model[1].running_mean.clone()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        train_one_epoch(
            model, DataLoader(data(), batch_size=16), optimizer, "cpu", frozen_bn_eval=keep_eval, progress=False
        )
        assert (not torch.equal(model[1].running_mean, before)) is should_move
        assert model[1].num_batches_tracked.item() == (4 if should_move else 0)  # 64 examples, batches of 16
        assert model.training and model[1].training is should_move  # only the frozen BatchNorm in eval mode


def test_fit_needs_the_batchnorm_choice_written_out():
    model = nn.Linear(4, 2)
    with pytest.raises(TypeError, match="frozen_bn_eval"):
        fit(model, DataLoader(data()), torch.optim.SGD(model.parameters(), lr=0.1), 1, progress=False)


def early_stopped_run(epochs, **kwargs):
    """A linear model trained with a learning rate that makes validation accuracy jump around (seeded)."""
    seed_everything(0)
    train, val = data(64, seed=1), data(64, seed=2)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
    history = fit(
        model,
        DataLoader(train, batch_size=8, shuffle=True),
        optimizer,
        epochs,
        frozen_bn_eval=False,
        val_loader=DataLoader(val, batch_size=64),
        progress=False,
        **kwargs,
    )
    return model, history, DataLoader(val, batch_size=64)


def test_early_stopping_restores_the_best_epoch():
    model, history, val = early_stopped_run(30, patience=3, restore_best=True)
    assert history.stopped_early and len(history.val_acc) < 30
    assert history.best_epoch == 1 + max(range(len(history.val_acc)), key=history.val_acc.__getitem__)
    assert history.best_epoch < len(history.val_acc)  # the best epoch is not the last one: restoring matters
    assert len(history.val_acc) - history.best_epoch == 3  # stopped exactly `patience` epochs after the best
    assert evaluate(model, val, "cpu")[1] == max(history.val_acc)
    # The weights are the best epoch's, exactly: the same seeded run stopped there by hand ends with them.
    reference, _, _ = early_stopped_run(history.best_epoch)
    for restored, expected in zip(model.state_dict().values(), reference.state_dict().values(), strict=True):
        assert torch.equal(restored, expected)
    # Without restore_best the model keeps its last epoch's weights, which differ.
    last, _, _ = early_stopped_run(30, patience=3)
    assert not torch.equal(last.weight, model.weight)


def test_early_stopping_needs_validation():
    model = nn.Linear(4, 2)
    with pytest.raises(ValueError, match="pass val_loader"):
        fit(
            model,
            DataLoader(data()),
            torch.optim.SGD(model.parameters(), lr=0.1),
            1,
            frozen_bn_eval=False,
            patience=2,
            progress=False,
        )


def test_recalibration_replaces_stale_statistics_with_exact_ones():
    seed_everything(0)
    model = bn_net()
    x = data(256, shift=5.0).tensors[0]
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=32)
    # Fresh BatchNorm statistics (mean 0, variance 1) do not match inputs centred far from 0.
    assert recalibrate_batchnorm(model, loader, "cpu") == 1
    hidden = model[0](x).detach()
    assert torch.allclose(model[1].running_mean, hidden.mean(0), atol=1e-4)
    assert torch.allclose(model[1].running_var, hidden.var(0, unbiased=True), rtol=0.05)
    assert not model.training and model[1].momentum == 0.1  # eval mode, momentum restored


def test_recalibration_leaves_frozen_batchnorm_alone():
    model = bn_net()
    for p in model[1].parameters():
        p.requires_grad = False
    before = model[1].running_mean.clone()
    loader = DataLoader(TensorDataset(torch.randn(32, 4) + 5, torch.zeros(32, dtype=torch.long)), batch_size=8)
    assert recalibrate_batchnorm(model, loader, "cpu") == 0
    assert torch.equal(model[1].running_mean, before)


# ------------------------------------------------ a run made of several fit calls (lesson 05: warm-up, then more)
def two_call_run(first_epochs=5, second_epochs=4, **second_kwargs):
    """A run in two fit calls: 5 epochs that learn, then 4 on flipped labels that un-learn (validation drops)."""
    seed_everything(0)
    train, val = data(64, seed=1), data(64, seed=2)
    flipped = TensorDataset(train.tensors[0], 1 - train.tensors[1])
    val_loader = DataLoader(val, batch_size=64)
    model = nn.Linear(4, 2)

    def call(dataset, epochs, **kwargs):  # one fit call: a fresh SGD, batches of 8, measured on val_loader
        loader = DataLoader(dataset, batch_size=8)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        return fit(
            model, loader, optimizer, epochs, frozen_bn_eval=False, val_loader=val_loader, progress=False, **kwargs
        )

    history = call(train, first_epochs)
    if second_epochs:
        call(flipped, second_epochs, history=history, **second_kwargs)
    return model, history, val_loader


def test_a_continued_fit_reports_and_restores_the_best_epoch_of_the_whole_run():
    model, history, val = two_call_run(restore_best=True)
    assert len(history.val_acc) == 9
    best_first = max(history.val_acc[:5])
    assert max(history.val_acc[5:]) < best_first  # the second call never does better: the best is in the first
    assert history.best_epoch == 1 + history.val_acc.index(best_first) <= 5
    assert history.best_val_acc == best_first == history.early_stopping.best_acc
    assert evaluate(model, val, "cpu")[1] == best_first
    # The weights are those of that epoch of the first call: the same seeded run stopped there ends with them.
    reference, _, _ = two_call_run(first_epochs=history.best_epoch, second_epochs=0)
    for restored, expected in zip(model.state_dict().values(), reference.state_dict().values(), strict=True):
        assert torch.equal(restored, expected)


def test_patience_counts_the_epochs_since_the_best_across_calls():
    _, history, _ = two_call_run(second_epochs=10, patience=3)
    assert history.stopped_early and history.best_epoch <= 5  # the best epoch is in the first call
    assert len(history.val_acc) == history.best_epoch + 3  # 3 epochs after the best, wherever it was
    assert len(history.val_acc) < 5 + 10
    assert "early_stopping" not in history.as_dict() and history.as_dict()["best_epoch"] == history.best_epoch


def test_one_fit_of_n_epochs_equals_n_fits_of_one_epoch():
    """What the experiment protocol does (one epoch per call, one History): the same best epoch, stop and weights."""
    whole, history_whole, _ = early_stopped_run(30, patience=3, restore_best=True)
    seed_everything(0)
    train, val = data(64, seed=1), data(64, seed=2)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
    loader = DataLoader(train, batch_size=8, shuffle=True)
    history = History()
    for _ in range(30):
        fit(model, loader, optimizer, 1, frozen_bn_eval=False, val_loader=DataLoader(val, batch_size=64),
            patience=3, progress=False, history=history)  # fmt: skip
    assert history.val_acc == history_whole.val_acc  # after the stop, further calls train nothing
    assert (history.best_epoch, history.stopped_early) == (history_whole.best_epoch, True)
    history.early_stopping.restore(model)
    for restored, expected in zip(model.state_dict().values(), whole.state_dict().values(), strict=True):
        assert torch.equal(restored, expected)


def test_early_stopping_on_its_own():
    model = nn.Linear(2, 2)
    stopping = EarlyStopping(patience=2)
    assert stopping.update(0.5, model) and stopping.best_epoch == 1
    best = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        model.weight.add_(1.0)
    assert not stopping.update(0.5, model) and not stopping.exhausted()  # equal is not better
    assert not stopping.update(0.4, model) and stopping.exhausted()
    stopping.restore(model)
    assert torch.equal(model.weight, best["weight"]) and stopping.best_acc == 0.5
    with pytest.raises(ValueError, match="no weights were kept"):
        EarlyStopping(keep_state=False).restore(model)


def test_continuing_a_history_fit_did_not_write_is_refused():
    model = nn.Linear(4, 2)
    with pytest.raises(ValueError, match="continue only a History that fit wrote"):
        fit(model, DataLoader(data()), torch.optim.SGD(model.parameters(), lr=0.1), 1, frozen_bn_eval=False,
            val_loader=DataLoader(data()), progress=False, history=History(val_acc=[0.5]))  # fmt: skip
