"""Tigger / Misty / Neither, the three classes of lesson 02: your photos, an Oxford-IIIT Pet subset, or a stand-in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset
from torchvision.datasets.folder import IMG_EXTENSIONS

from .fashion import FASHION_CLASSES, TensorImages, balanced_indices, load_fashion_mnist
from .folders import image_folder_dataset, require_per_class, stratified_split, visible_files
from .images import image_problem, load_rgb
from .paths import DataError, data_dir, own_data_dir
from .preprocess import photo_transform

PETS_CLASSES = ("misty", "neither", "tigger")  # ImageFolder's (alphabetical) order, for every source
PETS_STAND_IN = {"tigger": "Shirt", "misty": "Pullover"}  # neither: the other eight classes


@dataclass
class PetsData:
    """The three-class data of Scenario A and where it came from."""

    train: Dataset
    val: Dataset
    classes: list[str]
    source: str


def dataset_targets(dataset: Dataset) -> list[int]:
    """The class index of every example, without loading an image (any source of pets_data, or a Subset of one)."""
    if isinstance(dataset, Subset):
        parent = dataset_targets(dataset.dataset)
        return [parent[i] for i in dataset.indices]
    if hasattr(dataset, "targets"):
        return [int(t) for t in dataset.targets]
    raise TypeError(f"{type(dataset).__name__} has no targets; pass a dataset made by pets_data (or a Subset of one)")


def my_pets_dir() -> Path:
    """data/my_pets in your own course folder (never a class's shared read-only data): tigger/, misty/, neither/."""
    return own_data_dir() / "my_pets"


def has_own_photos(root: Path) -> bool:
    """Whether ``root`` holds anything you put there: a file in a class folder, or an image lying directly in it.

    Empty class folders (and hidden files such as .DS_Store) do not count: you did not make them photos."""
    if not root.is_dir():
        return False
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    return any(visible_files(p) for p in entries if p.is_dir()) or any(
        p.is_file() and p.suffix.lower() in IMG_EXTENSIONS for p in entries
    )


def pets_data(
    size: int = 96,
    n_per_class: int = 30,
    seed: int = 0,
    root: str | Path | None = None,
    allow_download: bool = True,
    verbose: bool = True,
    min_per_class: int = 2,
    own_photos: bool = True,
) -> PetsData:
    """Tigger / Misty / Neither, from the first source that works (the line printed says which):

    1. your photos in ``root`` (default data/my_pets/{tigger,misty,neither}/), unless ``own_photos=False``;
    2. online: an Oxford-IIIT Pet subset (Bengal -> tigger, Russian Blue -> misty, other breeds -> neither);
    3. offline: a stand-in from Fashion-MNIST (Shirt -> tigger, Pullover -> misty, other classes -> neither).

    Empty class folders are ignored (with a one-line note). Photos of yours that cannot make a dataset raise
    DataError before anything is trained, with what to do: a wrong layout, a class of unreadable files, or fewer
    than ``min_per_class`` readable photos in a class (2: one to train on and one to validate on; a lesson that
    splits again asks for more). ``root`` given but missing is such an error too.
    """
    explicit = root is not None
    root = Path(root).expanduser() if root else my_pets_dir()
    say = print if verbose else (lambda *_: None)
    if own_photos and explicit and not root.is_dir():
        raise DataError(
            f"the photo folder {root} does not exist. Check the path (MY_PHOTOS in the first cell), or set it to None "
            "to use data/my_pets."
        )
    if own_photos and has_own_photos(root):
        dataset = image_folder_dataset(root, size, verbose=verbose)
        why = "one to train on and one to validate on" if min_per_class <= 2 else "training, validation and test"
        require_per_class(dataset.scan, min_per_class, why)
        train_idx, val_idx = stratified_split(dataset.targets, 0.25, seed)
        say(f"Source: your photos in {root}")
        return PetsData(Subset(dataset, train_idx), Subset(dataset, val_idx), dataset.classes, f"your photos ({root})")
    if own_photos and root.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
        say(
            f"Note: the class folders in {root} hold no photos yet, so they are ignored. To use your own photos put "
            f"them in {root}/<class>/ (tigger, misty, neither): the upload box of lesson 02, or "
            "python data_scripts/make_dataset.py FOLDER."
        )
    if allow_download:
        try:
            data = _oxford_pets(size, n_per_class, seed)
            say(f"Source: Oxford-IIIT Pet subset ({data.source})")
            return data
        except Exception as exc:  # offline, or the download broke: fall through to the stand-in
            reason = " ".join(str(exc).split())[:200]
            say(f"Oxford-IIIT Pet not available ({type(exc).__name__}: {reason}); using the offline stand-in.")
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

    pets = OxfordIIITPet(str(data_dir()), split="trainval", target_types="category", download=True)
    transform = photo_transform(size)
    breed = {name: i for i, name in enumerate(pets.classes)}
    mapping = {breed["Bengal"]: 2, breed["Russian Blue"]: 0}
    labels = torch.tensor([mapping.get(label, 1) for label in pets._labels])
    generator = torch.Generator().manual_seed(seed)
    wanted = n_per_class + max(5, n_per_class // 3)
    index, unusable = [], []
    for cls in range(3):
        idx = torch.nonzero(labels == cls).flatten()
        taken = 0
        for i in idx[torch.randperm(len(idx), generator=generator)].tolist():
            if taken == wanted:
                break
            problem = image_problem(pets._images[i])  # the archive holds a few broken files: checked, skipped
            if problem:
                unusable.append(f"{pets._images[i].name}: {problem}")
                continue
            index.append(i)
            taken += 1
    train_idx, val_idx = stratified_split(labels[index], 0.25, seed)

    class Relabelled(Dataset):
        def __init__(self, ids: list[int]):
            self.ids = ids
            self.targets = [int(labels[i]) for i in ids]
            self.classes = list(PETS_CLASSES)

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i: int):
            # the course's one loader (EXIF orientation, large photos), not torchvision's plain Image.open
            return transform(load_rgb(pets._images[self.ids[i]])), self.targets[i]

    return PetsData(
        Relabelled([index[i] for i in train_idx]),
        Relabelled([index[i] for i in val_idx]),
        list(PETS_CLASSES),
        "Oxford-IIIT Pet: Bengal -> tigger, Russian Blue -> misty, other breeds -> neither"
        + (f"; skipped {len(unusable)} unusable file(s): {'; '.join(unusable[:3])}" if unusable else ""),
    )
