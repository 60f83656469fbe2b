"""The learning diary: fill a Markdown template's live counters.

    course diary DIARY.template.md [-o DIARY.md] [--today YYYY-MM-DD] [--repo DIR]

Placeholders: {{DATE_PRETTY}} (e.g. "Friday, 27 November 2026"), {{DAY_SINCE_YYYY_MM_DD}} (days since
that date), {{DAYS_SINCE_REPO_START}} (days since the repository's first commit). Any other
{{NAME}} is an error that names it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

from ..paths import atomic_write_text

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
DAY_SINCE = re.compile(r"DAY_SINCE_(\d{4})_(\d{2})_(\d{2})")
NOT_IN_GIT = "n/a (not in a git repository)"


class DiaryError(ValueError):
    """The template names a placeholder the diary does not know, or a date that does not exist."""


def pretty_date(day: dt.date) -> str:
    """'Friday, 27 November 2026'."""
    return f"{day:%A}, {day.day} {day:%B %Y}"


def days_since(start: dt.date, today: dt.date) -> int:
    """Whole days from ``start`` to ``today`` (0 on the day itself)."""
    return (today - start).days


def repo_start_date(repo: Path) -> dt.date | None:
    """The date of the repository's first commit, or None outside git (or with no commits)."""
    try:
        out = subprocess.run(
            ["git", "log", "--reverse", "--format=%cs", "--max-parents=0", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or not lines:
        return None
    return dt.date.fromisoformat(lines[0])


def fill(template: str, today: dt.date, repo: Path | None = None) -> str:
    """Replace every placeholder in ``template``; raise DiaryError naming any unknown one."""
    start = repo_start_date(repo) if repo is not None else None

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name == "DATE_PRETTY":
            return pretty_date(today)
        if name == "DAYS_SINCE_REPO_START":
            return str(days_since(start, today)) if start else NOT_IN_GIT
        since = DAY_SINCE.fullmatch(name)
        if since:
            try:
                return str(days_since(dt.date(*map(int, since.groups())), today))
            except ValueError as exc:
                raise DiaryError(f"{{{{{name}}}}} names a date that does not exist: {exc}") from None
        raise DiaryError(
            f"unknown placeholder {{{{{name}}}}}; known: {{{{DATE_PRETTY}}}}, {{{{DAY_SINCE_YYYY_MM_DD}}}}, "
            "{{DAYS_SINCE_REPO_START}}"
        )

    return PLACEHOLDER.sub(value, template)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="course diary", description=__doc__.split("\n\n")[0])
    parser.add_argument("template", type=Path)
    parser.add_argument("-o", "--output", type=Path, help="write here (atomically) instead of standard output")
    parser.add_argument("--today", type=dt.date.fromisoformat, default=None, help="YYYY-MM-DD (default: today)")
    parser.add_argument(
        "--repo", type=Path, default=None, help="git repository to count from (default: the template's folder)"
    )
    args = parser.parse_args(argv)
    try:
        text = args.template.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"diary: cannot read template {args.template}: {exc.strerror}", file=sys.stderr)
        return 2
    repo = args.repo or args.template.resolve().parent
    try:
        result = fill(text, args.today or dt.date.today(), repo)
    except DiaryError as exc:
        print(f"diary: {exc}", file=sys.stderr)
        return 2
    if "{{DAYS_SINCE_REPO_START}}" in text.replace(" ", "") and repo_start_date(repo) is None:
        print(f"diary: {repo} is not a git repository with commits; wrote '{NOT_IN_GIT}'", file=sys.stderr)
    if args.output:
        atomic_write_text(args.output, result)
    else:
        sys.stdout.write(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
