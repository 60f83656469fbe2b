"""The grader's report: one row per student and test cell plus a TOTAL row, as CSV and as Markdown.

Every CSV field is quoted, and a field a spreadsheet would take for a formula gets a leading quote. The
Markdown report starts with how the runs were isolated and limited, then who needs review, warnings, the
totals, every test cell, and the files that were not graded.

Names and messages come from students (file names, exception text) and are shown, never obeyed: ``plain``
writes control and format characters (escape sequences, newlines in names, bidirectional overrides) and bytes
that are not UTF-8 as visible escapes, for the console and the CSV; ``md_text`` and ``md_code`` also make
Markdown and HTML syntax literal, so that a message cannot add an image, a link or a line to the report.
"""

from __future__ import annotations

import csv
import io
import os
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..paths import atomic_write_text
from .sandbox import Isolation, Limits

REPORT_FIELDS = ["student", "submission", "exercise", "test", "status", "points", "points_possible", "note", "message"]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Row:
    """One line of the report: a student's result on one test cell (test 'TOTAL' for the sum)."""

    student: str
    submission: str
    exercise: str
    test: str
    # pass | fail | review | deleted | timeout | crashed | invalid-notebook | wrong-exercise | refused;
    # on the TOTAL row: total | review
    status: str
    points: float
    points_possible: float
    note: str = ""
    message: str = ""


@dataclass
class Batch:
    """The result of grading a folder: rows, how the runs were isolated and limited, what was not graded."""

    rows: list[Row]
    isolation: Isolation
    limits: Limits
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    not_graded: list[str] = field(default_factory=list)  # submissions left when grading was interrupted


# --------------------------------------------------------------------------------------- student text
HIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, format (bidi), surrogates, unassigned
MARKDOWN_SPECIALS = set("\\`*_{}[]()<>#+!|~$&")


def display_name(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (a Windows zip's names) as \\xNN, controls escaped (``plain``)."""
    raw = os.fsencode(name) if isinstance(name, str) else bytes(name)
    return plain(raw.decode("utf-8", errors="backslashreplace"))


def plain(text, newlines: bool = False) -> str:
    """``text`` with every control, format or unpaired-surrogate character written as a visible escape.

    With ``newlines`` a line feed is kept (a multi-line message); otherwise it is written as \\n too, so that a
    name can never start a line of its own. Escape sequences, carriage returns and bidirectional overrides
    are always escaped.
    """
    text = str(text)
    if text.isprintable():
        return text
    out = []
    for char in text:
        if (char == "\n" and newlines) or unicodedata.category(char) not in HIDDEN_CATEGORIES:
            out.append(char)
        elif "\udc80" <= char <= "\udcff":  # a byte that was not UTF-8, as os.fsdecode keeps it
            out.append(f"\\x{ord(char) - 0xDC00:02x}")
        else:
            out.append(char.encode("unicode_escape").decode("ascii") if ord(char) < 0x10000 else f"\\U{ord(char):08x}")
    return "".join(out)


def md_text(text, newlines: bool = True) -> str:
    """``text`` as literal Markdown inline text: no image, link, HTML or emphasis can come from it; lines as <br>."""
    text = plain(text, newlines=newlines)
    out = []
    for char in text:
        if char == "&":
            out.append("&amp;")
        elif char == "<":
            out.append("&lt;")
        elif char == ">":
            out.append("&gt;")
        elif char in MARKDOWN_SPECIALS:
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out).replace("\n", "<br>")


def md_code(text) -> str:
    """``text`` as a Markdown code span (fenced with more backticks than it holds), on one line, outside tables."""
    text = plain(text)
    longest, run = 0, 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


# ------------------------------------------------------------------------------------------- report
def spreadsheet_safe(value: str) -> str:
    """``value`` with a leading quote when a spreadsheet would read it as a formula (=, +, -, @, tab, CR)."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def report_csv(rows: list[Row], isolation: Isolation | None = None) -> str:
    """The report as CSV text (one row per student and test, plus a TOTAL row per student); no formula can run."""
    buffer = io.StringIO()
    # Every field quoted: a carriage return or newline inside a name or message cannot start a new row.
    writer = csv.DictWriter(buffer, fieldnames=REPORT_FIELDS, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writeheader()
    for row in rows:
        data = asdict(row)
        data["points"], data["points_possible"] = f"{row.points:g}", f"{row.points_possible:g}"
        if row.test == "TOTAL" and isolation is not None and not isolation.isolated and "NOT ISOLATED" not in row.note:
            data["note"] = "; ".join(filter(None, ["NOT ISOLATED (see the report header)", row.note]))
        clean = {key: plain(value, newlines=key in ("note", "message")) for key, value in data.items()}
        writer.writerow({key: spreadsheet_safe(value) for key, value in clean.items()})
    return buffer.getvalue()


_md = md_text


def _html(text: str) -> str:
    """The grader's own text (not a student's) with only HTML made literal."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def report_markdown(batch: Batch, exercise: str, hidden: bool) -> str:
    """The report as Markdown: how runs were isolated, a summary per student, then every test cell's result."""
    rows = batch.rows
    totals = [r for r in rows if r.test == "TOTAL"]
    lines = [f"# Grades: {exercise}" + (" (with hidden tests)" if hidden else ""), ""]
    if batch.isolation.isolated:
        lines.append(f"Isolation: {_html(batch.isolation.summary)}.")
    else:
        lines += [
            f"> **WARNING: the submissions were NOT isolated.** {_html(batch.isolation.summary)}.",
            "> Install bubblewrap (`apt-get install bubblewrap`) and grade again before trusting these results.",
        ]
    lines += ["", f"Limits: {_html(batch.limits.describe())}.", ""]
    if batch.not_graded:
        lines += [
            f"> **Grading was interrupted: {len(batch.not_graded)} submission(s) were not graded** "
            f"({', '.join(md_text(n) for n in batch.not_graded[:20])}"
            f"{', ...' if len(batch.not_graded) > 20 else ''}). Grade them again.",
            "",
        ]
    review = [r for r in totals if r.status == "review"]
    if review:
        lines += ["## Needs review", ""]
        lines += [f"- {_md(r.student)} ({_md(r.submission)}): {_md(r.note)}" for r in review]
        lines.append("")
    if batch.warnings:
        lines += ["## Warnings", ""] + [f"- {_md(w)}" for w in batch.warnings] + [""]
    lines += ["| student | submission | points | of | status | notes |", "|---|---|---:|---:|---|---|"]
    for r in totals:
        points = f"{r.points:g} | {r.points_possible:g}"
        lines.append(f"| {_md(r.student)} | {_md(r.submission)} | {points} | {r.status} | {_md(r.note)} |")
    lines += [
        "",
        "## Test cells",
        "",
        "| student | test | result | points | note | message |",
        "|---|---|---|---:|---|---|",
    ]
    for r in rows:
        if r.test != "TOTAL":
            lines.append(
                f"| {_md(r.student)} | {_md(r.test)} | {r.status} | {r.points:g}/{r.points_possible:g} | {_md(r.note)} "
                f"| {_md(r.message)} |"
            )
    if batch.skipped:
        lines += ["", "## Files not graded", ""] + [f"- {md_code(label)}: {_md(why)}" for label, why in batch.skipped]
    return "\n".join(lines) + "\n"


def write_report(batch: Batch, stem: Path, exercise: str, hidden: bool) -> tuple[Path, Path]:
    """Write STEM.csv and STEM.md atomically; return both paths."""
    stem = Path(stem)
    if stem.suffix in (".csv", ".md"):
        stem = stem.with_suffix("")
    csv_path, md_path = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".md")
    atomic_write_text(csv_path, report_csv(batch.rows, batch.isolation))
    atomic_write_text(md_path, report_markdown(batch, exercise, hidden))
    return csv_path, md_path
