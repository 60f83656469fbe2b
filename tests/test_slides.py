"""Lecture slides: metadata derived from each lesson's structure, and reveal.js decks that work offline.

The real-browser part opens a generated deck from disk in headless Chromium with every non-file request
blocked and moves on one slide. Screenshots go to build/browser/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from helpers import CHROMIUM, CHROMIUM_FLAGS, course, offline_context
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course_utils.tools import slide_metadata, slides
from course_utils.tools.lessons import find_lessons

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
LESSONS = find_lessons(ROOT / "notebooks")
SHOTS = ROOT / "build" / "browser"
CDN = re.compile(r"""<(script|link)[^>]+(src|href)=["']\s*(https?:)?//|import\(["']\s*(https?:)?//""", re.IGNORECASE)


def ids(paths):
    return [p.name for p in paths]


# ---------------------------------------------------------------- slide metadata, derived and committed


@pytest.mark.parametrize("path", LESSONS, ids=ids(LESSONS))
def test_committed_slide_metadata_is_what_the_lesson_structure_gives(path):
    nb = nbformat.read(path, as_version=4)
    assert slide_metadata.slide_problems(nb) == [], f"run `course notebooks slides {path.relative_to(ROOT)}`"
    types = slide_metadata.slide_types(nb)
    assert types[0] == "slide" and types.count("slide") >= 3, "a deck: a title slide and a slide per section"
    parameters = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert [types[i] for i in parameters] == ["skip"]


def lesson_like(**overrides) -> nbformat.NotebookNode:
    """Title, parameters, a section with code and its check, a subsection, a long section, a note."""
    cells = [
        new_markdown_cell("# 42 · A tiny lesson\n\nWhat it teaches."),
        new_code_cell(
            "from course_utils.profiles import pick\nN = pick(quick=1, full=2)", metadata={"tags": ["parameters"]}
        ),
        new_markdown_cell("## 1. A section\n\nIts text."),
        new_code_cell("x = 6 * 7"),
        new_code_cell("# NBVAL_CHECK_OUTPUT\nprint('x is 42:', x == 42)"),
        new_markdown_cell("### A finer point"),
        new_code_cell("y = x + 1"),
        new_markdown_cell("## 2. A long section"),
        new_code_cell("\n".join(f"z{i} = {i}" for i in range(15))),
        new_code_cell("\n".join(f"w{i} = {i}" for i in range(15))),  # does not fit beside the previous one
        new_markdown_cell("Say this slowly.", metadata={"tags": ["slide:notes"]}),
        new_code_cell(""),
    ]
    nb = new_notebook(cells=cells)
    for index, tags in overrides.items():
        nb.cells[int(index[1:])].metadata["tags"] = tags
    return nb


def test_rules_give_a_deck_that_reads_well():
    types = slide_metadata.slide_types(lesson_like())
    assert types == [
        "slide",  # the title
        "skip",  # the parameters cell
        "slide",  # ## section
        "-",  # its code, on the same slide
        "fragment",  # the check right after the code: on the next click
        "subslide",  # ### subsection
        "-",
        "slide",  # ## section
        "-",  # 15 lines of code fit ...
        "subslide",  # ... a second 15 lines do not: a subslide of their own
        "notes",  # the author's explicit choice wins
        "skip",  # an empty cell
    ]


def test_a_check_stays_with_its_code_unless_the_slide_is_far_too_long():
    nb = lesson_like()
    nb.cells.insert(3, new_markdown_cell("Text between the heading and the check."))
    nb.cells.insert(4, new_code_cell("# NBVAL_CHECK_OUTPUT\nprint('shown at once')"))
    assert slide_metadata.slide_types(nb)[3:5] == ["-", "-"]  # no code before it: nothing to wait for
    nb = lesson_like()
    nb.cells[3].source = "\n".join(f"a{i} = {i}" for i in range(22))  # the code fills the slide ...
    assert slide_metadata.slide_types(nb)[4] == "fragment"  # ... its two-line check still goes with it
    nb.cells[3].source = "\n".join(f"a{i} = {i}" for i in range(30))  # far too long: the check gets its own
    assert slide_metadata.slide_types(nb)[4] == "subslide"
    nb = lesson_like(c0=["slide:skip"])
    assert slide_metadata.slide_types(nb)[:3] == ["skip", "skip", "slide"]  # the first cell shown starts a slide


def test_heights_count_figures_and_committed_output():
    plot = new_code_cell("plt.plot([1, 2])")
    assert slide_metadata.cell_lines(plot) == 1 + slide_metadata.FIGURE_LINES
    checked = new_code_cell(
        "# NBVAL_CHECK_OUTPUT\nprint(a)\nprint(b)", outputs=[nbformat.v4.new_output("stream", text="1\n2\n3\n")]
    )
    assert slide_metadata.cell_lines(checked) == 3 + 3  # three source lines, three output lines
    wide = new_markdown_cell("w" * (slide_metadata.WRAP * 2 + 1))
    assert slide_metadata.cell_lines(wide) == 3  # wrapped


def test_apply_is_idempotent_and_keeps_other_metadata():
    nb = lesson_like()
    assert slide_metadata.slide_problems(nb)  # nothing written yet
    assert slide_metadata.apply_slide_metadata(nb) is True
    assert nb.cells[1].metadata["tags"] == ["parameters"] and nb.cells[1].metadata["slideshow"] == {
        "slide_type": "skip"
    }
    assert nb.metadata["rise"] == {"scroll": True, "theme": "white"}
    once = nbformat.writes(nb)
    assert slide_metadata.apply_slide_metadata(nb) is False and nbformat.writes(nb) == once
    assert slide_metadata.slide_problems(nb) == []


def test_an_unknown_override_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="one of slide, subslide, fragment"):
        slide_metadata.slide_types(lesson_like(c3=["slide:bullet"]))


def test_buried_headings_are_reported_but_not_code_comments():
    nb = new_notebook(
        cells=[
            new_markdown_cell("Some text.\n\n## 3. A section\n\nMore."),
            new_markdown_cell("## Heading first\n\n```python\n# a comment, not a heading\n```"),
        ]
    )
    assert slide_metadata.buried_headings(nb) == ["cell 0: heading '## 3. A section' is not at the top of its cell"]


def test_course_notebooks_slides_writes_checks_and_restores(tmp_path):
    lesson = tmp_path / "42_tiny.ipynb"
    nbformat.write(lesson_like(), lesson)
    before = lesson.read_text(encoding="utf-8")
    found = course("notebooks", "slides", "--check", str(tmp_path))
    assert found.returncode == 1 and "cell 0: slide_type is None" in found.stdout
    assert lesson.read_text(encoding="utf-8") == before  # --check writes nothing
    assert course("notebooks", "slides", str(tmp_path)).returncode == 0
    assert course("notebooks", "slides", "--check", str(tmp_path)).returncode == 0
    written = nbformat.read(lesson, as_version=4)
    assert [c.metadata["slideshow"]["slide_type"] for c in written.cells] == slide_metadata.slide_types(lesson_like())
    # Someone edits the lesson: a new section in the middle. The check says so; the tool restores the deck.
    written.cells.insert(6, new_markdown_cell("## 1b. Inserted later"))
    nbformat.write(written, lesson)
    assert course("notebooks", "slides", "--check", str(lesson)).returncode == 1
    assert course("notebooks", "slides", str(lesson)).returncode == 0
    restored = nbformat.read(lesson, as_version=4)
    assert slide_metadata.slide_problems(restored) == []
    assert [c.source for c in restored.cells] == [c.source for c in written.cells]  # only metadata changed


# ---------------------------------------------------------------- RISE: presenting live in JupyterLab


def test_rise_is_installed_and_enabled_in_jupyterlab():
    result = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True, text=True, timeout=120
    )
    listing = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # colours off
    line = next((line for line in listing.splitlines() if "jupyterlab-rise" in line), "")
    assert re.search(r"jupyterlab-rise v[\d.]+ enabled +OK", line), f"RISE is not enabled in JupyterLab:\n{listing}"
    server = subprocess.run(
        [sys.executable, "-m", "jupyter", "server", "extension", "list"], capture_output=True, text=True, timeout=120
    )
    assert re.search(r"jupyterlab_rise enabled", re.sub(r"\x1b\[[0-9;]*m", "", server.stdout + server.stderr))


# ---------------------------------------------------------------- decks


def tiny_deck_lesson(folder: Path) -> Path:
    """A lesson with a title, a parameters cell, a second slide with math and a figure, notes and a subslide."""
    folder.mkdir(parents=True, exist_ok=True)
    nb = new_notebook(
        cells=[
            new_markdown_cell("# 42 · A tiny deck\n\nThe first slide."),
            new_code_cell("SIZE = 3  # parameters", metadata={"tags": ["parameters"]}),
            new_code_cell("# NBVAL_CHECK_OUTPUT\nimport os\nprint('profile is', os.environ.get('COURSE_PROFILE'))"),
            new_markdown_cell("## The second slide\n\nEuler on slide two: $e^{i\\pi} + 1 = 0$"),
            new_code_cell("import matplotlib.pyplot as plt\nplt.plot([0, 1, 4, 9])\nplt.show()"),
            new_code_cell("import ipywidgets as w\nw.Button(description='Go on', icon='check')"),  # icon font
            new_markdown_cell("Speaker notes: pause here.", metadata={"tags": ["slide:notes"]}),
            new_markdown_cell("### A subslide below the second"),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    slide_metadata.apply_slide_metadata(nb)
    path = folder / "42_tiny_deck.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def deck(tmp_path_factory) -> Path:
    """`course slides` on the tiny lesson, as an instructor runs it; the deck's path."""
    base = tmp_path_factory.mktemp("slides")
    tiny_deck_lesson(base / "notebooks")
    out = base / "out"
    done = course(
        "slides", "--profile", "quick", "--notebooks", str(base / "notebooks"), "--out", str(out),
        env={**os.environ, "COURSE_PROFILE": "full", "npm_config_fetch_retries": "0"},
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out / "42_tiny_deck.slides.html"


def test_deck_has_one_section_per_slide_and_loads_nothing_from_the_network(deck):
    page = deck.read_text(encoding="utf-8")
    assert not CDN.search(page), CDN.search(page)
    sources = re.findall(r"""<(?:script|link)[^>]+(?:src|href)=["']([^"']+)["']""", page)
    sources += re.findall(r"widgetRendererSrc = '([^']+)'", page)
    sources += re.findall(r'"([^"]+\.js)"', page[page.index("require(") :])  # reveal.js and its notes plugin
    assert any("reveal.js/dist/reveal.js" in s for s in sources) and any("mathjax" in s.lower() for s in sources)
    for source in sources:  # every script and style sheet the deck loads is in the folder beside it
        assert (deck.parent / source.split("?")[0]).is_file(), source
    # reveal.js nests: a <section> per slide holding a <section> per subslide. Title (1 + 1), second slide with
    # its subslide (1 + 2).
    assert page.count("<section") == 5
    assert "profile is quick" in page and "data:image/png;base64," in page
    assert "SIZE = 3" not in page  # the parameters cell is skipped
    assert "NBVAL_CHECK_OUTPUT" not in page  # nbval's marker is for the tests, not for the class
    assert re.search(r'<aside class="notes">.*?Speaker notes: pause here', page, re.DOTALL)
    index = (deck.parent / "index.html").read_text(encoding="utf-8")
    assert f'href="{deck.name}"' in index and "A tiny deck" in index and "reveal.js" in index


def test_without_reveal_js_the_command_says_what_to_copy_and_runs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no npm ...
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))  # ... and an empty package cache
    tiny_deck_lesson(tmp_path / "notebooks")
    status = slides.main(["--notebooks", str(tmp_path / "notebooks"), "--out", str(tmp_path / "out")])
    message = capsys.readouterr().err
    assert status == 2
    assert "reveal.js-4.*.tgz (`npm pack reveal.js@4`)" in message and "jquery-3.*.tgz" in message
    assert str(tmp_path / "cache" / "handout-assets") in message  # where to copy them
    assert not list((tmp_path / "out").glob("*.html"))  # no lesson was run for a deck that cannot be written


# ---------------------------------------------------------------- the deck in a real browser


def test_deck_advances_in_chromium_with_the_network_blocked(deck):
    if CHROMIUM is None:
        pytest.skip("no Chromium at /usr/bin/chromium: install Debian's chromium (.ci/run does)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    asked: list[str] = []
    console: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = offline_context(browser, asked).new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text} (at {m.location.get('url', '')})"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.goto(deck.as_uri())
            page.wait_for_function("() => document.querySelector('.reveal.ready') !== null", timeout=30_000)
            first = page.locator(".reveal .slides > section.present")
            assert "A TINY DECK" in first.inner_text().upper()
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "slides_first.png"))

            assert page.evaluate("Reveal.getIndices()") == {"h": 0, "v": 0, "f": None}
            page.keyboard.press("ArrowRight")  # as a lecturer moves on (at once: the math may still be typesetting)
            page.wait_for_function("() => location.hash === '#/1'", timeout=10_000)
            assert page.evaluate("Reveal.getIndices()")["h"] == 1
            second = page.locator(".reveal .slides > section.present")
            heading = second.locator("h2", has_text=re.compile("second slide", re.IGNORECASE))
            heading.wait_for(state="visible", timeout=10_000)
            assert not first.filter(has_text=re.compile("A tiny deck", re.IGNORECASE)).is_visible()
            formula = second.locator(".MathJax").first  # typeset by MathJax from assets/, not left as $...$
            formula.wait_for(state="visible", timeout=30_000)
            page.wait_for_function(
                "() => MathJax.Hub.queue.pending === 0 && !MathJax.Hub.queue.running", timeout=30_000
            )
            assert formula.bounding_box()["width"] > 20 and "Math Processing Error" not in second.inner_text()
            assert "$e^" not in second.inner_text()
            assert second.locator("img[src^='data:image/png']").first.is_visible()  # the figure
            button = second.locator(".jupyter-widgets button", has_text="Go on")  # the widget, from its saved state
            button.wait_for(state="visible", timeout=30_000)
            page.wait_for_function("() => document.fonts.status === 'loaded'", timeout=30_000)  # its icon font too
            page.screenshot(path=str(SHOTS / "slides_second.png"))
            page.evaluate("Reveal.down()")  # the subslide below, through the API
            page.locator("h3", has_text=re.compile("A subslide below", re.IGNORECASE)).wait_for(state="visible")
            assert page.evaluate("Reveal.getIndices()")["v"] == 1
        finally:
            SHOTS.mkdir(parents=True, exist_ok=True)
            (SHOTS / "slides.console.txt").write_text("\n".join(console) + "\n", encoding="utf-8")
            browser.close()
    assert asked == [], f"the deck asked the network for {asked}"
    # MathJax 2 probes font loading with an @font-face at about:blank, which Chromium refuses on file:// pages:
    # harmless (no request leaves the machine, math is typeset above). Any other error fails the test.
    errors = [line for line in console if line.startswith(("error", "pageerror")) and "about:blank" not in line]
    assert not errors, console
