"""Fashion-MNIST as tensors: all 70,000 images in memory, balanced seeded subsets, and a Dataset that
turns them into backbone input on the fly."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .fashion_files import check_fashion_mnist, fashion_mnist_raw_dir
from .paths import DataError
from .preprocess import grey_probe, output_sha256, to_backbone_input

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def load_fashion_mnist(train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """All images (uint8, N x 28 x 28) and labels (int64) of one split (read once, then kept in memory)."""
    return _load_fashion_mnist(fashion_mnist_raw_dir(), train)


@lru_cache(maxsize=4)
def _load_fashion_mnist(raw_dir: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    problems = check_fashion_mnist(raw_dir, full_hash=False)
    if problems:
        raise DataError(
            "Fashion-MNIST is not ready: " + "; ".join(problems) + ". Run `course fetch data` (or `make lab`)."
        )
    prefix = "train" if train else "t10k"
    images = np.fromfile(raw_dir / f"{prefix}-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    labels = np.fromfile(raw_dir / f"{prefix}-labels-idx1-ubyte", dtype=np.uint8, offset=8).astype(np.int64)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels)


def balanced_indices(
    labels: torch.Tensor,
    n_per_class: int,
    seed: int = 0,
    classes: list[int] | None = None,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Seeded indices with exactly ``n_per_class`` examples of each class (sorted by class, then shuffled)."""
    generator = torch.Generator().manual_seed(seed)
    allowed = torch.ones(len(labels), dtype=torch.bool)
    if exclude is not None and len(exclude):
        allowed[exclude] = False
    chosen = []
    for cls in classes if classes is not None else sorted(set(labels.tolist())):
        pool = torch.nonzero((labels == cls) & allowed).flatten()
        if len(pool) < n_per_class:
            raise ValueError(f"class {cls} has only {len(pool)} examples left; asked for {n_per_class}")
        chosen.append(pool[torch.randperm(len(pool), generator=generator)[:n_per_class]])
    out = torch.cat(chosen)
    return out[torch.randperm(len(out), generator=generator)]


class TensorImages(Dataset):
    """Grayscale uint8 images turned into backbone input on the fly, with integer labels and class names."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        classes: list[str],
        size: int = 64,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.images, self.targets, self.classes, self.size, self.augment = images, labels, list(classes), size, augment

    def __len__(self) -> int:
        return len(self.targets)

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N x H x W) -> backbone input (N x 3 x size x size), before any augmentation."""
        return to_backbone_input(images, self.size)

    def transform_description(self) -> str:
        """How this dataset makes input, for the feature cache: size, augmentation and ``transform``'s exact output
        on a fixed probe (so editing the preprocessing code invalidates the caches made with it)."""
        probe = grey_probe(*self.images.shape[1:])
        return (
            f"{type(self).__name__}(size={self.size}, augment={self.augment!r}), "
            f"output on the probe sha256={output_sha256(self.transform, probe)}"
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.transform(self.images[index : index + 1])[0]
        if self.augment is not None:
            x = self.augment(x)
        return x, int(self.targets[index])

    def class_counts(self) -> dict[str, int]:
        """Examples per class name."""
        counts = Counter(self.targets.tolist())
        return {name: counts.get(i, 0) for i, name in enumerate(self.classes)}


def fashion_mnist_splits(
    n_train: int, n_val: int = 0, n_test: int = 100, size: int = 64, seed: int = 0, classes: list[int] | None = None
) -> dict[str, TensorImages]:
    """Balanced, seeded train/val (from the training set, disjoint) and test (from the test set) subsets.

    ``n_*`` are examples per class; ``n_test=None`` takes the whole test set.
    """
    classes = list(range(10)) if classes is None else list(classes)
    names = [FASHION_CLASSES[c] for c in classes]
    relabel = torch.full((10,), -1, dtype=torch.long)
    relabel[classes] = torch.arange(len(classes))

    train_x, train_y = load_fashion_mnist(True)
    test_x, test_y = load_fashion_mnist(False)
    out = {}
    train_idx = balanced_indices(train_y, n_train, seed, classes)
    out["train"] = TensorImages(train_x[train_idx], relabel[train_y[train_idx]], names, size)
    if n_val:
        val_idx = balanced_indices(train_y, n_val, seed + 1, classes, exclude=train_idx)
        out["val"] = TensorImages(train_x[val_idx], relabel[train_y[val_idx]], names, size)
    if n_test is None:
        keep = torch.isin(test_y, torch.tensor(classes))
        test_idx = torch.nonzero(keep).flatten()
    else:
        test_idx = balanced_indices(test_y, n_test, seed + 2, classes)
    out["test"] = TensorImages(test_x[test_idx], relabel[test_y[test_idx]], names, size)
    return out
