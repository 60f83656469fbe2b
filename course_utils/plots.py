"""Plots: learning curves, confusion matrix, and a grid of images with predicted and true labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.metrics import confusion_matrix

from .preprocess import IMAGENET_MEAN, IMAGENET_STD


def plot_learning_curves(histories: Mapping[str, object], metric: str = "acc", ax=None):
    """One line per run (name -> History) for train (dashed) and val (solid) ``metric`` ('acc' or 'loss')."""
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    for name, history in histories.items():
        record = history.as_dict() if hasattr(history, "as_dict") else dict(history)
        epochs = np.arange(1, len(record[f"train_{metric}"]) + 1)
        (line,) = ax.plot(epochs, record[f"train_{metric}"], "--", label=f"{name} train")
        if record.get(f"val_{metric}"):
            ax.plot(epochs, record[f"val_{metric}"], "-", color=line.get_color(), label=f"{name} val")
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
    """Images with 'true / predicted' captions; wrong predictions in red."""
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
            ax.set_title(f"true {true}\npred {pred}", fontsize=9, color="black" if pred == true else "red")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
