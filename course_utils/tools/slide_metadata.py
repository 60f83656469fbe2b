"""Slide metadata derived from a lesson's structure, so every lesson reads as a deck (reveal.js and RISE).

    course notebooks slides [PATH ...]           write the derived metadata (default: the lessons)
    course notebooks slides --check [PATH ...]   list cells whose metadata differs (exit 1)

Nobody sets ``metadata.slideshow.slide_type`` by hand: it follows from the notebook, so after anyone edits a
lesson, running the command again restores a deck that reads well. The rules, in order:

1. a cell tagged ``slide:TYPE`` (TYPE one of slide, subslide, fragment, -, skip, notes) gets TYPE: the author's
   explicit choice, e.g. ``slide:notes`` for speaker notes;
2. the parameters cell and empty cells are skipped (sizes are not lecture material);
3. the title cell (the first cell) and every Markdown cell that opens with a ``## `` heading start a slide;
4. a Markdown cell that opens with a ``### `` heading starts a subslide (reveal.js: one step down);
5. a cell that would overflow the current (sub)slide starts a subslide of its own: a slide holds about
   ``LINES_PER_SLIDE`` lines, counting wrapped Markdown, code, and the room its output takes (a figure or a
   widget counts ``FIGURE_LINES``, a checked cell its committed output);
6. a checked cell (``# NBVAL_CHECK_OUTPUT``) right after the code it checks is a fragment: the check appears on
   the next click, after the class has seen the code. It stays with that code even when the slide is then up to
   ``CHECK_SLACK`` lines too long (the slide scrolls): a check alone on a slide says nothing;
7. everything else continues the current slide (``-``).

The notebook also gets RISE's settings (``metadata.rise``): a slide that is still too long scrolls, and the white
theme, whose fonts ship with reveal.js (the default theme loads fonts from the web).
Deterministic and idempotent: the same notebook always gives the same metadata, and a second run changes nothing.
"""

from __future__ import annotations

import math
import re

SLIDE_TYPES = ("slide", "subslide", "fragment", "-", "skip", "notes")
OVERRIDE_TAG = "slide:"
LINES_PER_SLIDE = 24
WRAP = 90  # characters per line on a slide, Markdown and code alike
FIGURE_LINES = 12
CHECK_SLACK = 8
RISE_SETTINGS = {"scroll": True, "theme": "white"}  # white: reveal.js's own fonts, none from the web
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
DRAWS = re.compile(
    r"\bplt\.|\.plot\(|\bimshow\(|\bsubplots\(|\bshow_image_grid\(|\bplot_\w+\(|\bdisplay\(|_explorer\(|_widget\("
)
PRINTS = re.compile(r"\bprint\(")
FENCED_CODE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _wrapped(line: str) -> int:
    return max(1, math.ceil(len(line) / WRAP))


def cell_lines(cell) -> float:
    """About how many lines a cell takes on a slide: its source, and the room its output needs."""
    lines = cell.source.splitlines()
    height = sum(_wrapped(line) if line.strip() else 0.5 for line in lines)
    if cell.cell_type == "markdown":
        return height + FIGURE_LINES * cell.source.count("![")
    if CHECK_MARK in cell.source and cell.get("outputs"):
        for output in cell.outputs:
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            height += sum(_wrapped(line) for line in "".join(text).splitlines())
            height += FIGURE_LINES * any(key.startswith("image/") for key in output.get("data", {}))
        return height
    code = cell.source
    return height + (FIGURE_LINES if DRAWS.search(code) else 0) + len(PRINTS.findall(code))


def _heading_level(cell) -> int:
    if cell.cell_type != "markdown" or not cell.source.strip():
        return 0
    first = cell.source.lstrip().splitlines()[0]
    match = re.match(r"(#{1,6}) ", first)
    return len(match.group(1)) if match else 0


def _override(cell) -> str | None:
    for tag in cell.metadata.get("tags", []):
        if tag.startswith(OVERRIDE_TAG):
            kind = tag[len(OVERRIDE_TAG) :]
            if kind not in SLIDE_TYPES:
                raise ValueError(f"tag {tag!r}: the slide type must be one of {', '.join(SLIDE_TYPES)}")
            return kind
    return None


def slide_types(nb) -> list[str]:
    """The slide type of every cell of a notebook, by the rules in this module's docstring."""
    types: list[str] = []
    used = 0.0  # lines on the current (sub)slide so far
    previous = None  # the last cell shown on a slide
    for index, cell in enumerate(nb.cells):
        height = cell_lines(cell)
        kind = _override(cell)
        if kind is None:
            level = _heading_level(cell)
            if "parameters" in cell.metadata.get("tags", []) or not cell.source.strip():
                kind = "skip"
            elif index == 0 or level in (1, 2) or previous is None:
                kind = "slide"
            elif level == 3:
                kind = "subslide"
            elif CHECK_MARK in cell.source and previous.cell_type == "code":
                kind = "fragment" if used + height <= LINES_PER_SLIDE + CHECK_SLACK else "subslide"
            elif used + height > LINES_PER_SLIDE:
                kind = "subslide"
            else:
                kind = "-"
        types.append(kind)
        if kind in ("skip", "notes"):
            continue
        used = height if kind in ("slide", "subslide") else used + height
        previous = cell
    return types


def buried_headings(nb) -> list[str]:
    """Cells with a heading below their first line: it cannot start a slide (split the cell there)."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            text = FENCED_CODE.sub("", cell.source.strip())  # `# comments` in code blocks are no headings
            inner = [line for line in text.splitlines()[1:] if re.match(r"#{1,3} ", line)]
            if inner:
                found.append(f"cell {index}: heading {inner[0]!r} is not at the top of its cell")
    return found


def apply_slide_metadata(nb) -> bool:
    """Write the derived slide types (and RISE's settings) into a notebook in place; True if anything changed."""
    changed = False
    for cell, kind in zip(nb.cells, slide_types(nb), strict=True):
        if cell.metadata.get("slideshow") != {"slide_type": kind}:
            cell.metadata["slideshow"] = {"slide_type": kind}
            changed = True
    if nb.metadata.get("rise") != RISE_SETTINGS:
        nb.metadata["rise"] = dict(RISE_SETTINGS)
        changed = True
    return changed


def slide_problems(nb) -> list[str]:
    """Cells whose committed slide metadata differs from the derived one (empty when the deck is up to date)."""
    found = []
    for index, (cell, kind) in enumerate(zip(nb.cells, slide_types(nb), strict=True)):
        have = cell.metadata.get("slideshow", {}).get("slide_type")
        if have != kind:
            found.append(f"cell {index}: slide_type is {have!r}, the lesson's structure gives {kind!r}")
    if nb.metadata.get("rise") != RISE_SETTINGS:
        found.append(f"notebook metadata 'rise' should be {RISE_SETTINGS}")
    return found
