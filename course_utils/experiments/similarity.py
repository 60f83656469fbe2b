"""How much do ImageNet features help, and which layer's, on data like ImageNet's and on data unlike it?

    course sweep --experiment similarity [--profile full] [--out FILE]

Two ten-class tasks, prepared the same way (64 px, the same numbers of training, validation and test images):

    photos    ten natural photographs bundled with scikit-image and scikit-learn, one class each; training and
              validation images are random crops of one half of each photo, test images crops of the other half
              (recognise a scene from a part of it never seen)
    fashion   Fashion-MNIST: grey product scans, far from ImageNet

For each task, each stage of mobilenet_v2 and each initialization (ImageNet weights, or random weights with
BatchNorm statistics recalibrated on the task's training images), the stage's output is averaged over space and
probed with the same linear classifier: standardised features, multinomial logistic regression, its
regularisation C chosen on validation. The transfer gain is pretrained minus random on the same probe, task and
number of examples.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from ..backbones import load_backbone, stage_names
from ..device import machine_record, seed_everything
from ..explore import stage_output_modules
from ..fashion import balanced_indices, load_fashion_mnist
from ..photos import bundled_photo, photo_crops
from ..preprocess import to_backbone_input
from ..training import recalibrate_batchnorm
from .results_file import ResultsFile

PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "china",
    "flower",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "camera",
)
TASKS = ("photos", "fashion")
INITS = ("pretrained", "random")
C_GRID = (0.01, 0.1, 1.0, 10.0)


@dataclass(frozen=True)
class SimilarityConfig:
    """Everything that decides the similarity numbers; stored in the results file."""

    image_size: int = 64
    sizes: tuple[int, ...] = (10, 100)  # training images per class
    val_per_class: int = 30
    test_per_class: int = 100
    seeds: int = 5

    def as_json(self) -> dict:
        """The configuration as plain JSON."""
        return {**asdict(self), "sizes": list(self.sizes)}


PROFILES = {
    "full": SimilarityConfig(),
    "quick": SimilarityConfig(image_size=32, sizes=(10,), val_per_class=10, test_per_class=20, seeds=1),
}


def half_photo(name: str, half: str):
    """The first or second half of a bundled photo (along its longer side): training crops and test crops never
    come from the same half."""
    photo = bundled_photo(name)
    w, h = photo.size
    if w >= h:
        box = (0, 0, w // 2, h) if half == "first" else (w // 2, 0, w, h)
    else:
        box = (0, 0, w, h // 2) if half == "first" else (0, h // 2, w, h)
    return photo.crop(box)


def half_photo_crops(count: int, size: int, half: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random crops per photo from its first or second half, as backbone input (photos.photo_crops)."""
    images, labels, _ = photo_crops({name: half_photo(name, half) for name in PHOTOS}, count, size, seed)
    return images, labels


def task_images(task: str, n_per_class: int, config: SimilarityConfig, seed: int) -> dict[str, tuple]:
    """{'train', 'val', 'test'}: (images as backbone input, labels) of one task, size and seed."""
    size = config.image_size
    if task == "photos":
        train = half_photo_crops(n_per_class + config.val_per_class, size, "first", seed)
        test = half_photo_crops(config.test_per_class, size, "second", seed + 500)
        per = n_per_class + config.val_per_class
        is_val = (torch.arange(len(train[1])) % per) >= n_per_class
        return {
            "train": (train[0][~is_val], train[1][~is_val]),
            "val": (train[0][is_val], train[1][is_val]),
            "test": test,
        }
    train_x, train_y = load_fashion_mnist(True)
    test_x, test_y = load_fashion_mnist(False)
    val_idx = balanced_indices(train_y, config.val_per_class, seed + 1000)
    train_idx = balanced_indices(train_y, n_per_class, seed, exclude=val_idx)
    test_idx = balanced_indices(test_y, config.test_per_class, seed + 2000)
    return {
        "train": (to_backbone_input(train_x[train_idx], size), train_y[train_idx]),
        "val": (to_backbone_input(train_x[val_idx], size), train_y[val_idx]),
        "test": (to_backbone_input(test_x[test_idx], size), test_y[test_idx]),
    }


@torch.no_grad()
def pooled_stage_features(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Each stage's output averaged over space (N x channels), for every stage but the head, in eval mode."""
    outputs: dict[str, list[torch.Tensor]] = {}
    hooks = [
        module.register_forward_hook(
            lambda _m, _i, out, name=name: outputs.setdefault(name, []).append(out.mean(dim=(2, 3)).cpu())
        )
        for name, module in stage_output_modules(model).items()
    ]
    try:
        model.eval()
        for batch in images.split(batch_size):
            model(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return {name: torch.cat(parts).numpy() for name, parts in outputs.items()}


def probe(train: tuple, val: tuple, test: tuple) -> tuple[float, float, float]:
    """(test accuracy, validation accuracy, C) of standardised logistic regression with C chosen on validation."""
    scaler = StandardScaler().fit(train[0])
    x_train, x_val, x_test = (scaler.transform(x) for x in (train[0], val[0], test[0]))
    best = None
    for c in C_GRID:
        fitted = LogisticRegression(C=c, max_iter=3000).fit(x_train, train[1])
        val_acc = fitted.score(x_val, val[1])
        if best is None or val_acc > best[0]:
            best = (val_acc, c, fitted)
    val_acc, c, fitted = best
    return float(fitted.score(x_test, test[1])), float(val_acc), c


def model_for(init: str, train_images: torch.Tensor, seed: int) -> nn.Module:
    """mobilenet_v2 with ImageNet weights, or random weights with BatchNorm statistics from the training images."""
    if init == "pretrained":
        return load_backbone("mobilenet_v2", fetch=False).eval()
    torch.manual_seed(seed)
    model = load_backbone("mobilenet_v2", pretrained=False)
    loader = [(batch, None) for batch in train_images.split(64)]
    recalibrate_batchnorm(model, loader, "cpu")
    return model.eval()


def run_similarity(config: SimilarityConfig, out: str | Path, command: str = "", note: str = "", log=print) -> dict:
    """Measure every (task, size, seed) not yet in ``out``; save after each; return the record."""
    config_json = {**config.as_json(), "photos": list(PHOTOS), "c_grid": list(C_GRID)}
    results = ResultsFile(out, config_json, lambda p: (p["task"], p["init"], p["stage"], p["n_per_class"], p["seed"]))
    results.start_run(command, machine_record(note, "cpu"))
    done = {(p["task"], p["n_per_class"], p["seed"]) for p in results.points}
    for n in config.sizes:
        for seed in range(config.seeds):
            for task in TASKS:
                if (task, n, seed) in done:
                    log(f"skip {task} n={n} seed={seed}")
                    continue
                start = time.perf_counter()
                seed_everything(seed)
                images = task_images(task, n, config, seed)
                new = []
                for init in INITS:
                    model = model_for(init, images["train"][0], seed)
                    feats = {split: pooled_stage_features(model, x) for split, (x, _) in images.items()}
                    for stage in stage_names(model)[:-1]:
                        test_acc, val_acc, c = probe(
                            *[(feats[s][stage], images[s][1].numpy()) for s in ("train", "val", "test")]
                        )
                        new.append(
                            {
                                "task": task,
                                "init": init,
                                "stage": stage,
                                "n_per_class": n,
                                "seed": seed,
                                "test_acc": round(test_acc, 4),
                                "val_acc": round(val_acc, 4),
                                "C": c,
                                "n_test": len(images["test"][1]),
                            }
                        )
                results.add(*new)  # a (task, size, seed) is saved whole or not at all
                last = [p for p in new if p["stage"] == "last_conv"]
                log(
                    f"done {task} n={n} seed={seed}: last stage "
                    + ", ".join(f"{p['init']} {p['test_acc']:.3f}" for p in last)
                    + f" ({time.perf_counter() - start:.0f} s)"
                )
    return results.record
