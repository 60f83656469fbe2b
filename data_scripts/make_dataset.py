#!/usr/bin/env python
"""Turn a folder of your own photos into data/my_pets/{tigger,misty,neither}/ for lesson 02.

    python data_scripts/make_dataset.py SOURCE [--dest data/my_pets] [--classes tigger,misty,neither] [--replace]

SOURCE holds one sub-folder per class (SOURCE/tigger/, SOURCE/misty/, SOURCE/neither/; photos may sit in
deeper folders). Every file is opened and checked; readable images are copied byte for byte, anything else
(.DS_Store, a broken download, a text file) is skipped and listed. SOURCE is only read, never changed. The
new dataset is assembled in a temporary folder next to DEST and renamed into place only when complete; an
existing DEST is kept unless --replace is given. Exit status 0 on success, 1 with a message otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_utils.images import image_problem  # noqa: E402
from course_utils.pets import my_pets_dir  # noqa: E402

DEFAULT_CLASSES = ("tigger", "misty", "neither")


class DatasetError(RuntimeError):
    """The source cannot become a dataset; the message says what to do."""


@dataclass
class Report:
    """What was copied and what was skipped (with the reason)."""

    copied: dict[str, list[Path]] = field(default_factory=dict)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self, source: Path, dest: Path) -> str:
        """Lines a person reads: per-class counts, then every skipped file and why."""
        lines = [f"{dest}: {sum(map(len, self.copied.values()))} photos from {source}"]
        lines += [f"  {name:<10} {len(files):>5}" for name, files in self.copied.items()]
        lines += [f"  skipped {path.relative_to(source)}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines)


def find_class_folders(source: Path, classes: tuple[str, ...]) -> dict[str, Path]:
    """class -> its folder in ``source`` (names compared without case); a clear error if one is missing."""
    if not source.is_dir():
        raise DatasetError(f"{source} is not a folder. Make one with a sub-folder per class: {', '.join(classes)}.")
    found = {p.name.lower(): p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")}
    missing = [name for name in classes if name.lower() not in found]
    if missing:
        raise DatasetError(
            f"{source} has no folder for {', '.join(missing)} (found: {', '.join(sorted(found)) or 'none'}). "
            f"Put your photos in {source}/<class>/ for each of: {', '.join(classes)}."
        )
    return {name: found[name.lower()] for name in classes}


def make_dataset(
    source: str | Path, dest: str | Path, classes: tuple[str, ...] = DEFAULT_CLASSES, replace: bool = False
) -> Report:
    """Copy the readable photos of source/<class>/ into dest/<class>/, atomically; return what happened."""
    source, dest = Path(source).expanduser().resolve(), Path(dest).expanduser().resolve()
    if dest == source or source in dest.parents or dest in source.parents:
        raise DatasetError(f"the destination {dest} and the source {source} overlap; choose separate folders.")
    if dest.exists() and not replace:
        raise DatasetError(f"{dest} already exists. Pass --replace to rebuild it (your source photos are not touched).")
    folders = find_class_folders(source, classes)
    report = Report()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        for name, folder in folders.items():
            (tmp / name).mkdir()
            report.copied[name] = []
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                problem = image_problem(path)
                if problem:
                    report.skipped.append((path, problem))
                    continue
                target = tmp / name / path.name
                n = 1
                while target.exists():  # same name in two sub-folders: keep both
                    target = tmp / name / f"{path.stem}_{n}{path.suffix}"
                    n += 1
                shutil.copyfile(path, target)
                report.copied[name].append(target)
        empty = [name for name, files in report.copied.items() if not files]
        if empty:
            raise DatasetError(
                f"no readable photos for {', '.join(empty)} in {source}; add some and run again. Nothing was written.\n"
                + report.summary(source, dest)
            )
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.replace(dest, old / dest.name)
            os.replace(tmp, dest)
            shutil.rmtree(old)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.copied = {name: [dest / name / p.name for p in files] for name, files in report.copied.items()}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="folder with one sub-folder of photos per class")
    parser.add_argument("--dest", type=Path, default=None, help="where the dataset goes (default: data/my_pets)")
    parser.add_argument("--classes", default=",".join(DEFAULT_CLASSES), help="comma-separated class folder names")
    parser.add_argument("--replace", action="store_true", help="rebuild DEST if it already exists")
    args = parser.parse_args(argv)
    dest = args.dest or my_pets_dir()
    try:
        report = make_dataset(
            args.source, dest, tuple(c.strip() for c in args.classes.split(",") if c.strip()), args.replace
        )
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.summary(Path(args.source).expanduser().resolve(), Path(dest).resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
