#!/usr/bin/env python
"""Fetch and check a dataset into data/ (or $COURSE_DATA_DIR).

    python data_scripts/fetch_data.py fashion-mnist [--source auto|download|debian] [--debian-dir DIR]

fashion-mnist: already there and checked -> torchvision's download -> the files of Debian's package
`dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist). Every file is checked (size, header,
sha256) before use and placed atomically. Exit status 0 when ready; 3 when nothing worked and
installing Debian's package would help (the Makefile does that, then runs this again); 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_utils.fashion_files import (  # noqa: E402
    DEBIAN_FASHION_DIR, DataError, check_fashion_mnist, fashion_mnist_raw_dir, install_fashion_mnist_from_gz,
)
from course_utils.weights import offline_requested, record_provenance  # noqa: E402

NEEDS_DEBIAN_PACKAGE = 3


def download_fashion_mnist(raw_dir: Path) -> None:
    """torchvision's own download (mirrors, md5 of each .gz), into a temp folder, then checked and moved."""
    from torchvision.datasets import FashionMNIST

    with tempfile.TemporaryDirectory(dir=raw_dir.parent.parent) as tmp:
        FashionMNIST(tmp, train=True, download=True)
        FashionMNIST(tmp, train=False, download=True)
        install_fashion_mnist_from_gz(Path(tmp) / "FashionMNIST" / "raw", raw_dir)


def fetch_fashion_mnist(source: str, debian_dir: Path) -> int:
    raw_dir = fashion_mnist_raw_dir()
    if not check_fashion_mnist(raw_dir):
        print(f"fashion-mnist: ready in {raw_dir} (checked)")
        return 0
    tried = []
    if source in ("auto", "download") and not offline_requested():
        try:
            download_fashion_mnist(raw_dir)
            record_provenance("data:fashion-mnist", {"source": "torchvision download", "path": str(raw_dir)})
            print(f"fashion-mnist: downloaded into {raw_dir}")
            return 0
        except Exception as exc:  # any network or integrity failure: try the next source
            tried.append(f"torchvision download: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    if source in ("auto", "debian"):
        if debian_dir.is_dir():
            try:
                install_fashion_mnist_from_gz(debian_dir, raw_dir)
                record_provenance("data:fashion-mnist", {"source": f"Debian package dataset-fashion-mnist ({debian_dir})",
                                                         "path": str(raw_dir)})
                print(f"fashion-mnist: installed from {debian_dir} into {raw_dir} (checked)")
                return 0
            except DataError as exc:
                tried.append(f"Debian files: {exc}")
        else:
            tried.append(f"Debian files: {debian_dir} does not exist")
    print("fashion-mnist: FAILED. Tried:\n  - " + "\n  - ".join(tried), file=sys.stderr)
    print(
        "What to do: connect to the internet and run this again, or install Debian's package "
        "(`sudo apt-get install dataset-fashion-mnist`; `make lab`/`make test` do this for you), "
        "or copy the four Fashion-MNIST .gz files into a folder and pass --debian-dir FOLDER.",
        file=sys.stderr,
    )
    return NEEDS_DEBIAN_PACKAGE if not debian_dir.is_dir() else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=["fashion-mnist"])
    parser.add_argument("--source", choices=["auto", "download", "debian"], default="auto")
    parser.add_argument("--debian-dir", type=Path, default=DEBIAN_FASHION_DIR)
    args = parser.parse_args(argv)
    return fetch_fashion_mnist(args.source, args.debian_dir)


if __name__ == "__main__":
    sys.exit(main())
