"""The training loop records what a hand-written loop computes; the plots draw the numbers they are given."""

from __future__ import annotations

import copy
import time

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils import plots
from course_utils.device import seed_everything
from course_utils.preprocess import IMAGENET_MEAN, IMAGENET_STD
from course_utils.timing import timed
from course_utils.training import History, evaluate, fit, predict


def separable_data(n=120):
    seed_everything(0)
    x = torch.randn(n, 4)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return TensorDataset(x, y)


def by_hand(model, data, epochs, lr, batch_size):
    """The same training written out: SGD on mean cross-entropy, batches in order; per-epoch numbers."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    x, y = data.tensors
    records = []
    for _ in range(epochs):
        losses, correct = [], 0
        for start in range(0, len(x), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            optimizer.zero_grad()
            logits = model(xb)
            loss = nn.functional.cross_entropy(logits, yb)
            loss.backward()
            optimizer.step()
            losses.append(loss.item() * len(yb))
            correct += (logits.argmax(1) == yb).sum().item()
        with torch.no_grad():
            logits = model(x)
            val_loss = nn.functional.cross_entropy(logits, y).item()
            val_acc = (logits.argmax(1) == y).sum().item() / len(y)
        records.append((sum(losses) / len(x), correct / len(x), val_loss, val_acc))
    return records


def test_fit_records_exactly_what_a_hand_written_loop_computes():
    data = separable_data()
    seed_everything(0)
    model = nn.Linear(4, 2)
    twin = copy.deepcopy(model)
    before = evaluate(model, DataLoader(data, batch_size=32), "cpu")[1]
    history = fit(
        model,
        DataLoader(data, batch_size=16),  # in order, so the hand-written loop sees the same batches
        torch.optim.SGD(model.parameters(), lr=0.5),
        epochs=5,
        frozen_bn_eval=False,
        val_loader=DataLoader(data, batch_size=32),
        progress=False,
    )
    expected = by_hand(twin, data, epochs=5, lr=0.5, batch_size=16)
    assert len(history.train_loss) == len(history.val_acc) == len(history.seconds) == 5
    for epoch, (train_loss, train_acc, val_loss, val_acc) in enumerate(expected):
        assert history.train_loss[epoch] == pytest.approx(train_loss, rel=1e-5), epoch
        assert history.train_acc[epoch] == pytest.approx(train_acc, abs=1e-9), epoch
        assert history.val_loss[epoch] == pytest.approx(val_loss, rel=1e-5), epoch
        assert history.val_acc[epoch] == pytest.approx(val_acc, abs=1e-9), epoch
    for mine, theirs in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(mine, theirs, atol=1e-6)  # the same weights at the end
    # And it learned: from a coin toss to nearly every example right, the loss more than halved.
    assert before < 0.75 and history.val_acc[-1] >= 0.95
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.last() == {
        "train_loss": history.train_loss[-1],
        "train_acc": history.train_acc[-1],
        "val_loss": history.val_loss[-1],
        "val_acc": history.val_acc[-1],
        "seconds": history.seconds[-1],
    }


def test_predict_gives_every_prediction_in_order():
    data = separable_data()
    seed_everything(1)
    model = nn.Linear(4, 2)
    preds, trues = predict(model, DataLoader(data, batch_size=32), "cpu")
    with torch.no_grad():
        assert torch.equal(preds, model(data.tensors[0]).argmax(1))
    assert torch.equal(trues, data.tensors[1])
    assert (preds == trues).float().mean().item() == pytest.approx(evaluate(model, DataLoader(data), "cpu")[1])


def test_learning_curves_draw_the_history_numbers():
    history = History(
        train_loss=[1, 0.5], train_acc=[0.5, 0.8], val_loss=[1.1, 0.7], val_acc=[0.4, 0.7], seconds=[1, 1]
    )
    ax = plots.plot_learning_curves({"run": history})
    train, val = ax.lines
    assert list(train.get_xdata()) == [1, 2] and list(train.get_ydata()) == [0.5, 0.8]
    assert list(val.get_ydata()) == [0.4, 0.7] and train.get_linestyle() == "--" and val.get_linestyle() == "-"
    assert train.get_color() == val.get_color() == plots.PALETTE[0] and ax.get_ylabel() == "accuracy"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["run train", "run val"]
    ax = plots.plot_learning_curves({"a": history, "b": History(train_loss=[2, 1, 0.5], train_acc=[0, 0, 0])}, "loss")
    assert [list(line.get_ydata()) for line in ax.lines] == [[1, 0.5], [1.1, 0.7], [2, 1, 0.5]]  # b: no val line
    assert ax.get_ylabel() == "loss"


OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"]


def test_the_palette_is_okabe_ito_and_matplotlib_uses_it():
    """Okabe & Ito's colour-blind-safe colours (their published hex values), and the default cycle after import."""
    assert list(plots.PALETTE) == OKABE_ITO
    assert matplotlib.rcParams["axes.prop_cycle"].by_key()["color"] == OKABE_ITO
    assert len(set(plots.MARKERS)) == len(plots.MARKERS) >= len(plots.SCENARIO_COLORS)
    assert set(plots.SCENARIO_COLORS.values()) <= set(OKABE_ITO)
    assert len(set(plots.SCENARIO_COLORS.values())) == len(set(plots.SCENARIO_MARKERS.values())) == 5


def series_looks(ax) -> list[tuple]:
    """(colour, marker, line style) of each series drawn on an axes, error-bar lines included once each."""
    return [(mcolors.to_hex(line.get_color()), line.get_marker(), line.get_linestyle()) for line in ax.lines]


def sweep_points() -> list[dict]:
    """Two seeds of every scenario at two sizes, and of two freeze depths and two probes: what the sweep writes."""
    points = []
    for seed in (0, 1):
        for n in (10, 30):
            for number, scenario in enumerate(("raw", "A", "B", "C", "scratch")):
                points.append({"scenario": scenario, "n_per_class": n, "seed": seed, "test_acc": 0.5 + number / 20})
            for number, stage in enumerate(("head", "block6", "stem")):
                points.append({"scenario": stage, "n_per_class": n, "seed": seed, "test_acc": 0.6 + number / 20})
    return points


def probe_points() -> list[dict]:
    return [
        {"task": "photos", "init": init, "n_per_class": 10, "stage": stage, "seed": seed, "test_acc": acc + seed / 100}
        for init, acc in (("pretrained", 0.8), ("random", 0.4))
        for stage in ("stem", "block3", "last_conv")
        for seed in (0, 1)
    ]


def test_every_plot_of_several_series_tells_them_apart_without_colour():
    """Each series has a marker or line style no other series of the plot has, and its colour is from the palette."""
    two_runs = {"a": {"train_acc": [0.5, 0.8], "val_acc": [0.4, 0.7]}, "b": {"train_acc": [0.3, 0.9]}}
    points = sweep_points()
    plots_drawn = {
        "learning curves": plots.plot_learning_curves(two_runs),
        "sweep": plots.plot_sweep([p for p in points if p["scenario"] in plots.SCENARIO_COLORS]),
        "freeze depth": plots.plot_freeze_depth([p for p in points if p["scenario"] in ("head", "block6", "stem")]),
        "similarity": np.atleast_1d(plots.plot_similarity(probe_points(), 10))[0],
    }
    for name, ax in plots_drawn.items():
        looks = [look for look in series_looks(ax) if look[1] not in ("None", "", " ", "_")]  # error-bar caps out
        assert len(looks) >= 2, (name, series_looks(ax))
        assert len({look[1:] for look in looks}) == len(looks), f"{name}: two series share marker and line style"
        assert {colour.upper() for colour, _, _ in looks} <= set(OKABE_ITO), name
        assert len(ax.get_legend().get_texts()) == len(looks), f"{name}: a legend names each series"
    plt.close("all")


def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 3, 200)
    pred = np.where(rng.random(200) < 0.7, true, rng.integers(0, 3, 200))
    pred[pred == 2] = 1  # class c is never predicted: its column is all zeros, still drawn
    counted = np.zeros((3, 3), dtype=int)
    np.add.at(counted, (true, pred), 1)  # the independent count
    ax = plots.plot_confusion_matrix(true, pred, ["a", "b", "c"])
    assert np.array_equal(ax.images[0].get_array(), counted)
    assert [t.get_text() for t in ax.texts] == [str(c) for c in counted.flatten()]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"] and ax.get_xlabel() == "predicted"
    assert ax.get_ylabel() == "true"
    assert plots.plot_confusion_matrix([0, 1], [1, 1], ["a", "b"]).texts[1].get_text() == "1"  # true a, pred b


def test_image_grid_titles_and_colours_say_right_and_wrong(capsys):
    fig = plots.show_image_grid([torch.zeros(3, 8, 8)] * 3, [0, 1, 0], [0, 0, 0], ["a", "b"], ncols=2)
    titled = [a for a in fig.axes if a.get_title()]
    assert [a.get_title() for a in titled] == ["true a\npred a", "true b\npred a", "true a\npred a"]
    colours = [mcolors.to_hex(a.title.get_color()) for a in titled]
    assert colours == ["#000000", plots.WRONG_COLOR.lower(), "#000000"]  # the wrong one in vermillion ...
    assert [a.title.get_fontweight() for a in titled] == ["normal", "bold", "normal"]  # ... and bold: not colour alone
    assert len(fig.axes) == 4 and not fig.axes[3].images  # 2 x 2 grid, the fourth cell left empty
    assert plots.show_image_grid([], [], [], ["a"]) is None and "no images" in capsys.readouterr().out


def test_to_displayable_undoes_the_imagenet_normalization():
    seed_everything(0)
    picture = torch.rand(3, 4, 5)  # an image in [0, 1], channels first
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    shown = plots.to_displayable((picture - mean) / std)
    assert shown.shape == (4, 5, 3) and np.allclose(shown, picture.permute(1, 2, 0).numpy(), atol=1e-6)
    assert np.allclose(plots.to_displayable(torch.zeros(3, 4, 4))[0, 0], IMAGENET_MEAN)
    assert plots.to_displayable(torch.full((3, 2, 2), 100.0)).max() == 1.0  # clipped for imshow


def test_timed_measures_wall_clock_and_cpu_time_apart(capsys):
    outside = time.perf_counter()
    with timed("nap", verbose=True) as watch:
        time.sleep(0.3)  # waiting: wall-clock time passes, hardly any CPU time
    outside = time.perf_counter() - outside  # the same nap, timed around the block: a busy machine slows both
    assert 0.3 <= watch.seconds <= outside and watch.cpu_seconds < 0.1 and watch.label == "nap"
    assert capsys.readouterr().out == f"nap: {watch.seconds:.2f} s\n"
    with timed() as busy:
        end = time.process_time() + 0.2
        while time.process_time() < end:  # working: CPU time passes too
            pass
    assert busy.cpu_seconds >= 0.2 and busy.seconds >= 0.2
    with pytest.raises(ZeroDivisionError), timed() as failed:
        time.sleep(0.05)
        1 / 0  # noqa: B018
    assert failed.seconds >= 0.05  # measured even when the block raised
