"""Turn a folder of your own photos into data/my_pets/{tigger,misty,neither}/ for lesson 02.

    python data_scripts/make_dataset.py SOURCE [--dest data/my_pets] [--classes tigger,misty,neither] [--replace]

(``data_scripts/make_dataset.py`` is the front door; the work is done here, photo by photo with
``course_utils.folders.add_photos``, the upload box's way.)

SOURCE holds one sub-folder per class (SOURCE/tigger/, SOURCE/misty/, SOURCE/neither/; photos may sit in
deeper folders). Every file is opened and checked (the same check as lesson 02 and the upload widget); readable
photos are copied byte for byte, anything else (.DS_Store, a broken download, an HEIC photo, a text file) is
skipped with the reason. SOURCE is only read, never changed. Nothing in DEST is ever deleted:

* First run: the dataset is assembled in a temporary folder next to DEST and renamed into place when complete.
* Run again (after adding photos to SOURCE): only the new photos are copied; photos already in DEST (same bytes,
  under any name, e.g. uploaded with lesson 02's widget) are not copied twice. No rebuild is needed.
* ``--replace`` rebuilds DEST from SOURCE, for example after you deleted or moved photos in SOURCE. Photos that
  only ever lived in DEST (uploads, files copied by hand) are kept and listed; photos that an earlier run copied
  from SOURCE and that are no longer there are moved to DEST.removed-<time>/ and listed, never deleted.

Renamed files (two photos with one name, photos from sub-folders) and identical duplicates are listed.
Exit status 0 on success, 1 with a message otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .folders import PhotoIndex, add_photos, free_name, safe_photo_name
from .images import image_problem
from .paths import DataError, atomic_write_text, file_sha256
from .pets import my_pets_dir

DEFAULT_CLASSES = ("tigger", "misty", "neither")
MANIFEST = ".make_dataset.json"  # in DEST: the sha256 of every photo that came from a source folder


class DatasetError(DataError):
    """The source cannot become a dataset; the message says what to do."""


@dataclass
class Report:
    """What a run did: photos copied, already there, renamed, duplicates, skipped, kept and moved aside."""

    source: Path
    dest: Path
    copied: dict[str, list[Path]] = field(default_factory=dict)  # class -> new files in DEST
    already: dict[str, int] = field(default_factory=dict)  # class -> source photos already in DEST (same bytes)
    counts: dict[str, int] = field(default_factory=dict)  # class -> files in DEST after the run
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # source file, why it is not usable
    renamed: list[tuple[Path, Path, str]] = field(default_factory=list)  # source file, DEST file, why
    duplicates: list[tuple[Path, str]] = field(default_factory=list)  # source file not copied, why
    kept: list[Path] = field(default_factory=list)  # (--replace) files that only lived in DEST, kept
    moved_aside: list[tuple[Path, Path]] = field(default_factory=list)  # (--replace) old DEST file, where it went

    def summary(self) -> str:
        """Lines a person reads: per-class counts, then every renamed, duplicate, skipped, kept or moved file."""
        new = sum(map(len, self.copied.values()))
        lines = [
            f"{self.dest}: {sum(self.counts.values())} photos "
            f"({new} new from {self.source}, {sum(self.already.values())} already there)"
        ]
        for name, count in self.counts.items():
            lines.append(f"  {name:<10} {count:>5}   (+{len(self.copied.get(name, []))} new)")
        for src, dst, why in self.renamed:
            lines.append(f"  renamed {self._src(src)} -> {dst.relative_to(self.dest)} ({why})")
        lines += [f"  not copied {self._src(src)}: {why}" for src, why in self.duplicates]
        lines += [f"  skipped {self._src(src)}: {why}" for src, why in self.skipped]
        if self.kept:
            lines.append(
                f"  kept {len(self.kept)} file(s) that were only in {self.dest} (uploads or copied by hand; "
                "delete them yourself if you do not want them):"
            )
            lines += [f"    {path.relative_to(self.dest)}" for path in self.kept]
        if self.moved_aside:
            lines.append(f"  moved aside {len(self.moved_aside)} photo(s) that are no longer in {self.source}:")
            lines += [f"    {old} -> {new}" for old, new in self.moved_aside]
        return "\n".join(lines)

    def _src(self, path: Path) -> str:
        return str(path.relative_to(self.source))


@dataclass
class _Photo:
    cls: str
    path: Path
    sha: str


def find_class_folders(source: Path, classes: tuple[str, ...]) -> dict[str, Path]:
    """class -> its folder in ``source`` (names compared without case); a clear error if one is missing."""
    if not source.exists():
        raise DatasetError(
            f"the source folder {source} does not exist. Check the path, or make it with a sub-folder per class: "
            f"{', '.join(classes)}."
        )
    if not source.is_dir():
        raise DatasetError(f"{source} is a file, not a folder. Give a folder with a sub-folder per class.")
    found = {p.name.lower(): p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")}
    missing = [name for name in classes if name.lower() not in found]
    if missing:
        raise DatasetError(
            f"{source} has no folder for {', '.join(missing)} (found: {', '.join(sorted(found)) or 'none'}). "
            f"Put your photos in {source}/<class>/ for each of: {', '.join(classes)}."
        )
    return {name: found[name.lower()] for name in classes}


def _scan_source(folders: dict[str, Path], report: Report) -> list[_Photo]:
    photos, first_of = [], {}
    for name, folder in folders.items():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            problem = image_problem(path)
            if problem:
                report.skipped.append((path, problem))
                continue
            sha = file_sha256(path)
            if sha in first_of:
                other = first_of[sha]
                conflict = "" if other.cls == name else f" (labelled {other.cls} there, {name} here: which is it?)"
                report.duplicates.append((path, f"the same photo as {report._src(other.path)}{conflict}"))
                continue
            first_of[sha] = photo = _Photo(name, path, sha)
            photos.append(photo)
    return photos


def _index(folder: Path) -> dict[str, Path]:
    """sha256 -> file, for every file under ``folder`` (the manifest excluded)."""
    return PhotoIndex(folder, exclude=[MANIFEST]).by_sha


def _read_manifest(dest: Path) -> set[str]:
    try:
        return set(json.loads((dest / MANIFEST).read_text(encoding="utf-8")).get("photos", {}).values())
    except (OSError, ValueError, AttributeError):
        return set()


def _write_manifest(dest: Path, shas: dict[str, str], source: Path) -> None:
    record = {"note": "written by data_scripts/make_dataset.py", "source": str(source), "photos": shas}
    atomic_write_text(dest / MANIFEST, json.dumps(record, indent=1, sort_keys=True) + "\n")


def _copy_into(photos: list[_Photo], root: Path, report: Report) -> dict[str, str]:
    """Add each photo to root/<class>/ with course_utils.folders.add_photos (the upload box's way: atomic, never
    an overwrite, never a photo already in ``root`` under any name); returns the manifest entries."""
    manifest = {}
    index = PhotoIndex(root, exclude=[MANIFEST])
    for cls in dict.fromkeys(photo.cls for photo in photos):
        mine = [photo for photo in photos if photo.cls == cls]
        results = add_photos([(p.path.name, p.path) for p in mine], root / cls, index, checked=True)
        for photo, added in zip(mine, results, strict=True):
            if added.same_as is not None:
                where = added.same_as.relative_to(root)
                if where.parts[0] == photo.cls:
                    report.already[photo.cls] = report.already.get(photo.cls, 0) + 1
                    manifest[where.as_posix()] = photo.sha
                else:
                    why = (
                        f"the same photo is already in {root.name}/{where.as_posix()} "
                        f"(move it there by hand if it is a {photo.cls})"
                    )
                    report.duplicates.append((photo.path, why))
                continue
            target = added.saved
            report.copied.setdefault(photo.cls, []).append(target)
            inner = photo.path.parent.relative_to(report.source).parts[1:]
            why = []
            safe = safe_photo_name(photo.path.name)
            if safe != photo.path.name:
                why.append("characters a file name should not hold replaced by _")
            if target.name != safe:
                why.append(f"a photo named {safe} is already there")
            if inner:
                why.append(f"flattened from the sub-folder {'/'.join(inner)}/")
            if why:
                report.renamed.append((photo.path, report.dest / photo.cls / target.name, "; ".join(why)))
            manifest[f"{photo.cls}/{target.name}"] = photo.sha
    return manifest


def _count(root: Path, classes: tuple[str, ...]) -> dict[str, int]:
    return {name: sum(1 for p in (root / name).rglob("*") if p.is_file()) for name in classes}


def make_dataset(
    source: str | Path, dest: str | Path, classes: tuple[str, ...] = DEFAULT_CLASSES, replace: bool = False
) -> Report:
    """Copy the readable photos of source/<class>/ into dest/<class>/ (see the module's help); never deletes."""
    source, dest = Path(source).expanduser().resolve(), Path(dest).expanduser().resolve()
    folders = find_class_folders(source, classes)
    if dest == source or source in dest.parents or dest in source.parents:
        raise DatasetError(f"the destination {dest} and the source {source} overlap; choose separate folders.")
    report = Report(source, dest)
    photos = _scan_source(folders, report)
    existing = _index(dest) if dest.exists() else {}
    have = {photo.cls for photo in photos} | {p.relative_to(dest).parts[0] for p in existing.values()}
    empty = [name for name in classes if name not in have]
    if empty:
        raise DatasetError(
            f"no readable photos for {', '.join(empty)} in {source}; add some and run again. Nothing was written.\n"
            + report.summary()
        )
    if dest.exists() and not replace:  # add the new photos; nothing else changes
        manifest = _copy_into(photos, dest, report)
        _write_manifest(dest, {**_manifest_entries(dest), **manifest}, source)
    else:  # a new dataset (or a rebuild), assembled beside DEST and renamed into place when complete
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
        try:
            built = tmp / dest.name
            built.mkdir()
            for name in classes:
                (built / name).mkdir()
            manifest = _copy_into(photos, built, report)
            _write_manifest(built, manifest, source)
            if dest.exists():
                _rebuild(dest, built, report)
            else:
                os.replace(built, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        report.copied = {k: [dest / p.relative_to(built) for p in v] for k, v in report.copied.items()}
    report.counts = _count(dest, classes)
    return report


def _manifest_entries(dest: Path) -> dict[str, str]:
    try:
        return dict(json.loads((dest / MANIFEST).read_text(encoding="utf-8")).get("photos", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def _rebuild(dest: Path, built: Path, report: Report) -> None:
    """Swap ``built`` in for ``dest``: files only in ``dest`` are kept, photos gone from the source moved aside."""
    from_source = _read_manifest(dest)
    new = _index(built)
    backup = dest.with_name(f"{dest.name}.removed-{time.strftime('%Y%m%d-%H%M%S')}")
    to_backup = []
    for sha, old in _index(dest).items():
        if sha in new:
            continue  # the same photo is in the new dataset
        rel = old.relative_to(dest)
        if sha in from_source:
            to_backup.append(rel)  # an earlier run copied it from the source, which no longer has it
            continue
        target = built / rel.parent / free_name(built / rel.parent, rel.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(old, target)  # only ever lived in DEST: keep it
        report.kept.append(dest / target.relative_to(built))
    old_dir = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
    os.replace(dest, old_dir / dest.name)
    os.replace(built, dest)
    old = old_dir / dest.name
    for rel in to_backup:
        (backup / rel.parent).mkdir(parents=True, exist_ok=True)
        os.replace(old / rel, backup / rel)
        report.moved_aside.append((rel, backup / rel))
    now = _index(dest)
    for sha, path in _index(old).items():  # anything not safely elsewhere goes to the backup too, never lost
        if sha not in now:
            rel = path.relative_to(old)
            (backup / rel.parent).mkdir(parents=True, exist_ok=True)
            os.replace(path, backup / rel)
            report.moved_aside.append((rel, backup / rel))
    shutil.rmtree(old_dir)


def main(argv: list[str] | None = None) -> int:
    """`python data_scripts/make_dataset.py SOURCE ...`: exit status 0 on success, 1 with a message otherwise."""
    parser = argparse.ArgumentParser(prog="make_dataset.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="folder with one sub-folder of photos per class")
    parser.add_argument("--dest", type=Path, default=None, help="where the dataset goes (default: data/my_pets)")
    parser.add_argument("--classes", default=",".join(DEFAULT_CLASSES), help="comma-separated class folder names")
    parser.add_argument(
        "--replace", action="store_true", help="rebuild DEST from SOURCE (files only in DEST are kept, nothing deleted)"
    )
    args = parser.parse_args(argv)
    dest = args.dest or my_pets_dir()
    try:
        report = make_dataset(
            args.source, dest, tuple(c.strip() for c in args.classes.split(",") if c.strip()), args.replace
        )
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
