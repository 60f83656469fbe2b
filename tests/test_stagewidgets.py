"""Lesson 04's freeze-depth explorer on the real mobilenet_v2 and real Fashion-MNIST images."""

import torch
from torch.utils.data import DataLoader

from course_utils.backbones import load_backbone, replace_head
from course_utils.fashion import fashion_mnist_splits
from course_utils.stagewidgets import freeze_depth_explorer, rows_for_depth, seconds_per_epoch


def _model():
    model = load_backbone("mobilenet_v2", fetch=False)
    replace_head(model, 10)
    return model


def _loader():
    return DataLoader(fashion_mnist_splits(2, 0, 1, size=32)["train"], batch_size=10)


def test_rows_for_depth_counts_trainable_stages():
    model = _model()
    rows = {r["stage"]: r for r in rows_for_depth(model, "block7")}
    assert rows["block6"]["trainable"] == 0 and rows["block7"]["trainable"] == rows["block7"]["total"] > 0
    assert rows["all"]["trainable"] == sum(rows[s]["total"] for s in ("block7", "last_conv", "head"))
    assert rows_for_depth(model, "stem")[-1]["trainable"] == rows["all"]["total"]


def test_seconds_per_epoch_leaves_the_model_alone():
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    seconds = seconds_per_epoch(model, _loader(), "block5")
    assert seconds > 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_slider_updates_table_and_timings():
    box = freeze_depth_explorer(_model(), _loader())
    assert box.rows[-1]["trainable"] == box.rows[-2]["total"]  # only the head at first
    box.slider.value = "last_conv"
    assert set(box.seconds) == {"head", "last_conv"}
    trainable = {r["stage"]: r["trainable"] for r in box.rows}
    assert trainable["last_conv"] > 0 and trainable["block7"] == 0
