"""The training loop learns and records history; the plots draw what they say."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils import plots
from course_utils.device import seed_everything
from course_utils.timing import timed
from course_utils.training import History, evaluate, fit, predict


def separable_data(n=120):
    seed_everything(0)
    x = torch.randn(n, 4)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return TensorDataset(x, y)


def test_fit_learns_and_records_history():
    data = separable_data()
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = DataLoader(data, batch_size=16, shuffle=True)
    before = evaluate(model, loader, "cpu")[1]
    history = fit(
        model,
        loader,
        optimizer,
        epochs=5,
        frozen_bn_eval=False,
        val_loader=DataLoader(data, batch_size=32),
        progress=False,
    )
    assert len(history.train_loss) == len(history.val_acc) == len(history.seconds) == 5
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.val_acc[-1] > 0.9 > before or history.val_acc[-1] > 0.9
    preds, trues = predict(model, DataLoader(data, batch_size=32), "cpu")
    assert preds.shape == trues.shape == (120,) and (preds == trues).float().mean() == history.val_acc[-1]
    assert set(history.last()) == {"train_loss", "train_acc", "val_loss", "val_acc", "seconds"}


def test_plots_draw():
    history = History(
        train_loss=[1, 0.5], train_acc=[0.5, 0.8], val_loss=[1.1, 0.7], val_acc=[0.4, 0.7], seconds=[1, 1]
    )
    ax = plots.plot_learning_curves({"run": history})
    assert len(ax.lines) == 2 and ax.get_ylabel() == "accuracy"
    ax = plots.plot_confusion_matrix([0, 1], [1, 1], ["a", "b"])
    assert [t.get_text() for t in ax.texts] == ["0", "1", "0", "1"]
    fig = plots.show_image_grid([torch.zeros(3, 8, 8)] * 3, [0, 1, 0], [0, 0, 0], ["a", "b"], ncols=2)
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert titles == ["true a\npred a", "true b\npred a", "true a\npred a"]
    shown = plots.to_displayable(torch.zeros(3, 4, 4))
    assert shown.shape == (4, 4, 3) and np.allclose(shown[0, 0], [0.485, 0.456, 0.406])


def test_timed_measures():
    with timed("x") as t:
        sum(range(10000))
    assert t.seconds > 0
