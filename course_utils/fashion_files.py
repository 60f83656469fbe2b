"""Fashion-MNIST's files on disk: where they live, how they are checked and installed (no torch import).

Kept apart from course_utils.data so that `make setup` can check the data in well under a second.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np

from .paths import DataError, atomic_writer, data_dir, file_sha256

# sha256 of the uncompressed idx files (identical in torchvision's download and Debian's package).
FASHION_FILES = {
    "train-images-idx3-ubyte": ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 2051, 60000),
    "train-labels-idx1-ubyte": ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 2049, 60000),
    "t10k-images-idx3-ubyte": ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 2051, 10000),
    "t10k-labels-idx1-ubyte": ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 2049, 10000),
}
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def fashion_mnist_raw_dir() -> Path:
    """Where the uncompressed Fashion-MNIST files live (torchvision's layout: data/FashionMNIST/raw)."""
    return data_dir() / "FashionMNIST" / "raw"


def check_fashion_mnist(raw_dir: Path | None = None, full_hash: bool = True) -> list[str]:
    """Problems with the Fashion-MNIST files (empty list: all four present, right size, right hash)."""
    raw_dir = raw_dir or fashion_mnist_raw_dir()
    problems = []
    for name, (sha, magic, count) in FASHION_FILES.items():
        path = raw_dir / name
        if not path.is_file():
            problems.append(f"{path} is missing")
            continue
        with open(path, "rb") as handle:
            header = np.frombuffer(handle.read(8), dtype=">i4")
        expected_size = 8 + count if magic == 2049 else 16 + count * 28 * 28
        if len(header) < 2 or header[0] != magic or header[1] != count or path.stat().st_size != expected_size:
            problems.append(f"{path} is not a complete idx file ({path.stat().st_size} bytes)")
        elif full_hash and file_sha256(path) != sha:
            problems.append(f"{path} has the wrong sha256")
    return problems


def install_fashion_mnist_from_gz(source_dir: Path, raw_dir: Path | None = None) -> Path:
    """Decompress the four .gz files of ``source_dir`` (e.g. Debian's package) into raw_dir, atomically, checked."""
    raw_dir = raw_dir or fashion_mnist_raw_dir()
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name, (sha, _, _) in FASHION_FILES.items():
        src = Path(source_dir) / f"{name}.gz"
        if not src.is_file():
            raise DataError(f"{src} is missing")

        def right_hash(tmp: Path, name: str = name, sha: str = sha, src: Path = src) -> None:
            if file_sha256(tmp) != sha:
                raise DataError(f"{src} does not hold the real Fashion-MNIST {name} (wrong sha256)")

        try:
            with atomic_writer(raw_dir / name, check=right_hash) as fout, gzip.open(src, "rb") as fin:
                shutil.copyfileobj(fin, fout, 1 << 20)
        except (OSError, EOFError) as exc:
            raise DataError(f"{src} could not be decompressed: {exc}") from exc
    return raw_dir
