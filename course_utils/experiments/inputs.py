"""Where each contender of the sweep reads its data: Fashion-MNIST in memory, seeded disjoint splits, and the
loaders over images, raw pixels, cached features or boundary activations (one numeric path for all)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..backbones import load_backbone
from ..cache import cache_boundary, cache_features
from ..fashion import FASHION_CLASSES, TensorImages, balanced_indices, load_fashion_mnist
from ..preprocess import to_backbone_input
from .config import RECALIBRATION_IMAGES, SweepConfig
from .protocol import ArrayBatches, Data


@dataclass
class Fashion:
    """Fashion-MNIST in memory: uint8 images and labels of both splits."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    test_idx: np.ndarray


def load_fashion(config: SweepConfig) -> Fashion:
    """Both splits, and the test images every point is measured on (all 10,000 unless the profile says fewer)."""
    train_x, train_y = load_fashion_mnist(True)
    test_x, test_y = load_fashion_mnist(False)
    if config.test_per_class is None:
        test_idx = np.arange(len(test_y))
    else:
        test_idx = np.sort(balanced_indices(test_y, config.test_per_class, seed=12345).numpy())
    return Fashion(train_x, train_y, test_x, test_y, test_idx)


def split_indices(
    labels: torch.Tensor, config: SweepConfig, n_per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices into the training set: disjoint, balanced, seeded; 'all' keeps every other image."""
    val = balanced_indices(labels, config.val_per_class, seed + 1000)
    if n_per_class >= config.all_size:
        train = torch.from_numpy(np.setdiff1d(np.arange(len(labels)), val.numpy()))
        train = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))]
    else:
        train = balanced_indices(labels, n_per_class, seed, exclude=val)
    return train.numpy(), val.numpy()


class Inputs:
    """Where each contender reads its inputs: images, raw pixels, cached features or boundary activations."""

    def __init__(self, config: SweepConfig, fashion: Fashion, root: Path, log, device: torch.device | str = "cpu"):
        self.config, self.fashion, self.root, self.log = config, fashion, root, log
        self.device = torch.device(device)
        self._full_caches: dict[tuple[str, str], np.ndarray] = {}
        self.cache_seconds = 0.0

    def _images(self, split: str) -> TensorImages:
        f = self.fashion
        x, y = (f.train_x, f.train_y) if split == "train" else (f.test_x, f.test_y)
        return TensorImages(x, y, list(FASHION_CLASSES), size=self.config.image_size)

    def _cached(self, stage: str, split: str) -> np.ndarray:
        """Activations of a whole split just before ``stage`` (f(x) at 'head'), from the cache or computed once."""
        key = (stage, split)
        if key not in self._full_caches:
            start = time.perf_counter()
            model = load_backbone("mobilenet_v2", fetch=False)
            name = f"fashion_{stage}_{self.config.image_size}px_{split}"  # shared by the experiments (fingerprinted)
            kwargs = {"root": self.root, "batch_size": self.config.eval_batch_size, "device": self.device}
            kwargs |= {"progress": False, "verbose": False}
            if stage == "head":
                result = cache_features(model, self._images(split), name, **kwargs)
            else:
                result = cache_boundary(model, self._images(split), stage, name, **kwargs)
            self.cache_seconds += time.perf_counter() - start
            self.log(f"  cache {name}: {result.reason} ({' x '.join(map(str, result.features.shape))})")
            self._full_caches[key] = result.features
        return self._full_caches[key]

    def data(self, stage_or_kind: str, train_idx: np.ndarray, val_idx: np.ndarray, seed: int) -> Data:
        """Loaders for one contender: 'raw', 'images' (through the whole network) or a stage's boundary."""
        f, size, bs, eval_bs = self.fashion, self.config.image_size, self.config.batch_size, self.config.eval_batch_size
        recal_idx = train_idx[:RECALIBRATION_IMAGES]
        if stage_or_kind == "raw":
            pixels = f.train_x[torch.from_numpy(train_idx)].float().flatten(1) / 255
            mean, std = pixels.mean(0), pixels.std(0).clamp_min(1e-3)

            def convert(x):
                return (x.float().flatten(1) / 255 - mean) / std

            train_in, test_in = f.train_x, f.test_x
        elif stage_or_kind in ("images", "stem"):

            def convert(x):
                return to_backbone_input(x, size)

            train_in, test_in = f.train_x, f.test_x
        else:
            convert = None
            train_in, test_in = self._cached(stage_or_kind, "train"), self._cached(stage_or_kind, "test")
        layout = {"convert": convert, "channels_last": self.config.channels_last}
        flip = self.config.augment == "hflip" and stage_or_kind in ("images", "stem")  # cached activations: never
        return Data(
            train=ArrayBatches(train_in, f.train_y, train_idx, bs, shuffle=True, seed=seed, flip=flip, **layout),
            val=ArrayBatches(train_in, f.train_y, val_idx, eval_bs, **layout),
            test=ArrayBatches(test_in, f.test_y, f.test_idx, eval_bs, **layout),
            recalibrate=ArrayBatches(train_in, f.train_y, recal_idx, eval_bs, **layout),
        )
