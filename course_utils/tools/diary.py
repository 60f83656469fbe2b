"""The learning diary: fill a Markdown template's live counters.

    course diary DIARY.template.md [-o DIARY.md] [--today YYYY-MM-DD] [--repo DIR]

Placeholders (DAY_ and DAYS_ are both accepted):

* {{DATE_PRETTY}}: today, e.g. "Friday, 27 November 2026";
* {{DAYS_SINCE_YYYY_MM_DD}} or {{DAY_SINCE_YYYY_MM_DD}}: days since that date (0 on the day itself);
* {{DAYS_SINCE_REPO_START}} or {{DAY_SINCE_REPO_START}}: days since you started your working folder, the one the
  diary sits in (or --repo): in git, the date of its first commit; outside git (or before the first commit),
  the oldest date the folder shows: its creation time where the system records it (macOS, Windows), else the
  oldest modification time of the folder and the files directly in it (`course init` writes them all at once).

Any other {{NAME}} is an error that names it and suggests the nearest known name.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import re
import subprocess
import sys
from pathlib import Path

from ..paths import atomic_write_text

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
DAY_SINCE = re.compile(r"DAYS?_SINCE_(\d{4})_(\d{2})_(\d{2})")
LOOKS_LIKE_A_DATE = re.compile(r"DAYS?_SINCE_\d+_\d+_\d+")
REPO_START = ("DAYS_SINCE_REPO_START", "DAY_SINCE_REPO_START")
KNOWN = ("DATE_PRETTY", *REPO_START, "DAYS_SINCE_YYYY_MM_DD", "DAY_SINCE_YYYY_MM_DD")
NOT_IN_GIT = "n/a (not in a git repository)"  # kept for older diaries' readers; no longer written


class DiaryError(ValueError):
    """The template names a placeholder the diary does not know, or a date that does not exist."""


def pretty_date(day: dt.date) -> str:
    """'Friday, 27 November 2026'."""
    return f"{day:%A}, {day.day} {day:%B %Y}"


def days_since(start: dt.date, today: dt.date) -> int:
    """Whole days from ``start`` to ``today`` (0 on the day itself)."""
    return (today - start).days


def repo_start_date(repo: Path) -> dt.date | None:
    """The date of the first commit of the git repository holding ``repo``; None outside git or with no commits."""
    try:
        out = subprocess.run(
            ["git", "log", "--reverse", "--format=%as", "--max-parents=0", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    dates = sorted(out.stdout.split())  # several roots (merged histories): the oldest
    if out.returncode != 0 or not dates:
        return None
    return dt.date.fromisoformat(dates[0])


def folder_start_date(folder: Path) -> dt.date:
    """Outside git: the folder's creation time where the system records it (st_birthtime: macOS, BSD, Windows),
    else the oldest modification time of the folder and of the files and folders directly in it."""
    info = folder.stat()
    birth = getattr(info, "st_birthtime", None)
    if birth:
        return dt.date.fromtimestamp(birth)
    times = [info.st_mtime]
    for entry in folder.iterdir():
        try:
            times.append(entry.stat().st_mtime)
        except OSError:  # a dangling link, a file that just went away
            continue
    return dt.date.fromtimestamp(min(times))


def working_folder_start(folder: Path) -> tuple[dt.date, str]:
    """When you started the working folder, and how that was found (for the note the command prints)."""
    first_commit = repo_start_date(folder)
    if first_commit is not None:
        return first_commit, "its first commit"
    return folder_start_date(folder), "not a git repository with commits: the folder's oldest date"


def _unknown(name: str) -> DiaryError:
    if LOOKS_LIKE_A_DATE.fullmatch(name):
        return DiaryError(
            f"{{{{{name}}}}}: write the date as YYYY_MM_DD with leading zeros, e.g. {{{{DAYS_SINCE_2025_08_18}}}}"
        )
    pattern = re.sub(r"\d{4}_\d{2}_\d{2}$", "YYYY_MM_DD", name.upper())
    close = difflib.get_close_matches(pattern, KNOWN, n=1, cutoff=0.6)
    hint = f": did you mean {{{{{close[0]}}}}}?" if close else ""
    known = ", ".join(f"{{{{{k}}}}}" for k in KNOWN)
    return DiaryError(f"unknown placeholder {{{{{name}}}}}{hint} (known: {known})")


def fill(template: str, today: dt.date, repo: Path | None = None) -> str:
    """Replace every placeholder in ``template``; raise DiaryError naming every unknown one (a line each).

    ``repo``: the working folder the repository counter counts from (required when the template uses it)."""
    start: list[dt.date] = []
    problems: list[str] = []

    def value(match: re.Match) -> str:
        try:
            return _value(match)
        except DiaryError as exc:
            problems.append(str(exc))
            return match.group(0)

    def _value(match: re.Match) -> str:
        name = match.group(1)
        if name == "DATE_PRETTY":
            return pretty_date(today)
        if name in REPO_START:
            if repo is None:
                raise DiaryError(f"{{{{{name}}}}} needs the working folder to count from (--repo DIR)")
            if not start:
                start.append(working_folder_start(repo)[0])
            return str(days_since(start[0], today))
        since = DAY_SINCE.fullmatch(name)
        if since:
            try:
                return str(days_since(dt.date(*map(int, since.groups())), today))
            except ValueError as exc:
                raise DiaryError(f"{{{{{name}}}}} names a date that does not exist: {exc}") from None
        raise _unknown(name)

    filled = PLACEHOLDER.sub(value, template)
    if problems:
        raise DiaryError("\n".join(dict.fromkeys(problems)))
    return filled


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="course diary", description=__doc__.split("\n\n")[0])
    parser.add_argument("template", type=Path)
    parser.add_argument("-o", "--output", type=Path, help="write here (atomically) instead of standard output")
    parser.add_argument("--today", type=dt.date.fromisoformat, default=None, help="YYYY-MM-DD (default: today)")
    parser.add_argument(
        "--repo",
        type=Path,
        default=None,
        help="your working folder, to count the days since you started it (default: the template's folder)",
    )
    args = parser.parse_args(argv)
    try:
        text = args.template.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"diary: cannot read template {args.template}: {exc.strerror}", file=sys.stderr)
        return 2
    repo = (args.repo or args.template).resolve()
    repo = repo if repo.is_dir() else repo.parent
    try:
        result = fill(text, args.today or dt.date.today(), repo)
    except DiaryError as exc:
        print("\n".join(f"diary: {line}" for line in str(exc).splitlines()), file=sys.stderr)
        return 2
    if any(match.group(1) in REPO_START for match in PLACEHOLDER.finditer(text)):
        start, how = working_folder_start(repo)
        if how != "its first commit":
            print(f"diary: {repo} is {how}, {start.isoformat()}", file=sys.stderr)
    if args.output:
        atomic_write_text(args.output, result)
    else:
        sys.stdout.write(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
