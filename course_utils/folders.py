"""Your own photos as a dataset: a root/<class>/<image> folder checked file by file, then an ImageFolder.

``add_photos`` is the one way photos get into such a folder (lesson 02's upload box and
``data_scripts/make_dataset.py`` both call it): each file checked, never an overwrite, never the same photo twice.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from .images import SourceType, check_photo, image_problem, load_rgb
from .paths import DataError, atomic_write_bytes, atomic_writer, file_sha256
from .preprocess import photo_transform

# the suffix a photo gets when its name has none the dataset reads (an upload named "photo" or "cat.jfif")
FORMAT_SUFFIX = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "WEBP": ".webp",
    "PPM": ".ppm",
}


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
    ignored: list[str] = field(default_factory=list)  # class folders with no files: not classes

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
        if self.ignored:
            lines.append(f"  note: empty folder(s) ignored, not classes: {', '.join(self.ignored)}")
        return "\n".join(lines)


def _names(paths: list[Path], root: Path, limit: int = 8) -> str:
    shown = ", ".join(str(p.relative_to(root)) for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def visible_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` except hidden ones (.DS_Store, .ipynb_checkpoints/...), sorted."""
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.rglob("*")) if p.is_file() and not _is_hidden(p, folder)]


def scan_image_folder(root: str | Path, min_classes: int = 2) -> FolderScan:
    """Check a root/<class>/<image> folder: every file opened, bad ones listed, layout errors explained.

    A class folder with no files in it (or only hidden ones such as .DS_Store) is ignored with a one-line note:
    the upload box or a file manager may have made it before any photo was there."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"{root} does not exist. Make it and put one folder per class inside, e.g. {root}/tigger/photo1.jpg"
        )
    all_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    class_dirs = [p for p in all_dirs if visible_files(p)]
    ignored = [p.name for p in all_dirs if p not in class_dirs]
    loose = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    empty_note = f" ({', '.join(ignored)}: empty)" if ignored else ""
    if not class_dirs:
        hint = f" ({len(loose)} images lie directly in it)" if loose else empty_note
        raise DataError(
            f"{root} has no class folders with photos{hint}. Put each class in its own folder: "
            f"{root}/<class name>/<image>, e.g. {root}/tigger/1.jpg and {root}/misty/1.jpg."
        )
    if len(class_dirs) < min_classes:
        raise DataError(
            f"{root} has only one class folder ({class_dirs[0].name}){empty_note}; a classifier needs at least "
            f"{min_classes}. Add photos for each other class (for example 'neither' with photos of anything else)."
        )
    scan = FolderScan(root, [p.name for p in class_dirs], {}, ignored=ignored)
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


def require_per_class(scan: FolderScan, minimum: int, why: str = "") -> None:
    """DataError (what to add, class by class) when a class has fewer than ``minimum`` readable photos.

    Called before any training: a split of 1 photo cannot give both a training and a validation photo."""
    counts = scan.counts()
    short = {name: minimum - n for name, n in counts.items() if n < minimum}
    if not short:
        return
    have = ", ".join(f"{name} {n}" for name, n in counts.items())
    add = ", ".join(f"{k} more to {name}" for name, k in short.items())
    raise DataError(
        f"Too few photos in {scan.root}: this needs at least {minimum} readable photos per class"
        f"{f' ({why})' if why else ''}; you have {have}.\n"
        f"Add at least {add} (a few dozen per class give an accuracy worth reading), then run this cell and every "
        "cell below it again."
    )


class _CheckedImageFolder(ImageFolder):
    """An ImageFolder over exactly the classes and files a FolderScan found usable."""

    def __init__(self, scan: FolderScan, **kwargs):
        self._scan_classes = list(scan.classes)
        super().__init__(str(scan.root), **kwargs)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        return self._scan_classes, {name: i for i, name in enumerate(self._scan_classes)}


def image_folder_dataset(root: str | Path, size: int = 96, verbose: bool = True, transform=None) -> ImageFolder:
    """A torchvision ImageFolder over a checked folder: unreadable files skipped (and reported), all images RGB."""
    scan = scan_image_folder(root)
    if verbose:
        print(scan.summary())
    usable = {str(p) for files in scan.files.values() for p in files}
    dataset = _CheckedImageFolder(
        scan,
        transform=transform or photo_transform(size),
        loader=load_rgb,
        is_valid_file=lambda p: p in usable,
    )
    dataset.scan = scan
    return dataset


def stratified_split(
    targets: list[int] | torch.Tensor, val_fraction: float = 0.25, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Seeded train/val indices with the same class proportions, at least one of each class in each.

    DataError when a class has a single example: it cannot be in both."""
    targets = torch.as_tensor(targets)
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    counts = {cls: int((targets == cls).sum()) for cls in sorted(set(targets.tolist()))}
    single = [str(cls) for cls, n in counts.items() if n < 2]
    if single:
        raise DataError(
            f"class(es) {', '.join(single)} have a single example: a split needs at least 2 of every class "
            "(one to train on, one to validate on). Add examples of those classes."
        )
    for cls in counts:
        idx = torch.nonzero(targets == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)].tolist()
        n_val = min(max(1, round(len(idx) * val_fraction)), len(idx) - 1)
        val += idx[:n_val]
        train += idx[n_val:]
    return sorted(train), sorted(val)


# ------------------------------------------------------------------------------- adding photos to a dataset
class PhotoIndex:
    """sha256 -> file for every file under a dataset folder (every class): the one duplicate check.

    One photo saved twice (under two names, or in two classes) could land in training and in validation."""

    def __init__(self, root: str | Path, exclude: Iterable[str] = ()):
        self.root = Path(root).expanduser()
        excluded = set(exclude)
        files = [p for p in sorted(self.root.rglob("*")) if p.is_file()] if self.root.is_dir() else []
        self.by_sha: dict[str, Path] = {file_sha256(p): p for p in files if p.name not in excluded}

    def get(self, sha: str) -> Path | None:
        """The file holding these bytes, or None."""
        return self.by_sha.get(sha)

    def add(self, sha: str, path: Path) -> None:
        """Record a file just written."""
        self.by_sha[sha] = path


@dataclass(frozen=True)
class Added:
    """What add_photos did with one file: saved (where), refused as a duplicate (of which file) or as unusable."""

    name: str  # as given
    saved: Path | None = None
    same_as: Path | None = None  # a file already in the dataset with the same bytes
    problem: str = ""  # why it is not a usable photo
    sha256: str = ""


def safe_photo_name(name: str, fmt: str | None = None) -> str:
    """The base name a photo is saved under: no folders, no leading dot, only letters, digits and ``._-``; a
    suffix the dataset reads (from the image format ``fmt`` when the name has none)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name.replace("\\", "/")).name).lstrip(".") or "photo"
    suffix = Path(base).suffix.lower()
    if suffix not in IMG_EXTENSIONS and fmt in FORMAT_SUFFIX:
        base += FORMAT_SUFFIX[fmt]
    return base


def free_name(folder: Path, name: str, taken: Iterable[str] = ()) -> str:
    """``name``, or ``stem_1.suffix``, ``stem_2.suffix``...: the first that no file in ``folder`` has, with case
    ignored (on macOS and Windows cat.JPG and Cat.jpg are one file)."""
    used = {p.name.lower() for p in folder.iterdir()} if folder.is_dir() else set()
    used |= {t.lower() for t in taken}
    stem, suffix, n = Path(name).stem, Path(name).suffix, 1
    candidate = name
    while candidate.lower() in used:
        candidate, n = f"{stem}_{n}{suffix}", n + 1
    return candidate


def _image_format(source: SourceType) -> str | None:
    opened = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        with Image.open(opened) as img:
            return img.format
    except Exception:  # the check already said whether it is a photo
        return None


def add_photos(
    items: Iterable[tuple[str, SourceType]],
    dest_dir: str | Path,
    index: PhotoIndex | None = None,
    checked: bool = False,
) -> list[Added]:
    """Add photos to ``dest_dir`` (one class folder); one Added per item, in order.

    ``items`` are (file name, bytes or path). Each is checked (skip with ``checked=True`` when the caller already
    did), refused when ``index`` (default: the folder above ``dest_dir``, every class) already holds the same
    bytes, and otherwise written atomically under ``safe_photo_name``, renamed by ``free_name``: an existing photo
    is never overwritten. A path is copied byte for byte without reading it into memory. The folder is made only
    when a photo is written."""
    dest = Path(dest_dir).expanduser()
    index = index if index is not None else PhotoIndex(dest.parent)
    results = []
    for name, source in items:
        is_bytes = isinstance(source, (bytes, bytearray, memoryview))
        if not checked:
            problem = image_problem(source, name=Path(name).name) if is_bytes else image_problem(source)
            if problem:
                results.append(Added(name, problem=problem))
                continue
        sha = hashlib.sha256(bytes(source)).hexdigest() if is_bytes else file_sha256(Path(source))
        existing = index.get(sha)
        if existing is not None:
            results.append(Added(name, same_as=existing, sha256=sha))
            continue
        fmt = _image_format(source)
        safe = safe_photo_name(name, fmt)
        if Path(safe).suffix.lower() not in IMG_EXTENSIONS:  # e.g. a GIF: Pillow reads it, the dataset does not
            problem = f"a {fmt} image, which the dataset does not read: save it as JPEG or PNG"
            results.append(Added(name, problem=problem))
            continue
        target = dest / free_name(dest, safe)
        if is_bytes:
            atomic_write_bytes(target, bytes(source))
        else:
            with atomic_writer(target) as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
        index.add(sha, target)
        results.append(Added(name, saved=target, sha256=sha))
    return results
