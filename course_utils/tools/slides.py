"""Lecture slides: execute every lesson and write a reveal.js deck of it that works offline, and an index.

    course slides --profile quick|full [--out build/slides] [--only NAME ...]

Each lesson's cells carry slide metadata derived from its structure (`course notebooks slides`, see
``slide_metadata``): the title and each ``## `` section start a slide, and so on. The deck is nbconvert's
reveal.js slideshow of the executed lesson, with every script and style from folders beside it: reveal.js
(``reveal.js@4``) and jQuery (``jquery@3``, for slides that scroll) from the npm registry, MathJax, require.js and
the widget renderer as for the handouts (``page_assets.prepare_assets``). The npm packages are fetched once
(``npm pack``) into ``data/cache/handout-assets``; offline, copy their ``.tgz`` files there from another machine.

Keys in the deck: Space or the arrow keys move on, Esc shows the overview, S opens the speaker notes.
To present live and run cells while presenting, use RISE in JupyterLab (README, "Presenting with slides").
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..paths import cache_dir
from .lesson_build import TEMPLATES, LessonResult, Render, Renderer, build, run_main
from .page_assets import Assets, extract_npm, npm_tarball, npm_tarball_prefix, prepare_assets, use_local_assets

REVEAL = "reveal.js@4"
JQUERY = "jquery@3"
REVEAL_DIR = "assets/reveal.js"
JQUERY_FILE = "assets/jquery.min.js"
SUFFIX = ".slides.html"
TEMPLATE = "course_slides.html.j2"
TEST_MARKERS = ("# NBVAL_CHECK_OUTPUT", "# NBVAL_RAISES_EXCEPTION", "# NBVAL_SKIP", "# NBVAL_IGNORE_OUTPUT")
ABOUT = (
    "Each deck is a reveal.js slideshow that reads offline (images embedded; reveal.js, MathJax and widgets "
    "from <code>assets/</code>). Space or the arrow keys move on, Esc shows every slide, S the speaker notes."
)


class SlidesError(RuntimeError):
    """reveal.js (or jQuery) is not at hand; the message says what to copy where."""


@dataclass
class RevealAssets:
    """Where a deck loads reveal.js and jQuery from (paths relative to the deck)."""

    url_prefix: str = REVEAL_DIR
    jquery_url: str = JQUERY_FILE


def prepare_reveal(out_dir: Path, npm_cache: Path | None = None) -> RevealAssets:
    """Copy reveal.js (dist/ and the speaker-notes plugin) and jQuery beside the decks; SlidesError if missing."""
    npm_cache = Path(npm_cache or cache_dir() / "handout-assets")
    missing = []
    for spec, done in ((REVEAL, out_dir / REVEAL_DIR / "dist" / "reveal.js"), (JQUERY, out_dir / JQUERY_FILE)):
        if done.is_file():
            continue
        tarball = npm_tarball(spec, npm_cache, tool="slides", without="no deck can be written")
        if tarball is None:
            missing.append(f"{npm_tarball_prefix(spec)}*.tgz (`npm pack {spec}`)")
        elif spec == REVEAL:
            for part in ("dist/", "plugin/notes/"):
                extract_npm(tarball, "package/" + part, out_dir / REVEAL_DIR / part, flat=False)
        else:
            extract_npm(tarball, "package/dist/jquery.min.js", out_dir / "assets")
    if missing:
        raise SlidesError(
            f"slides: reveal.js is needed and could not be had: {' and '.join(missing)}. Copy these files from "
            f"another machine's data/cache/handout-assets/ (or run `npm pack` where the npm registry is reachable) "
            f"into {npm_cache}, then run the command again."
        )
    return RevealAssets()


def without_test_markers(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of the notebook whose code cells no longer show nbval's markers (lines the class need not read)."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            lines = cell.source.split("\n")
            cell.source = "\n".join(line for line in lines if line.strip() not in TEST_MARKERS)
    return nb


def render_slides(nb, path: Path, assets: Assets, reveal: RevealAssets) -> str:
    """The reveal.js deck of an executed notebook: images embedded with their alt text, scripts and styles local."""
    from nbconvert import SlidesExporter

    nb = without_test_markers(nb)
    exporter = SlidesExporter(
        template_name="reveal", extra_template_paths=[str(TEMPLATES)], template_file=TEMPLATE, embed_images=True
    )
    use_local_assets(exporter, assets)
    exporter.reveal_url_prefix = reveal.url_prefix
    exporter.reveal_theme = "white"
    exporter.reveal_transition = "none"  # a projector redraws slowly; the content matters
    exporter.reveal_scroll = True  # a slide that is still too long scrolls (jQuery does it)
    exporter.reveal_number = "c/t"
    exporter.reveal_width = "1280"
    exporter.reveal_height = "800"
    exporter.jquery_url = reveal.jquery_url
    exporter.font_awesome_url = ""
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"path": str(path.parent), "name": path.stem}})
    return body


def prepare(out_dir: Path, npm_cache: Path | None = None) -> tuple[Render, Assets]:
    """reveal.js first (SlidesError without it: no lesson runs for nothing), then the assets the handouts use too."""
    reveal = prepare_reveal(out_dir, npm_cache)
    assets = prepare_assets(out_dir, npm_cache)
    return (lambda nb, path: render_slides(nb, path, assets, reveal)), assets


SLIDES = Renderer(tool="slides", page="slide deck", suffix=SUFFIX, about=ABOUT, prepare=prepare, refusal=SlidesError)


def build_slides(profile: str, out_dir: Path, only: list[str] | None = None, **options) -> list[LessonResult]:
    """Execute the chosen lessons and write their decks and an index into out_dir (``lesson_build.build``)."""
    return build(SLIDES, profile, out_dir, only, **options)


def main(argv: list[str] | None = None) -> int:
    """`course slides ...`: 0 when every lesson ran, 1 when some failed, 2 when reveal.js cannot be had."""
    return run_main(SLIDES, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
