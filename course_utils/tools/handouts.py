"""Lecture handouts: execute every lesson, write self-contained HTML that reads offline, and an index.

    course handouts --profile quick|full [--out build/handouts] [--only NAME ...]

Each lesson runs top to bottom with COURSE_PROFILE set to the profile (``lesson_build``, the builder shared with
the slides); its page embeds every image, each with a text alternative (``figure_alt``), and loads MathJax and
require.js from ``assets/`` and the widget renderer from ``@jupyter-widgets/`` beside it, never from a CDN
(``page_assets``), so the folder can be copied to a lecture-hall machine without internet.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .lesson_build import TEMPLATES, LessonResult, Render, Renderer, build, run_main
from .page_assets import Assets, prepare_assets, use_local_assets

TEMPLATE = "course_handout.html.j2"
ABOUT = "Pages are self-contained (images embedded; MathJax and widgets from <code>assets/</code>) and read offline."


def render_html(nb, path: Path, assets: Assets) -> str:
    """The lab-style HTML page of an executed notebook: images embedded with their alt text, scripts local."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab", extra_template_paths=[str(TEMPLATES)], template_file=TEMPLATE, embed_images=True
    )
    use_local_assets(exporter, assets)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"path": str(path.parent), "name": path.stem}})
    return body


def prepare(out_dir: Path, npm_cache: Path | None = None) -> tuple[Render, Assets]:
    """Copy the pages' assets into out_dir; the function that renders a handout, and the assets."""
    assets = prepare_assets(out_dir, npm_cache)
    return (lambda nb, path: render_html(nb, path, assets)), assets


HANDOUTS = Renderer(tool="handouts", page="handout", suffix=".html", about=ABOUT, prepare=prepare)


def build_handouts(profile: str, out_dir: Path, only: list[str] | None = None, **options) -> list[LessonResult]:
    """Execute the chosen lessons and write their pages and the index into out_dir (``lesson_build.build``)."""
    return build(HANDOUTS, profile, out_dir, only, **options)


def main(argv: list[str] | None = None) -> int:
    """`course handouts ...`: 0 when every lesson ran, 1 when some failed (their pages show the error)."""
    return run_main(HANDOUTS, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
