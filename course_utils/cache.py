"""A feature cache on disk: the frozen body runs once per image, the head trains from the saved features.

Layout: ``<root>/<name>/<fingerprint[:16]>/{features.npy, labels.npy, manifest.json}``.

- The fingerprint hashes the body's weights, the transform (as the dataset describes it: TensorImages by
  its transform's output on a fixed probe), the data and the library versions; change any of them and the
  cache is rebuilt (``CacheResult.reason`` says which part changed).
- Writes are atomic: everything goes into a temporary folder, the manifest (with the sha256 of each
  file) is written last, then the folder is renamed into place. A folder without a manifest, with a
  wrong size or a wrong checksum is reported and rebuilt, never used.
- Features are written chunk by chunk to the file and read back memory-mapped, so memory stays flat
  however many images are cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from .backbones import body_features
from .device import loader_kwargs
from .paths import atomic_write_text, cache_dir, file_sha256

CACHE_FORMAT = 1
PARTS = ("weights", "transform", "data", "versions")


class CacheError(RuntimeError):
    """A dataset cannot be cached (e.g. random augmentation); the message says what to do."""


# ------------------------------------------------------------------------------------ fingerprint
def _update_with_array(digest, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(memoryview(array).cast("B"))


def weights_digest(model: nn.Module) -> str:
    """sha256 over every tensor of the state_dict (names, dtypes, shapes and values), BatchNorm statistics included."""
    digest = hashlib.sha256(type(model).__name__.encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        _update_with_array(digest, tensor.detach().cpu().contiguous().numpy())
    return digest.hexdigest()


def describe_transform(dataset: Dataset) -> str:
    """How a dataset turns its images into tensors: its own ``transform_description()`` when it has one
    (TensorImages: derived from the code that runs), else the repr of its torchvision ``transform``."""
    if isinstance(dataset, Subset):
        return describe_transform(dataset.dataset)
    own = getattr(dataset, "transform_description", None)
    if callable(own):
        return own()
    if getattr(dataset, "transform", None) is not None:
        return " ".join(repr(dataset.transform).split())
    if isinstance(dataset, torch.utils.data.TensorDataset):
        return "TensorDataset (tensors used as they are)"
    raise CacheError(
        f"cannot describe how {type(dataset).__name__} transforms its images: give it a transform_description() "
        "method, or pass transform_id=... (a text that changes whenever its preprocessing does)"
    )


_RANDOM_WORDS = ("Random", "ColorJitter", "AutoAugment", "RandAugment", "TrivialAugment", "AugMix", "GaussianBlur")


def has_random_augmentation(dataset: Dataset) -> bool:
    """True when a dataset's transform is random (every epoch sees a different version of each image)."""
    if isinstance(dataset, Subset):
        return has_random_augmentation(dataset.dataset)
    if getattr(dataset, "augment", None) is not None:
        return True
    text = repr(getattr(dataset, "transform", None))
    return any(word in text for word in _RANDOM_WORDS)


def dataset_digest(dataset: Dataset) -> str:
    """sha256 identifying the examples: image bytes and labels in memory, or file names, sizes and mtimes on disk."""
    digest = hashlib.sha256()
    if isinstance(dataset, Subset):
        digest.update(dataset_digest(dataset.dataset).encode())
        _update_with_array(digest, np.asarray(list(dataset.indices), dtype=np.int64))
    elif hasattr(dataset, "images") and hasattr(dataset, "targets"):  # TensorImages
        _update_with_array(digest, dataset.images.cpu().numpy())
        _update_with_array(digest, torch.as_tensor(dataset.targets).cpu().numpy())
    elif hasattr(dataset, "samples"):  # ImageFolder
        for path, target in dataset.samples:
            stat = os.stat(path)
            digest.update(f"{path}|{target}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    elif isinstance(dataset, torch.utils.data.TensorDataset):
        for tensor in dataset.tensors:
            _update_with_array(digest, tensor.detach().cpu().numpy())
    else:
        raise CacheError(f"cannot identify the examples of {type(dataset).__name__}; pass data_id=...")
    return digest.hexdigest()


def library_versions() -> str:
    """torch, torchvision and numpy versions: features can change between releases."""
    import torchvision

    return (
        f"torch={torch.__version__} torchvision={torchvision.__version__} numpy={np.__version__} format={CACHE_FORMAT}"
    )


def fingerprint_parts(
    model: nn.Module, dataset: Dataset, transform_id: str | None = None, data_id: str | None = None
) -> dict[str, str]:
    """The four things a cache depends on, each as a sha256: weights, transform, data, versions."""
    sha = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    return {
        "weights": weights_digest(model),
        "transform": sha(transform_id or describe_transform(dataset)),
        "data": sha(data_id) if data_id else dataset_digest(dataset),
        "versions": sha(library_versions()),
    }


def combine(parts: dict[str, str]) -> str:
    """One fingerprint from the parts."""
    return hashlib.sha256("|".join(f"{k}={parts[k]}" for k in PARTS).encode()).hexdigest()


# ------------------------------------------------------------------------------------- the cache
@dataclass
class CacheResult:
    """Features (memory-mapped float32: N x D, or N x C x H x W at a boundary), labels (N int64), where, and why."""

    features: np.ndarray
    labels: np.ndarray
    path: Path
    fingerprint: str
    built: bool
    reason: str
    seconds: float

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels as torch tensors in memory (copies; fine for the head-sized sets of the lessons)."""
        return torch.from_numpy(np.array(self.features)), torch.from_numpy(np.array(self.labels))


def check_cache_folder(folder: Path, fingerprint: str | None = None, verify: bool = True) -> str:
    """Why a cache folder cannot be used ('' when it can): no manifest, wrong fingerprint, wrong size or checksum."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return "incomplete (no manifest: the write did not finish)"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return "corrupt manifest"
    if fingerprint is not None and manifest.get("fingerprint") != fingerprint:
        return "fingerprint differs"
    for key in ("features", "labels"):
        entry = manifest.get(key, {})
        path = folder / f"{key}.npy"
        if not path.is_file() or path.stat().st_size != entry.get("bytes"):
            return f"corrupt ({key}.npy is missing or has the wrong size)"
        if verify and file_sha256(path) != entry.get("sha256"):
            return f"corrupt ({key}.npy checksum differs)"
    return ""


def _write_npy_header(handle, shape: tuple[int, ...], dtype: np.dtype) -> None:
    np.lib.format.write_array_header_1_0(
        handle, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    )


def _in_order(dataset: Dataset, batch_size: int, device: torch.device | str):
    """Batches of ``dataset`` in order: whole slices of a TensorDataset (no per-item collate), else a DataLoader."""
    if isinstance(dataset, torch.utils.data.TensorDataset):
        n = len(dataset)
        return (tuple(t[i : i + batch_size] for t in dataset.tensors) for i in range(0, n, batch_size))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **loader_kwargs(device))


@torch.no_grad()
def write_feature_cache(
    folder: Path,
    model: nn.Module,
    dataset: Dataset,
    parts: dict[str, str],
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    feature_fn: Callable | None = None,
    progress: bool = True,
) -> None:
    """Run the body once over ``dataset`` (eval, no grad, in order) and write features chunk by chunk, atomically."""
    feature_fn = feature_fn or body_features
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".part", dir=folder.parent))
    try:
        model.eval().to(device)
        n = len(dataset)
        if n == 0:
            raise CacheError("the dataset is empty: nothing to cache")
        loader = _in_order(dataset, batch_size, device)
        feats_path, labels_path = tmp / "features.npy", tmp / "labels.npy"
        written = 0
        with open(feats_path, "wb") as fout, open(labels_path, "wb") as lout:
            _write_npy_header(lout, (n,), np.int64)
            for images, targets in tqdm(
                loader, desc="caching features", total=-(-n // batch_size), disable=not progress, leave=False
            ):
                feats = feature_fn(model, images.to(device)).float().cpu().numpy()
                if written == 0:
                    item_shape = tuple(int(d) for d in feats.shape[1:])
                    _write_npy_header(fout, (n, *item_shape), np.float32)
                fout.write(np.ascontiguousarray(feats, dtype=np.float32).tobytes())
                lout.write(np.asarray(torch.as_tensor(targets), dtype=np.int64).tobytes())
                written += len(feats)
            for handle in (fout, lout):
                handle.flush()
                os.fsync(handle.fileno())
        if written != n:
            raise CacheError(f"the dataset yielded {written} examples but says it has {n}")
        manifest = {
            "format": CACHE_FORMAT,
            "fingerprint": combine(parts),
            "parts": parts,
            "shape": [n, *item_shape],
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "features": {"bytes": feats_path.stat().st_size, "sha256": file_sha256(feats_path)},
            "labels": {"bytes": labels_path.stat().st_size, "sha256": file_sha256(labels_path)},
        }
        atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=1))  # last: marks the folder complete
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _why_rebuilt(name_dir: Path, parts: dict[str, str]) -> str:
    """Compare with the most similar complete cache of the same name: which parts changed."""
    previous = []
    for folder in name_dir.iterdir() if name_dir.is_dir() else []:
        manifest = folder / "manifest.json"
        if folder.is_dir() and not folder.name.startswith(".") and manifest.is_file():
            try:
                old = json.loads(manifest.read_text()).get("parts", {})
            except (OSError, ValueError):
                continue
            changed = [k for k in PARTS if old.get(k) != parts[k]]
            previous.append((len(changed), -manifest.stat().st_mtime, changed))
    if not previous:
        return "built: no cache yet"
    changed = min(previous)[2]
    return "rebuilt: " + ", ".join(changed) + " changed" if changed else "built: no cache yet"


def cache_features(
    model: nn.Module,
    dataset: Dataset,
    name: str,
    root: str | Path | None = None,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    feature_fn: Callable | None = None,
    transform_id: str | None = None,
    data_id: str | None = None,
    keep_old: int = 3,
    verify: bool = True,
    progress: bool = True,
    verbose: bool = True,
) -> CacheResult:
    """Features of ``dataset`` through the frozen body, from the cache when it is valid, else computed once and saved.

    Refuses datasets with random augmentation (a cache holds one fixed view of each image).
    ``root`` defaults to course_utils.paths.cache_dir(); ``feature_fn(model, images)`` to body_features.
    """
    if has_random_augmentation(dataset):
        raise CacheError(
            "this dataset applies random augmentation, so each epoch would need new features; a cache holds one "
            "fixed view per image. Cache the dataset without augmentation (or a fixed number of augmented copies), "
            "or train through the body instead."
        )
    start = time.perf_counter()
    root = Path(root) if root is not None else cache_dir()
    name_dir = root / name
    parts = fingerprint_parts(model, dataset, transform_id, data_id)
    fp = combine(parts)
    folder = name_dir / fp[:16]
    problem = check_cache_folder(folder, fp, verify=verify) if folder.exists() else None
    if problem == "":
        reason, built = "loaded from cache", False
    else:
        reason = f"rebuilt: previous cache {problem}" if problem else _why_rebuilt(name_dir, parts)
        write_feature_cache(folder, model, dataset, parts, batch_size, device, feature_fn, progress)
        built = True
        _prune(name_dir, keep=folder, keep_old=keep_old)
    features = np.load(folder / "features.npy", mmap_mode="r")
    labels = np.load(folder / "labels.npy", mmap_mode="r")
    seconds = time.perf_counter() - start
    if verbose:
        print(f"feature cache '{name}': {reason} ({' x '.join(map(str, features.shape))}, {seconds:.2f} s) -> {folder}")
    return CacheResult(features, labels, folder, fp, built, reason, seconds)


def _prune(name_dir: Path, keep: Path, keep_old: int) -> None:
    """Remove leftover temporary folders and all but the ``keep_old`` newest other caches of this name."""
    others = []
    for folder in name_dir.iterdir():
        if folder == keep or not folder.is_dir():
            continue
        if folder.name.startswith("."):
            if time.time() - folder.stat().st_mtime > 3600:  # an abandoned write, not one in progress
                shutil.rmtree(folder, ignore_errors=True)
            continue
        others.append(folder)
    others.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for folder in others[keep_old:]:
        shutil.rmtree(folder, ignore_errors=True)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (VmHWM from /proc on Linux, ru_maxrss elsewhere), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs); False where not supported."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def cache_boundary(model: nn.Module, dataset: Dataset, first_trainable: str, name: str, **kwargs) -> CacheResult:
    """Scenario B's cache: the activations where the frozen stages end, just before stage ``first_trainable``.

    The frozen trunk (``backbones.split_at``) runs once per image; the trainable stages and the head then train
    from the saved activations. The fingerprint covers the trunk's weights only (and which boundary it is), so
    training the later stages does not invalidate it; changing a frozen weight, the transform or the data does.
    Keyword arguments go to cache_features (root, batch_size, device, ...).
    """
    from .backbones import family_of, split_at

    trunk, _ = split_at(model, first_trainable)
    boundary = f"boundary before {first_trainable} of {family_of(model)}"
    transform_id = kwargs.pop("transform_id", None) or describe_transform(dataset)
    return cache_features(
        trunk, dataset, name, feature_fn=lambda m, x: m(x), transform_id=f"{transform_id} | {boundary}", **kwargs
    )
