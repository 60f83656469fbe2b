"""Your own photos as a dataset: a root/<class>/<image> folder checked file by file, then an ImageFolder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from .images import check_photo, load_rgb
from .paths import DataError
from .preprocess import photo_transform


@dataclass
class FolderScan:
    """What scan_image_folder found: classes, usable files per class, and skipped files with reasons."""

    root: Path
    classes: list[str]
    files: dict[str, list[Path]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    small: list[Path] = field(default_factory=list)
    rotated: list[Path] = field(default_factory=list)  # turned upright by their EXIF orientation tag
    reduced: list[Path] = field(default_factory=list)  # very large: decoded at reduced size

    def counts(self) -> dict[str, int]:
        """Usable images per class."""
        return {name: len(self.files[name]) for name in self.classes}

    def summary(self) -> str:
        """A few lines a student can read: per-class counts, then what was skipped and why."""
        lines = [f"{self.root}: {sum(self.counts().values())} images in {len(self.classes)} classes"]
        lines += [f"  {name:<12} {count:>5}" for name, count in self.counts().items()]
        for path, reason in self.skipped:
            lines.append(f"  skipped {path.relative_to(self.root)}: {reason}")
        notes = [
            (self.small, "smaller than 32 px on a side, upscaled (blurry); use larger photos if you can"),
            (self.rotated, "turned upright by their EXIF orientation tag (as your phone shows them)"),
            (self.reduced, "very large, read at reduced size (1/2 to 1/8: still more pixels than the model uses)"),
        ]
        for paths, what in notes:
            if paths:
                lines.append(f"  note: {len(paths)} image(s) {what}: {_names(paths, self.root)}")
        return "\n".join(lines)


def _names(paths: list[Path], root: Path, limit: int = 8) -> str:
    shown = ", ".join(str(p.relative_to(root)) for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def scan_image_folder(root: str | Path, min_classes: int = 2) -> FolderScan:
    """Check a root/<class>/<image> folder: every file opened, bad ones listed, layout errors explained."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"{root} does not exist. Make it and put one folder per class inside, e.g. {root}/tigger/photo1.jpg"
        )
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
            check = check_photo(path)
            if check.problem:
                scan.skipped.append((path, check.problem))
                continue
            if min(check.size) < 32:
                scan.small.append(path)
            if check.rotated:
                scan.rotated.append(path)
            if check.reduced_from:
                scan.reduced.append(path)
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
        str(scan.root),
        transform=transform or photo_transform(size),
        loader=load_rgb,
        is_valid_file=lambda p: p in usable,
    )
    dataset.scan = scan
    return dataset


def stratified_split(
    targets: list[int] | torch.Tensor, val_fraction: float = 0.25, seed: int = 0
) -> tuple[list[int], list[int]]:
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
