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


def test_shipped_template_on_2026_11_27(tmp_path):
    repo = git_repo(tmp_path / "mine", "2026-11-20")
    out = diary.fill((ROOT / "DIARY.template.md").read_text(), dt.date(2026, 11, 27), repo=repo)
    assert out.startswith("# My Diary\n")
    assert "Today **Friday, 27 November 2026**." in out
    assert "## General Counter" in out
    assert "It has been **466** days since I started this diary." in out
    assert "# Repository Counter" in out and "## Study log" in out
    assert "Day **7** From I started this repository" in out
    assert "{{" not in out


def test_day_since_any_date_in_both_spellings():
    assert diary.fill("{{DAY_SINCE_2026_11_27}}|{{DAY_SINCE_2024_02_28}}", dt.date(2026, 11, 27)) == "0|1003"
    assert diary.fill("{{DAYS_SINCE_2025_08_18}}|{{ DAY_SINCE_2025_08_18 }}", dt.date(2026, 11, 27)) == "466|466"


def test_days_since_repo_start_counts_from_the_first_commit_of_the_diarys_own_folder(tmp_path):
    repo = git_repo(tmp_path / "r", "2026-11-01")
    template = repo / "t.md"
    template.write_text("Day **{{DAYS_SINCE_REPO_START}}** From I started this repository ({{DAY_SINCE_REPO_START}})\n")
    result = run([str(template), "--today", "2026-11-27"])  # run from the course's checkout: its history is not yours
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Day **26** From I started this repository (26)\n"
    assert result.stderr == ""


def test_outside_git_counts_from_the_folders_oldest_date(tmp_path):
    folder = tmp_path / "my course"
    folder.mkdir()
    template = folder / "DIARY.template.md"
    template.write_text("Day {{DAYS_SINCE_REPO_START}}\n")
    (folder / "notes.md").write_text("my notes")
    started = dt.datetime(2026, 11, 2, 12).timestamp()  # the day `course init` wrote the folder
    for path in (folder, template, folder / "notes.md"):
        os.utime(path, (started, started))
    os.utime(folder / "notes.md", (started + 9 * 86400, started + 9 * 86400))  # edited later
    result = run([str(template), "--today", "2026-11-27"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = (dt.date(2026, 11, 27) - diary.folder_start_date(folder)).days
    assert result.stdout == f"Day {expected}\n"
    if not hasattr(os.stat(folder), "st_birthtime"):  # Linux: the oldest modification time is the start
        assert expected == 25
    assert result.stderr.startswith(f"diary: {folder} is not a git repository with commits: the folder's oldest")


def test_unknown_placeholders_are_all_named_with_the_nearest_known_name(tmp_path):
    template = tmp_path / "t.md"
    template.write_text("Hello {{DATE_PRETY}} {{FAVOURITE_CAT}} {{DAYS_SINCE_REPO_STRAT}} {{DAYS_SINCE_2025_8_18}}\n")
    result = run([str(template), "--today", "2026-11-27"])
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("diary: unknown placeholder {{DATE_PRETY}}: did you mean {{DATE_PRETTY}}? (known: ")
    assert lines[1].startswith("diary: unknown placeholder {{FAVOURITE_CAT}} (known: {{DATE_PRETTY}}, ")
    assert "{{DAYS_SINCE_REPO_STRAT}}: did you mean {{DAYS_SINCE_REPO_START}}?" in lines[2]
    assert lines[3] == (
        "diary: {{DAYS_SINCE_2025_8_18}}: write the date as YYYY_MM_DD with leading zeros, e.g. "
        "{{DAYS_SINCE_2025_08_18}}"
    )
    assert template.read_text().startswith("Hello {{DATE_PRETY}}")  # nothing written
    with pytest.raises(diary.DiaryError, match="did you mean \\{\\{DAYS_SINCE_YYYY_MM_DD\\}\\}"):
        diary.fill("{{DAYS_SINCE_2025_08_18_}}", dt.date(2026, 11, 27))
    with pytest.raises(diary.DiaryError, match="does not exist"):
        diary.fill("{{DAY_SINCE_2026_02_30}}", dt.date(2026, 11, 27))


def test_output_file_is_written_and_template_untouched(tmp_path):
    template = tmp_path / "t.md"
    template.write_text("{{DATE_PRETTY}}\n")
    result = run([str(template), "-o", str(tmp_path / "DIARY.md"), "--today", "2025-08-18"])
    assert result.returncode == 0 and result.stdout == ""
    assert (tmp_path / "DIARY.md").read_text() == "Monday, 18 August 2025\n"
    assert template.read_text() == "{{DATE_PRETTY}}\n"
