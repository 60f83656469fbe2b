"""Handouts and slides every student can read: WCAG 2.1 AA, checked by axe-core in headless Chromium.

One lesson written to hold what the lessons hold (a labelled plot, a figure whose author wrote its alt text, an
unlabelled figure, math, printed output, a traceback, a link, widgets, a dozen slides) is built as a handout and
as a deck with `course handouts` and `course slides` (quick profile), once for the module. Every page built, the
indexes included, is opened from disk with the network blocked; axe-core (npm, installed by `make test-tools` and
.ci/run into .tools/) must find no serious or critical violation of WCAG 2.0/2.1 A and AA. Every image says what
it shows, and the deck moves with the keyboard, showing where the focus is.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from helpers import CHROMIUM, CHROMIUM_FLAGS, ROOT, course, offline_context
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course_utils.tools import slide_metadata

pytestmark = [pytest.mark.slow, pytest.mark.browser]  # builds pages, then drives headless Chromium

AXE = ROOT / ".tools" / "node_modules" / "axe-core" / "axe.min.js"
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
GENERIC_ALT = re.compile(r"^(image|img|png|jpe?g|figure|picture|graph|plot|chart|output)?\s*\d*$", re.IGNORECASE)
AUTHOR_ALT = "Two rising lines: the training accuracy climbs above the validation accuracy after epoch 3"


def accessible_lesson(folder: Path) -> Path:
    """A lesson with the kinds of output the course's lessons have, its slide metadata derived as committed."""
    folder.mkdir(parents=True, exist_ok=True)
    plot = (
        "import matplotlib.pyplot as plt\nfrom course_utils.plots import plot_learning_curves\n"
        "curves = {'head only': {'train_acc': [0.5, 0.7, 0.8], 'val_acc': [0.45, 0.6, 0.7]}}\n"
        "ax = plot_learning_curves(curves)\nax.set_title('Accuracy while training the head')\nplt.show()"
    )
    cells = [
        new_markdown_cell("# 42 · An accessible lesson\n\nWhat it teaches, and [the course's README](../README.md)."),
        new_code_cell("SIZE = 3  # parameters", metadata={"tags": ["parameters"]}),
        new_markdown_cell("## 1. A labelled plot\n\nEuler: $e^{i\\pi} + 1 = 0$"),
        new_code_cell(plot),
        new_markdown_cell("## 2. Figures the author describes\n\nThe curves of two runs side by side."),
        new_code_cell(f"# alt: {AUTHOR_ALT}\nplt.plot([1, 2, 3, 4], [0.4, 0.6, 0.8, 0.9])\nplt.show()"),
        new_markdown_cell("## 3. An unlabelled figure\n\nThe brightness of a gradient, darkest on the left."),
        new_code_cell(
            "import numpy as np\nplt.imshow(np.linspace(0, 1, 64).reshape(8, 8))\nplt.axis('off')\nplt.show()"
        ),
        new_markdown_cell("## 4. A table and widgets"),
        new_code_cell(
            "for scenario, accuracy in (('A', 0.71), ('B', 0.70)):\n    print(f'{scenario:>8} {accuracy:.2f}')"
        ),
        new_code_cell(
            "import ipywidgets as w\n"
            "slider = w.IntSlider(value=3, min=0, max=10, description='layer')\n"
            "out = w.interactive_output(lambda layer: print(f'layer {layer} squared is {layer * layer}'),\n"
            "                           {'layer': slider})\n"
            "display(w.VBox([slider, out, w.Button(description='Go on', icon='check')]))"
        ),
        new_code_cell("1 / 0  # a mistake, shown on purpose", metadata={"tags": ["raises-exception"]}),  # colours
        # Ten slides and more: reveal.js's slide number then has two digits, which axe-core checks for contrast.
        *(new_markdown_cell(f"## {n}. A short section\n\nOne point, said plainly.") for n in range(5, 12)),
    ]
    nb = new_notebook(
        cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    slide_metadata.apply_slide_metadata(nb)
    path = folder / "42_accessible.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The handouts and the slides of the lesson, as an instructor builds them: {'handouts': dir, 'slides': dir}."""
    base = tmp_path_factory.mktemp("accessible")
    accessible_lesson(base / "notebooks")
    env = {**os.environ, "npm_config_fetch_retries": "0"}
    folders = {}
    for tool in ("handouts", "slides"):
        out = base / tool
        done = course(
            tool, "--profile", "quick", "--notebooks", str(base / "notebooks"), "--out", str(out), env=env, timeout=400
        )
        assert done.returncode == 0, done.stdout + done.stderr
        folders[tool] = out
    return folders


def pages(built: dict[str, Path]) -> list[Path]:
    """Every page the two builds wrote: each lesson's page and each index."""
    return sorted(p for folder in built.values() for p in folder.glob("*.html"))


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through Playwright (skips with what to install when either is missing)."""
    if CHROMIUM is None:
        pytest.skip("no Chromium at /usr/bin/chromium: install Debian's chromium (.ci/run does)")
    if not AXE.is_file():
        pytest.skip("axe-core is not installed (.tools/node_modules/axe-core/axe.min.js): run `make test-tools`")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_offline(browser, page_path: Path, asked: list[str]):
    """A new tab showing the page from disk, every request that is not a file refused (and noted in ``asked``)."""
    page = offline_context(browser, asked).new_page()
    page.goto(page_path.as_uri())
    page.wait_for_load_state("load")
    if page_path.name.endswith(".slides.html"):
        page.wait_for_function("() => document.querySelector('.reveal.ready') !== null", timeout=30_000)
    if page.evaluate("typeof MathJax !== 'undefined' && !!MathJax.Hub"):
        page.wait_for_function("() => MathJax.Hub.queue.pending === 0 && !MathJax.Hub.queue.running", timeout=30_000)
    if page.locator("script[type='application/vnd.jupyter.widget-view+json']").count():
        page.locator(".jupyter-widgets").first.wait_for(state="attached", timeout=30_000)  # drawn from saved state
    return page


def serious_violations(page) -> list[str]:
    """axe-core's serious and critical WCAG 2.0/2.1 A and AA violations on the page, one line each."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("options => axe.run(document, options)", {"runOnly": {"type": "tag", "values": WCAG_AA}})
    found = []
    for violation in result["violations"]:
        if violation["impact"] in ("serious", "critical"):
            targets = [" ".join(map(str, node["target"])) for node in violation["nodes"][:3]]
            found.append(f"{violation['impact']} {violation['id']}: {violation['help']} at {targets}")
    return found


def test_every_page_has_no_serious_wcag_violation(browser, built):
    everything = pages(built)
    assert len(everything) == 4  # a handout, a deck, two indexes
    problems, asked = {}, []
    for path in everything:
        page = open_offline(browser, path, asked)
        try:
            problems[f"{path.parent.name}/{path.name}"] = serious_violations(page)
            if path.name.endswith(".slides.html"):  # every slide, not only the first: each is shown in turn
                while page.evaluate("!Reveal.isLastSlide()"):
                    page.evaluate("Reveal.next()")
                    problems[f"{path.name} {page.evaluate('location.hash')}"] = serious_violations(page)
        finally:
            page.context.close()
    assert {where: found for where, found in problems.items() if found} == {}
    assert asked == [], f"pages asked the network for {asked}"


def test_every_figure_says_what_it_shows(browser, built):
    for path in pages(built):
        if path.name.startswith("index"):
            continue
        page = open_offline(browser, path, [])
        try:
            alts = page.locator("img").evaluate_all("images => images.map(i => i.getAttribute('alt'))")
        finally:
            page.context.close()
        assert len(alts) >= 3, f"{path.name}: the lesson's three figures are missing"
        for alt in alts:
            assert alt and not GENERIC_ALT.match(alt.strip()), f"{path.name}: an image's alt text is {alt!r}"
            assert not re.search(r"\.(png|jpe?g|svg)\b", alt, re.IGNORECASE), (
                f"{path.name}: alt is a file name: {alt!r}"
            )
        assert AUTHOR_ALT in alts  # the author's own words win
        plotted = next(a for a in alts if "Accuracy while training the head" in a)  # words from the plot itself
        assert "accuracy against epoch" in plotted and "head only train" in plotted, plotted
        assert any("brightness of a gradient" in a for a in alts), alts  # unlabelled: the lesson's words


def test_deck_moves_with_the_keyboard_and_shows_the_focus(browser, built):
    deck = built["slides"] / "42_accessible.slides.html"
    page = open_offline(browser, deck, [])
    try:
        index = "() => Reveal.getIndices().h"
        assert page.evaluate(index) == 0
        for key, expected in (("ArrowRight", 1), ("Space", 2), ("ArrowLeft", 1)):
            page.keyboard.press(key)
            page.wait_for_function(f"() => Reveal.getIndices().h === {expected}", timeout=10_000)
        focused = None
        for _ in range(30):  # Tab through the page until a control has the focus: it must be drawn
            page.keyboard.press("Tab")
            focused = page.evaluate(
                "() => { const e = document.activeElement; if (!e || e === document.body) return null;"
                " const s = getComputedStyle(e); return {tag: e.tagName, outline: s.outlineStyle,"
                " width: parseFloat(s.outlineWidth), shadow: s.boxShadow}; }"
            )
            if focused:
                break
        assert focused, "no element ever takes the keyboard focus"
        assert (focused["outline"] != "none" and focused["width"] >= 2) or focused["shadow"] != "none", focused
    finally:
        page.context.close()
