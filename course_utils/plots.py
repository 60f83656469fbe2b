"""Plots: learning curves, confusion matrix, a grid of images with predicted and true labels, top patches.

Colours come from the Okabe-Ito palette (``PALETTE``), which stays distinguishable with every common form of colour
blindness, and no plot tells series apart by colour alone: each series also has its own marker (``MARKERS``) or line
style, and a legend or a direct label names it. Importing this module makes the palette matplotlib's default
colour cycle, so a lesson's own ``plt.plot`` calls use it too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch
from cycler import cycler
from sklearn.metrics import confusion_matrix

from .preprocess import IMAGENET_MEAN, IMAGENET_STD

# Okabe & Ito (2008), "Color Universal Design": blue, orange, bluish green, vermillion, reddish purple, sky blue,
# black, yellow (last: too light for thin lines on white).
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
PALETTE = OKABE_ITO
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
WRONG_COLOR = "#D55E00"  # vermillion: a wrong prediction's caption (also in bold, not told by colour alone)
mpl.rcParams["axes.prop_cycle"] = cycler(color=PALETTE)


def series_style(number: int) -> dict:
    """The colour and marker of the series numbered ``number`` (0, 1, ...) in a plot that draws several."""
    return {"color": PALETTE[number % len(PALETTE)], "marker": MARKERS[number % len(MARKERS)]}


def plot_learning_curves(histories: Mapping[str, object], metric: str = "acc", ax=None):
    """One line per run (name -> History) for train (dashed) and val (solid) ``metric`` ('acc' or 'loss').

    Each run has its own colour and marker; train and val differ by line style."""
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    for number, (name, history) in enumerate(histories.items()):
        record = history.as_dict() if hasattr(history, "as_dict") else dict(history)
        epochs = np.arange(1, len(record[f"train_{metric}"]) + 1)
        style = series_style(number)
        ax.plot(epochs, record[f"train_{metric}"], linestyle="--", fillstyle="none", label=f"{name} train", **style)
        if record.get(f"val_{metric}"):
            ax.plot(epochs, record[f"val_{metric}"], linestyle="-", label=f"{name} val", **style)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy" if metric == "acc" else "loss")
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def plot_confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str], ax=None):
    """The confusion matrix as a heat map with counts written in the cells."""
    matrix = confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=list(range(len(class_names))))
    ax = ax or plt.subplots(figsize=(1.2 * len(class_names) + 2, 1.2 * len(class_names) + 1))[1]
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
    return ax


def to_displayable(image: torch.Tensor) -> np.ndarray:
    """A normalized C x H x W tensor back to an H x W x 3 array in [0, 1] for imshow."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image.detach().cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()


def show_image_grid(
    images: Sequence[torch.Tensor],
    true_labels: Sequence[int],
    pred_labels: Sequence[int] | None,
    class_names: Sequence[str],
    ncols: int = 6,
    title: str = "",
):
    """Images with 'true / predicted' captions; wrong predictions in bold vermillion (``WRONG_COLOR``)."""
    n = len(images)
    if n == 0:
        print("(no images to show)")
        return None
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2 * ncols, 2.2 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k in range(n):
        ax = axes.flat[k]
        ax.imshow(to_displayable(images[k]))
        true = class_names[int(true_labels[k])]
        if pred_labels is None:
            ax.set_title(true, fontsize=9)
        else:
            pred = class_names[int(pred_labels[k])]
            right = pred == true
            ax.set_title(
                f"true {true}\npred {pred}",
                fontsize=9,
                color="black" if right else WRONG_COLOR,
                fontweight="normal" if right else "bold",
            )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


SCENARIO_COLORS = {"raw": PALETTE[4], "A": PALETTE[0], "B": PALETTE[2], "C": PALETTE[3], "scratch": PALETTE[6]}
SCENARIO_MARKERS = {"raw": "v", "A": "o", "B": "s", "C": "^", "scratch": "D"}


def plot_sweep(points: list[dict], ax=None, value: str = "test_acc", ylabel: str = "test accuracy"):
    """Mean over seeds of each scenario against training images per class (log scale), error bars = 1 sd."""
    from .measurements import SCENARIO_LABELS, SCENARIOS, summarize, train_per_class

    ax = ax or plt.subplots(figsize=(7, 4.5))[1]
    stats, x_of = summarize(points, ("scenario", "n_per_class"), value), train_per_class(points)
    for scenario in SCENARIOS:
        ns = sorted(n for s, n in stats if s == scenario)
        if not ns:
            continue
        means = [stats[(scenario, n)].mean for n in ns]
        spread = [stats[(scenario, n)].sd if stats[(scenario, n)].seeds > 1 else 0.0 for n in ns]  # 1 seed: no bar
        ax.errorbar(
            [x_of[n] for n in ns],
            means,
            yerr=spread,
            marker=SCENARIO_MARKERS[scenario],
            capsize=3,
            color=SCENARIO_COLORS[scenario],
            label=SCENARIO_LABELS[scenario],
        )
    ax.set_xscale("log")
    ax.set_xlabel("training images per class")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_freeze_depth(points: list[dict], ax=None):
    """Test accuracy against the first trainable stage, one line per dataset size (error bars = 1 sd over seeds)."""
    from .measurements import FREEZE_DEPTHS, freeze_depth_table, train_per_class

    ax = ax or plt.subplots(figsize=(8, 4))[1]
    x_of = train_per_class(points)
    for number, (n, row) in enumerate(freeze_depth_table(points).items()):
        stages = [s for s in FREEZE_DEPTHS if s in row]
        ax.errorbar(
            [FREEZE_DEPTHS.index(s) for s in stages],
            [row[s].mean for s in stages],
            yerr=[row[s].sd if row[s].seeds > 1 else 0.0 for s in stages],
            capsize=3,
            **series_style(number),
            label=f"{x_of[n]:,} per class",
        )
    ax.set_xticks(
        range(len(FREEZE_DEPTHS)),
        [("head (A)" if s == "head" else "stem (C)" if s == "stem" else s) for s in FREEZE_DEPTHS],
        rotation=30,
    )
    ax.set_xlabel("first trainable stage (everything before it frozen)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_similarity(points: list[dict], n_per_class: int, axes=None):
    """Probe accuracy of each stage's features, ImageNet vs random weights, on natural photos and Fashion-MNIST."""
    from .measurements import similarity_table

    table = similarity_table(points)
    tasks = [t for t in ("photos", "fashion") if (t, "pretrained", n_per_class) in table]
    axes = axes if axes is not None else plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 3.8), sharey=True)[1]
    for ax, task in zip(np.atleast_1d(axes), tasks, strict=False):
        for number, (init, style) in enumerate((("pretrained", "-"), ("random", "--"))):
            row = table.get((task, init, n_per_class), {})
            stages = list(row)
            ax.errorbar(
                range(len(stages)),
                [row[s].mean for s in stages],
                yerr=[row[s].sd for s in stages],
                linestyle=style,
                capsize=3,
                **series_style(number),
                label=f"{init} weights",
            )
            ax.set_xticks(range(len(stages)), stages, rotation=30)
        ax.set_title(f"{'natural photos' if task == 'photos' else 'Fashion-MNIST'}, {n_per_class} per class")
        ax.set_xlabel("stage whose (averaged) output is probed")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("linear probe test accuracy")
    return axes


def plot_top_patches(found: Mapping[str, Sequence[dict]], title: str = ""):
    """The top-k patches of each channel (one row per channel), one block of columns per model.

    ``found`` maps a model's label (e.g. 'ImageNet weights', 'random weights') to a list of results of
    course_utils.patches.top_patches, one per stage, in the same order for every model. Patches are drawn in
    their own colours at one size; each row is labelled with its stage, channel and receptive field."""
    labels = list(found)
    layout = [[(r["stage"], list(r["channels"])) for r in results] for results in found.values()]
    if any(other != layout[0] for other in layout):
        raise ValueError(f"every model needs the same stages and channels, in the same order; got {layout}")
    rows = [(r["stage"], c, i, r) for r in found[labels[0]] for i, c in enumerate(r["channels"])]
    k = found[labels[0]][0]["patches"].shape[1]
    ncols = len(labels) * (k + 1) - 1  # a narrow empty column between the models
    widths = ([1] * k + [0.3]) * (len(labels) - 1) + [1] * k
    width, height = 0.85 * sum(widths) + 1.3, 0.9 * len(rows) + 0.9
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(width, height), squeeze=False, gridspec_kw={"width_ratios": widths}
    )
    # Margins in inches (room for the row labels, the title and the models' names), not tight_layout, which
    # cannot see the row labels drawn beside the first column.
    fig.subplots_adjust(
        left=1.3 / width, right=1 - 0.1 / width, bottom=0.1 / height, top=1 - 0.75 / height, wspace=0.1, hspace=0.15
    )
    for ax in axes.flat:
        ax.axis("off")
    for m, label in enumerate(labels):
        axes[0, m * (k + 1)].set_title(label, fontsize=9, loc="left")
        results = {r["stage"]: r for r in found[label]}
        for row, (stage, _, i, _) in enumerate(rows):
            result = results[stage]
            for j in range(k):
                axes[row, m * (k + 1) + j].imshow(to_displayable(result["patches"][i, j]))
    for row, (stage, channel, _, result) in enumerate(rows):
        p = result["patch_size"]
        axes[row, 0].text(
            -0.15,
            0.5,
            f"{stage} ch {channel}\n{p}x{p} px",
            transform=axes[row, 0].transAxes,
            ha="right",
            va="center",
            fontsize=8,
        )
    fig.suptitle(title or f"The {k} image patches that activate each channel most", fontsize=10, y=1 - 0.2 / height)
    return fig
