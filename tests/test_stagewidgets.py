"""Lesson 04's freeze-depth explorer on the real mobilenet_v2 and real Fashion-MNIST images."""

import time

import matplotlib

matplotlib.use("Agg")

import torch
from torch.utils.data import DataLoader

from course_utils.backbones import load_backbone, replace_head
from course_utils.fashion import fashion_mnist_splits
from course_utils.stagewidgets import freeze_depth_explorer, rows_for_depth, seconds_per_epoch

# torchvision's mobilenet_v2 with a 10-class head, per stage (architecture facts, independent of the code)
BLOCK7, LAST_CONV, HEAD, ALL = 473_920, 412_160, 1280 * 10 + 10, 3_504_872 - 1_281_000 + 12_810


def _model():
    model = load_backbone("mobilenet_v2", fetch=False)
    replace_head(model, 10)
    return model


def _loader():
    return DataLoader(fashion_mnist_splits(2, 0, 1, size=32)["train"], batch_size=10)


def test_rows_for_depth_counts_trainable_stages_and_freezes_the_model_in_place():
    model = _model()
    rows = {r["stage"]: r for r in rows_for_depth(model, "block7")}
    assert rows["block6"]["trainable"] == 0 and rows["block7"]["trainable"] == rows["block7"]["total"] == BLOCK7
    assert rows["all"]["trainable"] == BLOCK7 + LAST_CONV + HEAD and rows["all"]["total"] == ALL
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == BLOCK7 + LAST_CONV + HEAD
    assert not any(p.requires_grad for p in model.features[:17].parameters())  # features[17] is block7
    assert rows_for_depth(model, "stem")[-1]["trainable"] == ALL  # everything, once the slider is at the start
    assert rows_for_depth(model, "head")[-1]["trainable"] == HEAD  # and back: only the head


def test_seconds_per_epoch_measures_one_epoch_and_leaves_the_model_alone():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    start = time.perf_counter()
    seconds = seconds_per_epoch(model, _loader(), "block5")
    elapsed = time.perf_counter() - start
    assert 0 < seconds <= elapsed  # the epoch alone, inside the call's own time
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # BatchNorm statistics too
    assert [p.requires_grad for p in model.parameters()] == flags


def test_slider_updates_table_and_timings(capsys):
    box = freeze_depth_explorer(_model(), _loader())
    assert box.rows[-1]["trainable"] == box.rows[-2]["total"] == HEAD  # only the head at first
    assert f"trainable: {HEAD:,} of {ALL:,} (0.6%)" in capsys.readouterr().out
    box.slider.value = "last_conv"
    assert set(box.seconds) == {"head", "last_conv"}
    trainable = {r["stage"]: r["trainable"] for r in box.rows}
    assert trainable["last_conv"] == LAST_CONV and trainable["block7"] == 0
    shown = capsys.readouterr().out
    assert f"trainable: {LAST_CONV + HEAD:,} of {ALL:,} (19.0%)" in shown
    assert f"one epoch of 20 images: {box.seconds['last_conv']:.2f} s (measured)" in shown
    box.slider.value = "head"  # back: the table follows, the time measured before is reused
    assert box.rows[-1]["trainable"] == HEAD and set(box.seconds) == {"head", "last_conv"}
