"""Exercise 2 (cache the features once, train the head many times): the judge's tasks for its five graded cells.

The exports call the student's ``write_feature_cache``, ``read_feature_cache`` and ``train_head_from_cache`` on
Fashion-MNIST images and budgets chosen here (classes, seeds, epochs and learning rate written in this file,
never read from the notebook), and export what came back: the features and labels read from the cache files,
the body's state after writing, the trained heads' state dicts. Scoring rebuilds the same images, computes f(x)
itself with its own frozen pretrained mobilenet_v2, compares, and measures the heads in its own ``nn.Linear``
and on its own full model on held-out images the student's process never received, against a reference head it
trains itself with the same budget.
"""

from __future__ import annotations

import torch

from .common import (
    ON_THE_CPU,
    checked_state,
    differing,
    entry,
    fashion,
    fashion_features,
    guarded,
    judged_task,
    linear_from_state,
    listed,
    loss_and_accuracy,
    pretrained_state,
    reference_head_scores,
    reference_model,
    require,
    tensor,
)

CLASSES = (2, 3, 7, 9)  # Fashion-MNIST: Pullover, Dress, Sneaker, Ankle boot (not the notebook's classes)
IMAGE_SIZE = 32
CACHE_DATA = (CLASSES, 6, 4, IMAGE_SIZE, 101)  # fashion(...) arguments of the cached images: 24 train, 16 test
HEAD_DATA = (CLASSES, 20, 60, IMAGE_SIZE, 202)  # 80 training images; the judge's 240 held-out ones stay here
EPOCHS, LR = 100, 0.01  # the budget of every head, the student's and the reference's
ATOL = 1e-4  # how far a cached feature may be from the judge's f(x)

WHERE_ROUND_TRIP = (
    "write_feature_cache and read_feature_cache: save every image's features and its label, in the dataset's order"
)
WHERE_F_OF_X = (
    "write_feature_cache: call model.eval() and use torch.no_grad(); compute body_features(model, images) "
    "with no augmentation"
)
WHERE_HEAD_SHAPE = "train_head_from_cache: return nn.Linear(features.shape[1], num_classes) after training it"
WHERE_HEAD_ACCURACY = (
    "train_head_from_cache: minimise the cross-entropy of head(features) and labels with Adam at lr, one step on "
    "the whole cached set per epoch, for every epoch; a loop that stops early is caught by its loss"
)
WHERE_CACHE_TO_MODEL = (
    "all three functions: the cache must hold exactly f(x) of the frozen body, and the head must be trained on it"
)

# -------------------------------------------------------------------------- code run in the student's kernel
_HELPERS = f"""
import torch as _torch
from torch import nn as _nn

{ON_THE_CPU}

def _judge_splits(n_train, n_test, seed):
    from course_utils.fashion import fashion_mnist_splits
    return fashion_mnist_splits(n_train=n_train, n_test=n_test, size={IMAGE_SIZE}, classes={list(CLASSES)!r}, seed=seed)


def _judge_backbone():
    from course_utils.backbones import freeze_all, load_backbone
    return freeze_all(load_backbone("mobilenet_v2"))


def _judge_tensor(value):
    return _torch.as_tensor(value).detach().cpu().clone().as_subclass(_torch.Tensor)


def _judge_head(head):
    if not isinstance(head, _nn.Module):
        raise TypeError(f"train_head_from_cache returned a {{type(head).__name__}}, not an nn.Linear")
    state = {{k: _judge_tensor(v) for k, v in _nn.Module.state_dict(head).items()}}
    return {{"kind": type(head).__name__, "state": state}}
"""

EXPORT_ROUND_TRIP = _HELPERS + guarded(
    f"""
import shutil, tempfile
from pathlib import Path
folder = Path(tempfile.mkdtemp(prefix="judge_ex2_"))
splits = _judge_splits({CACHE_DATA[1]}, {CACHE_DATA[2]}, {CACHE_DATA[4]})
model = _judge_backbone().eval()
first = write_feature_cache(model, splits["train"], folder / "new_folder" / "nested" / "train.pt")
second = write_feature_cache(model, splits["test"], folder / "test.pt")
files = Path(first).is_file() and Path(second).is_file()
shutil.copyfile(first, folder / "moved.pt")  # read back from another place: the data must come from the file
Path(first).unlink()
train, test = read_feature_cache(folder / "moved.pt"), read_feature_cache(second)
shutil.rmtree(folder, ignore_errors=True)
return {{"files": bool(files), "train": [_judge_tensor(v) for v in train], "test": [_judge_tensor(v) for v in test]}}
""",
    "_judge_ex2_round_trip",
)
EXPORT_F_OF_X = _HELPERS + guarded(
    f"""
import shutil, tempfile
from pathlib import Path
folder = Path(tempfile.mkdtemp(prefix="judge_ex2_"))
splits = _judge_splits({CACHE_DATA[1]}, {CACHE_DATA[2]}, {CACHE_DATA[4]})
model = _judge_backbone().train()  # handed over in train mode on purpose
write_feature_cache(model, splits["train"], folder / "again.pt")
features, _ = read_feature_cache(folder / "again.pt")
shutil.rmtree(folder, ignore_errors=True)
state = {{k: _judge_tensor(v) for k, v in _nn.Module.state_dict(model).items()}}
return {{"features": _judge_tensor(features), "state": state}}
""",
    "_judge_ex2_f_of_x",
)
EXPORT_HEAD_SHAPE = _HELPERS + guarded(
    """
generator = _torch.Generator().manual_seed(5)
out = {}
for key, width, classes, epochs in [("wide", 1280, 4, 1), ("narrow", 64, 3, 2)]:
    features, labels = _torch.randn(12, width, generator=generator), _torch.arange(12) % classes
    out[key] = _judge_head(train_head_from_cache(features, labels, num_classes=classes, epochs=epochs))
return out
""",
    "_judge_ex2_head_shape",
)
EXPORT_HEAD_ACCURACY = _HELPERS + guarded(
    f"""
from course_utils.features import extract_features
features, labels = extract_features(_judge_backbone(), _judge_splits({HEAD_DATA[1]}, 1, {HEAD_DATA[4]})["train"],
                                    progress=False)
return _judge_head(train_head_from_cache(features, labels, num_classes={len(CLASSES)}, epochs={EPOCHS}, lr={LR}))
""",
    "_judge_ex2_head_accuracy",
)
EXPORT_CACHE_TO_MODEL = _HELPERS + guarded(
    f"""
import shutil, tempfile
from pathlib import Path
folder = Path(tempfile.mkdtemp(prefix="judge_ex2_"))
splits = _judge_splits({HEAD_DATA[1]}, 1, {HEAD_DATA[4]})
path = write_feature_cache(_judge_backbone().eval(), splits["train"], folder / "final_train.pt")
head = train_head_from_cache(*read_feature_cache(path), num_classes={len(CLASSES)}, epochs={EPOCHS}, lr={LR})
shutil.rmtree(folder, ignore_errors=True)
return _judge_head(head)
""",
    "_judge_ex2_cache_to_model",
)


# ------------------------------------------------------------------------------------- the judge's side
def _same_as_f_of_x(pair, part: str, what: str) -> None:
    """The exported (features, labels) are f(x) and the labels of the judge's own images of ``part``, in order."""
    require(isinstance(pair, (list, tuple)) and len(pair) == 2, f"{what}: read_feature_cache should return 2 values")
    expected, labels = fashion_features(*CACHE_DATA)[part]
    count = len(labels)
    features = tensor(pair[0], f"{what}: the cached features", (count, expected.shape[1]))
    got = tensor(pair[1], f"{what}: the cached labels", (count,), floating=False)
    require(
        torch.equal(got, labels),
        f"{what}: the cached labels are not the dataset's labels in the dataset's order (did you shuffle?)",
    )
    rows = torch.nonzero((features - expected).abs().amax(1) > ATOL).flatten().tolist()
    require(
        not rows,
        f"{what}: the cached features of {len(rows)} of {count} images are not f(x) of the dataset's image at that "
        f"position (first: row {rows[0] if rows else 0}, off by {(features - expected).abs().max():.3g})",
    )


def _check_round_trip(data: dict) -> str:
    require(entry(data, "files", "file check") is True, "write_feature_cache wrote no file at the path it returned")
    _same_as_f_of_x(entry(data, "train", "training cache"), "train", "a cache written, copied and read back")
    _same_as_f_of_x(entry(data, "test", "test cache"), "test", "a second cache")
    return "ok: each cache file gives back every image's f(x) and label, in the dataset's order"


def _check_f_of_x(data: dict) -> str:
    reference = pretrained_state()
    state = checked_state(entry(data, "state", "body's state"), reference, "the body after writing the cache")
    moved = differing(state, reference, reference)
    stats = {name for name in moved if "running_" in name or name.endswith("num_batches_tracked")}
    require(not moved - stats, f"writing the cache changed {len(moved - stats)} weights, e.g. {listed(moved - stats)}")
    require(
        not stats,
        f"writing the cache changed BatchNorm running statistics in {len(stats)} buffers, e.g. {listed(stats)}: "
        "the body ran in train mode",
    )
    expected = fashion_features(*CACHE_DATA)["train"][0]
    features = tensor(entry(data, "features", "cached features"), "the cached features", tuple(expected.shape))
    off = (features - expected).abs().amax(1)
    require(
        bool((off <= ATOL).all()),
        f"the cached features of {int((off > ATOL).sum())} of {len(off)} images differ from f(x) by up to "
        f"{off.max():.3g} (allowed {ATOL:g}); the body was handed over in train mode",
    )
    return "ok: the cache holds f(x), and writing it left the body untouched"


def _check_head_shape(data: dict) -> str:
    for key, width, classes in [("wide", 1280, 4), ("narrow", 64, 3)]:
        head = entry(data, key, f"head for {width}-wide features")
        kind = entry(head, "kind", "head's type")
        what = f"the head trained on {width}-wide features for {classes} classes (a {str(kind)[:40]})"
        linear_from_state(entry(head, "state", "head's state"), width, classes, what)
    return "ok: a Linear head that follows the features' width and num_classes"


def _scored_head(data: dict, what: str):
    """The exported head in the judge's own nn.Linear, and the reference's held-out (loss, accuracy)."""
    head = linear_from_state(entry(data, "state", "head's state"), 1280, len(CLASSES), what)
    return head, reference_head_scores(HEAD_DATA, EPOCHS, LR)


def _check_head_accuracy(data: dict) -> str:
    head, (ref_loss, ref_accuracy) = _scored_head(data, "the trained head")
    features, labels = fashion_features(*HEAD_DATA)["test"]
    loss, accuracy = loss_and_accuracy(head, features, labels)
    summary = f"held-out loss {loss:.3f} and accuracy {accuracy:.3f}; the reference loop: {ref_loss:.3f} and "
    summary += f"{ref_accuracy:.3f} ({len(labels)} images, {len(CLASSES)} classes, {EPOCHS} epochs at lr {LR})"
    require(loss <= max(1.5 * ref_loss, ref_loss + 0.1), f"{summary}: the loss is far above the reference's")
    require(accuracy > ref_accuracy - 0.05, f"{summary}: the accuracy is below the floor of {ref_accuracy - 0.05:.2f}")
    return f"ok: {summary}"


def _check_cache_to_model(data: dict) -> str:
    head, (_, ref_accuracy) = _scored_head(data, "the head trained from your cache")
    model = reference_model("mobilenet_v2", len(CLASSES), pretrained=True)
    model.classifier[-1] = head  # the head from the cache on top of the judge's own pretrained body
    images, labels = fashion(*HEAD_DATA)["test"]
    _, accuracy = loss_and_accuracy(model, images, labels)
    summary = f"held-out accuracy of the full model {accuracy:.3f} (the reference loop's head: {ref_accuracy:.3f}, "
    summary += f"{len(labels)} images)"
    require(accuracy > ref_accuracy - 0.05, f"{summary} is below the floor of {ref_accuracy - 0.05:.2f}")
    return f"ok: {summary}"


TASKS = [
    judged_task("ex2_cache_round_trip", EXPORT_ROUND_TRIP, WHERE_ROUND_TRIP, _check_round_trip),
    judged_task("ex2_cache_is_f_of_x", EXPORT_F_OF_X, WHERE_F_OF_X, _check_f_of_x),
    judged_task("ex2_head_shape", EXPORT_HEAD_SHAPE, WHERE_HEAD_SHAPE, _check_head_shape),
    judged_task("ex2_head_accuracy", EXPORT_HEAD_ACCURACY, WHERE_HEAD_ACCURACY, _check_head_accuracy),
    judged_task("ex2_cache_to_model", EXPORT_CACHE_TO_MODEL, WHERE_CACHE_TO_MODEL, _check_cache_to_model),
]
