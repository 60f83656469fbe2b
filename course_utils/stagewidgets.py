"""Lesson 04's freeze-depth explorer: choose the first trainable stage, see parameters and seconds per epoch.

The logic (which parameters a freeze depth trains, how long one epoch takes) is in plain functions tested
without a browser; the widget only wires them to a slider, a table and a bar chart.
"""

from __future__ import annotations

import copy

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .backbones import format_parameter_rows, freeze_all, parameter_report, stage_names, unfreeze_from
from .timing import timed
from .training import train_one_epoch


def rows_for_depth(model: nn.Module, first_trainable: str) -> list[dict]:
    """parameter_report after freezing everything before ``first_trainable`` (the model is changed in place)."""
    freeze_all(model)
    unfreeze_from(model, first_trainable)
    return parameter_report(model)


def seconds_per_epoch(
    model: nn.Module, loader: DataLoader, first_trainable: str, lr: float = 1e-3, device: str = "cpu"
) -> float:
    """Measured wall-clock seconds of one training epoch with stages from ``first_trainable`` on trainable.

    Trains a copy, so ``model`` itself is not changed.
    """
    trial = copy.deepcopy(model)
    rows_for_depth(trial, first_trainable)
    optimizer = torch.optim.Adam([p for p in trial.parameters() if p.requires_grad], lr=lr)
    with timed() as watch:
        train_one_epoch(trial, loader, optimizer, device, frozen_bn_eval=True, progress=False)
    return watch.seconds


def plot_stage_parameters(rows: list[dict], ax=None, title: str = ""):
    """Bars of total (light) and trainable (dark) parameters per stage, log scale."""
    ax = ax or plt.subplots(figsize=(8, 3.5))[1]
    stage_rows = [r for r in rows if r["stage"] != "all"]
    x = np.arange(len(stage_rows))
    ax.bar(x, [r["total"] for r in stage_rows], color="#c6dbef", label="total")
    ax.bar(x, [max(r["trainable"], 0) for r in stage_rows], color="#08519c", width=0.5, label="trainable")
    ax.set_xticks(x, [r["stage"] for r in stage_rows], rotation=30)
    ax.set_yscale("log")
    ax.set_ylabel("parameters")
    ax.legend(loc="upper left")
    if title:
        ax.set_title(title)
    return ax


def freeze_depth_explorer(model: nn.Module, loader: DataLoader, lr: float = 1e-3, device: str = "cpu"):
    """A slider over stages (the first trainable one) that updates the table, the bar chart and the measured
    seconds per epoch. Returns the widget box; ``box.slider`` is the slider, ``box.seconds`` maps stage ->
    measured seconds, ``box.rows`` holds the current report."""
    import ipywidgets as widgets

    names = stage_names(model)
    slider = widgets.SelectionSlider(
        options=names,
        value="head",
        description="train from",
        continuous_update=False,
        style={"description_width": "initial"},
    )
    output = widgets.Output()
    box = widgets.VBox([slider, output])
    box.slider, box.output, box.seconds, box.rows = slider, output, {}, []

    def redraw(*_):
        stage = slider.value
        box.rows = rows_for_depth(model, stage)
        if stage not in box.seconds:
            box.seconds[stage] = seconds_per_epoch(model, loader, stage, lr, device)
        total = box.rows[-1]
        output.clear_output(wait=True)
        with output:
            print(format_parameter_rows(box.rows))
            print(
                f"\ntrainable: {total['trainable']:,} of {total['total']:,} "
                f"({100 * total['trainable'] / total['total']:.1f}%); one epoch of {len(loader.dataset)} images: "
                f"{box.seconds[stage]:.2f} s (measured)"
            )
            plot_stage_parameters(box.rows, title=f"trainable from {stage}")
            plt.show()

    slider.observe(redraw, names="value")
    redraw()
    return box
