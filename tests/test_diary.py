"""The learning diary's live counters, with fixed dates."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest
from helpers import course

from course_utils.tools import diary

ROOT = Path(__file__).resolve().parents[1]


def run(args, cwd=None):
    return course("diary", *args, cwd=cwd or ROOT, timeout=60)


def git_repo(path: Path, first_commit: str) -> Path:
    path.mkdir()
    env = {
        **os.environ,
        "GIT_AUTHOR_DATE": f"{first_commit}T12:00:00",
        "GIT_COMMITTER_DATE": f"{first_commit}T12:00:00",
    }
    for args in (
        ["init", "-q"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "start"],
    ):
        subprocess.run(["git", *args], cwd=path, env=env, check=True)
    return path


def test_shipped_template_on_2026_11_27():
    out = diary.fill((ROOT / "DIARY.template.md").read_text(), dt.date(2026, 11, 27), repo=None)
    assert out.startswith("# My Diary\n")
    assert "Today **Friday, 27 November 2026**." in out
    assert "## General Counter" in out
    assert "It has been **466** days since I started this diary." in out
    assert "# Repository Counter" in out and "## Study log" in out
    assert "{{" not in out


def test_day_since_any_date():
    assert diary.fill("{{DAY_SINCE_2026_11_27}}|{{DAY_SINCE_2024_02_28}}", dt.date(2026, 11, 27)) == "0|1003"


def test_days_since_repo_start_counts_from_first_commit(tmp_path):
    repo = git_repo(tmp_path / "r", "2026-11-01")
    template = repo / "t.md"
    template.write_text("Day **{{DAYS_SINCE_REPO_START}}** From I started this repository\n")
    result = run([str(template), "--today", "2026-11-27"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Day **26** From I started this repository\n"


def test_outside_git_falls_back_clearly(tmp_path):
    template = tmp_path / "t.md"
    template.write_text("Day {{DAYS_SINCE_REPO_START}}\n")
    result = run([str(template), "--today", "2026-11-27"], cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == f"Day {diary.NOT_IN_GIT}\n"
    assert "not a git repository" in result.stderr


def test_unknown_placeholder_is_an_error_naming_it(tmp_path):
    template = tmp_path / "t.md"
    template.write_text("Hello {{DATE_PRETTY}} {{FAVOURITE_CAT}}\n")
    result = run([str(template), "--today", "2026-11-27"])
    assert result.returncode == 2
    assert "{{FAVOURITE_CAT}}" in result.stderr and result.stdout == ""
    with pytest.raises(diary.DiaryError, match="does not exist"):
        diary.fill("{{DAY_SINCE_2026_02_30}}", dt.date(2026, 11, 27))


def test_output_file_is_written_and_template_untouched(tmp_path):
    template = tmp_path / "t.md"
    template.write_text("{{DATE_PRETTY}}\n")
    result = run([str(template), "-o", str(tmp_path / "DIARY.md"), "--today", "2025-08-18"])
    assert result.returncode == 0 and result.stdout == ""
    assert (tmp_path / "DIARY.md").read_text() == "Monday, 18 August 2025\n"
    assert template.read_text() == "{{DATE_PRETTY}}\n"
