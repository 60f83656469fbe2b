"""Text alternatives for the figures of handouts and slides: every image says what it shows.

Where a figure's alt text comes from, first match wins (docs/instructors.md, "Figures need words"):

1. the author's words: a ``# alt: ...`` comment in the code cell that draws it (one per figure, in order), or the
   cell's metadata ``"alt"`` (a string, or a list with one string per figure);
2. the figure itself: while the lessons run for a handout or a deck, the kernel describes each matplotlib figure
   it shows from its titles, axis labels and legend (``describe_figure``), so a labelled plot needs no extra work;
3. the lesson around it: the cell's first comment, else the heading or sentence above the cell.
"""

from __future__ import annotations

import re

ALT_COMMENT = re.compile(r"^\s*#\s*alt:\s*(\S.*?)\s*$", re.MULTILINE | re.IGNORECASE)
IMAGE_TYPES = ("image/png", "image/jpeg")
MAX_CHARS = 400
KERNEL_SETUP = "__import__('course_utils.tools.figure_alt', fromlist=['install']).install()"


def _clean(text: str) -> str:
    return " ".join(str(text).split())


def _axes_summary(ax) -> str:
    """One axes in words: its title, what kind of chart, what against what, and the series its legend names."""
    title = _clean(ax.get_title() or ax.get_title("left") or ax.get_title("right"))
    xlabel, ylabel = _clean(ax.get_xlabel()), _clean(ax.get_ylabel())
    legend = ax.get_legend()
    series = [_clean(t.get_text()) for t in legend.get_texts()] if legend else []
    if ax.images:
        kind = "heat map" if ax.images[0].get_array().ndim == 2 and (xlabel or ylabel) else "image"
    elif ax.patches and not ax.lines:
        kind = "bar chart"
    else:
        kind = "chart" if (ax.lines or ax.collections or ax.patches) else ""
    words = [f"{kind} “{title}”" if title else kind]
    if ylabel and xlabel:
        words.append(f"of {ylabel} against {xlabel}")
    elif ylabel or xlabel:
        words.append(f"of {ylabel or xlabel}")
    if series:
        words.append("with " + ", ".join(series))
    return " ".join(w for w in words if w) if (title or xlabel or ylabel or series) else ""


def describe_figure(fig) -> str:
    """A matplotlib figure in words, from its titles, axis labels and legends; '' when it has none of them."""
    suptitle = fig.get_suptitle() if hasattr(fig, "get_suptitle") else ""
    parts = [_axes_summary(ax) for ax in fig.axes if ax.get_visible()]
    images = [ax for ax in fig.axes if ax.images]
    if len(images) > 3 and len(images) >= len(fig.axes) - 1:  # a grid of pictures: count them, name a few
        titles = [_clean(ax.get_title()) for ax in images if ax.get_title()]
        parts = [f"{len(images)} images" + (": " + "; ".join(titles[:8]) if titles else "")]
        parts[0] += "; …" if len(titles) > 8 else ""
    parts = [p for p in parts if p and p != "image"]
    if not parts and not suptitle:
        return ""
    text = (_clean(suptitle) + ": " if suptitle else "") + "; ".join(parts)
    text = text.rstrip(": ")
    text = text[0].upper() + text[1:]
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1].rstrip() + "…"


def install(shell=None) -> bool:
    """In a kernel: attach ``describe_figure``'s words to every figure shown, as the image's ``alt`` metadata."""
    from IPython import get_ipython
    from matplotlib.figure import Figure

    shell = shell or get_ipython()
    if shell is None:
        return False
    formatter = shell.display_formatter
    original = formatter.format

    def format_with_alt(obj, include=None, exclude=None):
        data, metadata = original(obj, include=include, exclude=exclude)
        if isinstance(obj, Figure):
            alt = describe_figure(obj)
            for mime in IMAGE_TYPES:
                if alt and mime in data:
                    metadata.setdefault(mime, {})["alt"] = alt
        return data, metadata

    formatter.format = format_with_alt
    return True


def _markdown_words(source: str) -> str:
    """A Markdown cell in a few words: its heading (without its number) and the first sentence below it."""
    lines = source.strip().splitlines()
    heading = ""
    if lines[0].startswith("#"):
        heading = re.sub(r"^#+\s*(?:[\d.·]+\s+)*", "", lines.pop(0)).strip()
    text = _clean(re.sub(r"[*_`$]|!?\[([^\]]*)\]\([^)]*\)", r"\1", " ".join(lines)))
    sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0] if text else ""
    return f"{heading} – {sentence}" if heading and sentence else heading or sentence


def _context(nb, index: int) -> str:
    """The words around a cell: its first comment, else the heading or first sentence of the Markdown above."""
    cell = nb.cells[index]
    for line in cell.source.splitlines():
        comment = line.strip()
        if comment.startswith("#") and not comment.startswith(("# NBVAL", "#!")) and len(comment) > 8:
            return _clean(comment.lstrip("# "))
    for above in reversed(nb.cells[:index]):
        if above.cell_type == "markdown" and above.source.strip():
            return _markdown_words(above.source)
    return ""


def author_alts(cell) -> list[str]:
    """The alt texts an author wrote for a cell's figures: ``# alt:`` comments, else the cell's ``alt`` metadata."""
    written = ALT_COMMENT.findall(cell.source)
    if written:
        return written
    alt = cell.metadata.get("alt")
    return [alt] if isinstance(alt, str) else [str(a) for a in alt or []]


def label_images(nb) -> int:
    """Give every image output of an executed notebook its alt text (see the module's docstring); how many."""
    labelled = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        written = author_alts(cell)
        images = [o for o in cell.get("outputs", []) if any(m in o.get("data", {}) for m in IMAGE_TYPES)]
        for number, output in enumerate(images):
            mime = next(m for m in IMAGE_TYPES if m in output["data"])
            meta = output.setdefault("metadata", {}).setdefault(mime, {})
            if number < len(written):
                meta["alt"] = _clean(written[number])
            elif not meta.get("alt"):
                context = _context(nb, index)
                meta["alt"] = f"Figure: {context}" if context else f"Figure {number + 1} drawn by code cell {index + 1}"
            labelled += 1
    return labelled
