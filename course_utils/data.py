"""Datasets: Fashion-MNIST subsets, your own photo folders, and the Tigger / Misty / Neither data."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.nn import functional as F
from torch.utils.data import Dataset, Subset
from torchvision import transforms
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from .backbones import IMAGENET_MEAN, IMAGENET_STD
from .fashion_files import (  # noqa: F401 (re-exported: lessons and scripts import them from here)
    DEBIAN_FASHION_DIR, FASHION_FILES, DataError, check_fashion_mnist, fashion_mnist_raw_dir,
    install_fashion_mnist_from_gz,
)
from .paths import data_dir

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
PETS_CLASSES = ("misty", "neither", "tigger")  # ImageFolder's (alphabetical) order, for every source
PETS_STAND_IN = {"tigger": "Shirt", "misty": "Pullover"}  # neither: the other eight classes


# ----------------------------------------------------------------------------------- Fashion-MNIST
def load_fashion_mnist(train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """All images (uint8, N x 28 x 28) and labels (int64) of one split (read once, then kept in memory)."""
    return _load_fashion_mnist(fashion_mnist_raw_dir(), train)


@lru_cache(maxsize=4)
def _load_fashion_mnist(raw_dir: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    problems = check_fashion_mnist(raw_dir, full_hash=False)
    if problems:
        raise DataError(
            "Fashion-MNIST is not ready: " + "; ".join(problems)
            + ". Run `python data_scripts/fetch_data.py fashion-mnist` (or `make lab`)."
        )
    prefix = "train" if train else "t10k"
    images = np.fromfile(raw_dir / f"{prefix}-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    labels = np.fromfile(raw_dir / f"{prefix}-labels-idx1-ubyte", dtype=np.uint8, offset=8).astype(np.int64)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels)


def balanced_indices(
    labels: torch.Tensor, n_per_class: int, seed: int = 0, classes: list[int] | None = None, exclude: torch.Tensor | None = None
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


def to_backbone_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 grayscale (N x H x W) -> float N x 3 x size x size with ImageNet normalization."""
    x = images.float().div(255.0).unsqueeze(1)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.expand(-1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class TensorImages(Dataset):
    """Grayscale uint8 images turned into backbone input on the fly, with integer labels and class names."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str], size: int = 64,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.images, self.targets, self.classes, self.size, self.augment = images, labels, list(classes), size, augment

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = to_backbone_input(self.images[index : index + 1], self.size)[0]
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


# ------------------------------------------------------------------------------ your own photos
def photo_transform(size: int = 96, resize: int | None = None) -> transforms.Compose:
    """PIL photo -> normalized tensor: resize the short side (to ``resize``, default ``size``), centre-crop, normalize."""
    return transforms.Compose([
        transforms.Resize(resize or size),
        transforms.CenterCrop(size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def load_rgb(path: str | Path) -> Image.Image:
    """Open any image as 8-bit RGB: grayscale, palette, RGBA (on white) and 16-bit images included."""
    with Image.open(path) as img:
        img.load()
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            array = np.asarray(img, dtype=np.float64)
            top = array.max() if array.max() > 0 else 1.0
            img = Image.fromarray((array / top * 255.0).astype(np.uint8), mode="L")
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)
        return img.convert("RGB")


def image_problem(path: Path) -> str:
    """Why ``path`` is not a usable photo ('' when it is): a hidden/system file, not an image, or unreadable."""
    if path.name.startswith("."):
        return "not an image file (hidden or system file)"
    if path.suffix.lower() not in IMG_EXTENSIONS:
        return "not an image file"
    try:
        with Image.open(path) as img:
            img.verify()  # structure
        with Image.open(path) as img:
            img.load()  # every pixel decodes (a truncated file fails here)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return f"cannot be read as an image ({type(exc).__name__})"
    return ""


@dataclass
class FolderScan:
    """What scan_image_folder found: classes, usable files per class, and skipped files with reasons."""

    root: Path
    classes: list[str]
    files: dict[str, list[Path]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    small: list[Path] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Usable images per class."""
        return {name: len(self.files[name]) for name in self.classes}

    def summary(self) -> str:
        """A few lines a student can read: per-class counts, then what was skipped and why."""
        lines = [f"{self.root}: {sum(self.counts().values())} images in {len(self.classes)} classes"]
        lines += [f"  {name:<12} {count:>5}" for name, count in self.counts().items()]
        for path, reason in self.skipped:
            lines.append(f"  skipped {path.relative_to(self.root)}: {reason}")
        if self.small:
            lines.append(f"  note: {len(self.small)} image(s) are smaller than 32 px and will be upscaled (blurry)")
        return "\n".join(lines)


def scan_image_folder(root: str | Path, min_classes: int = 2) -> FolderScan:
    """Check a root/<class>/<image> folder: every file opened, bad ones listed, layout errors explained."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root} does not exist. Make it and put one folder per class inside, e.g. {root}/tigger/photo1.jpg")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if not class_dirs:
        hint = f" ({len(loose)} images lie directly in it)" if loose else ""
        raise DataError(
            f"{root} has no class folders{hint}. Put each class in its own folder: "
            f"{root}/<class name>/<image>, e.g. {root}/tigger/1.jpg and {root}/misty/1.jpg."
        )
    if len(class_dirs) < min_classes:
        raise DataError(
            f"{root} has only one class folder ({class_dirs[0].name}); a classifier needs at least {min_classes}. "
            "Add a folder for each other class (for example 'neither' with photos of anything else)."
        )
    scan = FolderScan(root, [p.name for p in class_dirs], {})
    for path in loose:
        scan.skipped.append((path, "image directly under the root, not in a class folder; ignored"))
    for class_dir in class_dirs:
        good = []
        for path in sorted(class_dir.rglob("*")):
            if path.is_dir():
                continue
            problem = image_problem(path)
            if problem:
                scan.skipped.append((path, problem))
                continue
            with Image.open(path) as img:
                if min(img.size) < 32:
                    scan.small.append(path)
            good.append(path)
        scan.files[class_dir.name] = good
    empty = [name for name, files in scan.files.items() if not files]
    if empty:
        raise DataError(
            f"class folder(s) {', '.join(empty)} in {root} hold no readable images. "
            "Add photos there or remove the folder.\n" + scan.summary()
        )
    return scan


def image_folder_dataset(root: str | Path, size: int = 96, verbose: bool = True, transform=None) -> ImageFolder:
    """A torchvision ImageFolder over a checked folder: unreadable files skipped (and reported), all images RGB."""
    scan = scan_image_folder(root)
    if verbose:
        print(scan.summary())
    usable = {str(p) for files in scan.files.values() for p in files}
    dataset = ImageFolder(
        str(scan.root), transform=transform or photo_transform(size), loader=load_rgb, is_valid_file=lambda p: p in usable
    )
    dataset.scan = scan
    return dataset


def stratified_split(targets: list[int] | torch.Tensor, val_fraction: float = 0.25, seed: int = 0) -> tuple[list[int], list[int]]:
    """Seeded train/val indices with the same class proportions (at least one of each class in each)."""
    targets = torch.as_tensor(targets)
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    for cls in sorted(set(targets.tolist())):
        idx = torch.nonzero(targets == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)].tolist()
        n_val = min(max(1, round(len(idx) * val_fraction)), len(idx) - 1) if len(idx) > 1 else 0
        val += idx[:n_val]
        train += idx[n_val:]
    return sorted(train), sorted(val)


# ------------------------------------------------------------------- Tigger / Misty / Neither
@dataclass
class PetsData:
    """The three-class data of Scenario A and where it came from."""

    train: Dataset
    val: Dataset
    classes: list[str]
    source: str


def my_pets_dir() -> Path:
    """data/my_pets: put tigger/, misty/ and neither/ folders of photos here."""
    return data_dir() / "my_pets"


def pets_data(size: int = 96, n_per_class: int = 30, seed: int = 0, root: str | Path | None = None,
              allow_download: bool = True, verbose: bool = True) -> PetsData:
    """Tigger / Misty / Neither, from the first source that works (the line printed says which):

    1. your photos in ``root`` (default data/my_pets/{tigger,misty,neither}/);
    2. online: an Oxford-IIIT Pet subset (Bengal -> tigger, Russian Blue -> misty, other breeds -> neither);
    3. offline: a stand-in from Fashion-MNIST (Shirt -> tigger, Pullover -> misty, other classes -> neither).
    """
    root = Path(root) if root else my_pets_dir()
    say = print if verbose else (lambda *_: None)
    if root.is_dir() and any(p.is_dir() for p in root.iterdir()):
        dataset = image_folder_dataset(root, size, verbose=verbose)
        train_idx, val_idx = stratified_split(dataset.targets, 0.25, seed)
        say(f"Source: your photos in {root}")
        return PetsData(Subset(dataset, train_idx), Subset(dataset, val_idx), dataset.classes, f"your photos ({root})")
    if allow_download:
        try:
            data = _oxford_pets(size, n_per_class, seed)
            say(f"Source: Oxford-IIIT Pet subset ({data.source})")
            return data
        except Exception as exc:  # offline, or the download broke: fall through to the stand-in
            say(f"Oxford-IIIT Pet not available ({type(exc).__name__}); using the offline stand-in.")
    data = _fashion_stand_in(size, n_per_class, seed)
    say(f"Source: {data.source}")
    return data


def _fashion_stand_in(size: int, n_per_class: int, seed: int) -> PetsData:
    train_x, train_y = load_fashion_mnist(True)
    tigger, misty = FASHION_CLASSES.index(PETS_STAND_IN["tigger"]), FASHION_CLASSES.index(PETS_STAND_IN["misty"])
    others = [c for c in range(10) if c not in (tigger, misty)]

    def take(n: int, offset: int, exclude: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        idx_t = balanced_indices(train_y, n, seed + offset, [tigger], exclude)
        idx_m = balanced_indices(train_y, n, seed + offset, [misty], exclude)
        per_other = max(1, -(-n // len(others)))
        idx_n = balanced_indices(train_y, per_other, seed + offset, others, exclude)[:n]
        idx = torch.cat([idx_m, idx_n, idx_t])
        labels = torch.cat([torch.full((len(idx_m),), 0), torch.full((len(idx_n),), 1), torch.full((len(idx_t),), 2)])
        return idx, labels

    train_idx, train_lab = take(n_per_class, 0, None)
    n_val = max(5, n_per_class // 3)
    val_idx, val_lab = take(n_val, 100, train_idx)
    classes = list(PETS_CLASSES)
    source = (
        "offline stand-in from Fashion-MNIST: tigger = Shirt, misty = Pullover, neither = the other 8 classes "
        "(put photos in data/my_pets/{tigger,misty,neither}/ to use your own)"
    )
    return PetsData(
        TensorImages(train_x[train_idx], train_lab, classes, size),
        TensorImages(train_x[val_idx], val_lab, classes, size),
        classes,
        source,
    )


def _oxford_pets(size: int, n_per_class: int, seed: int) -> PetsData:
    from torchvision.datasets import OxfordIIITPet

    pets = OxfordIIITPet(str(data_dir()), split="trainval", target_types="category", download=True,
                         transform=photo_transform(size))
    breed = {name: i for i, name in enumerate(pets.classes)}
    mapping = {breed["Bengal"]: 2, breed["Russian Blue"]: 0}
    labels = torch.tensor([mapping.get(label, 1) for label in pets._labels])
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for cls in range(3):
        idx = torch.nonzero(labels == cls).flatten()
        chosen.append(idx[torch.randperm(len(idx), generator=generator)][: n_per_class + max(5, n_per_class // 3)])
    index = torch.cat(chosen).tolist()
    train_idx, val_idx = stratified_split(labels[index], 0.25, seed)

    class Relabelled(Dataset):
        def __init__(self, ids: list[int]):
            self.ids = ids
            self.targets = [int(labels[i]) for i in ids]
            self.classes = list(PETS_CLASSES)

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i: int):
            return pets[self.ids[i]][0], self.targets[i]

    return PetsData(Relabelled([index[i] for i in train_idx]), Relabelled([index[i] for i in val_idx]),
                    list(PETS_CLASSES), "Oxford-IIIT Pet: Bengal -> tigger, Russian Blue -> misty, other breeds -> neither")
