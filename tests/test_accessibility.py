"""Handouts and slides every student can read: WCAG 2.1 AA, checked by axe-core in headless Chromium.

One lesson written to hold what the lessons hold (a labelled plot, a figure whose author wrote its alt text, an
unlabelled figure, math, printed output, a traceback, a link, widgets, a dozen slides) is built as a handout and
as a deck with `course handouts` and `course slides` (quick profile), once for the module. Every page built, the
indexes included, is opened from disk with the network blocked; axe-core (npm, installed by `make test-tools` and
.ci/run into .tools/) must find no serious or critical violation of WCAG 2.0/2.1 A and AA. Every image says what
it shows, and the deck moves with the keyboard, showing where the focus is.

The course's own lessons, all of them, are built the same way from the outputs saved in their notebooks
(`--stored`: nothing runs) and checked page by page: each handout, and each deck with every slide shown at once
(reveal.js's print view); one lesson's deck is walked to its end with the keyboard. One browser, one tab.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from helpers import ROOT, course, launched_chromium, offline_context
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course_utils.tools import slide_metadata
from course_utils.tools.lessons import find_lessons

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
    """Headless Chromium through Playwright (skips with what to install when it, Playwright or axe-core is missing)."""
    if not AXE.is_file():
        pytest.skip("axe-core is not installed (.tools/node_modules/axe-core/axe.min.js): run `make test-tools`")
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def tab(browser):
    """One tab, in one offline context, for every page of the module; ``tab.asked`` lists refused requests."""
    asked: list[str] = []
    context = offline_context(browser, asked)
    page = context.new_page()
    page.asked = asked
    try:
        yield page
    finally:
        context.close()


def open_offline(page, page_path: Path, query: str = ""):
    """The tab showing the page from disk, drawn: the deck ready, the math typeset, saved widgets drawn.

    ``query`` is added to the address: "?print-pdf" lays a deck out as reveal.js prints it, every slide at once.
    """
    page.goto("about:blank")  # a deck's own address with another #/slide would not load it again
    page.goto(page_path.as_uri() + query)
    page.wait_for_load_state("load")
    if page_path.name.endswith(".slides.html"):
        page.wait_for_function("() => document.querySelector('.reveal.ready') !== null", timeout=30_000)
    if page.evaluate("typeof MathJax !== 'undefined' && !!MathJax.Hub"):
        page.wait_for_function("() => MathJax.Hub.queue.pending === 0 && !MathJax.Hub.queue.running", timeout=30_000)
    if page.locator("script[type='application/vnd.jupyter.widget-view+json']").count():
        page.locator(".jupyter-widgets").first.wait_for(state="attached", timeout=30_000)  # drawn from saved state
    page.add_script_tag(path=str(AXE))
    return page


def serious_violations(page, context: object = None) -> list[str]:
    """axe-core's serious and critical WCAG 2.0/2.1 A and AA violations in ``context`` (default: the whole page)."""
    options = {"runOnly": {"type": "tag", "values": WCAG_AA}}
    result = page.evaluate("([context, options]) => axe.run(context || document, options)", [context, options])
    found = []
    for violation in result["violations"]:
        if violation["impact"] in ("serious", "critical"):
            targets = [" ".join(map(str, node["target"])) for node in violation["nodes"][:3]]
            found.append(f"{violation['impact']} {violation['id']}: {violation['help']} at {targets}")
    return found


PRESENT_SLIDE = {"include": [[".reveal .slides section.present:not(.stack)"], [".reveal .slide-number"]]}
SLIDE_NOW = "() => { const i = Reveal.getIndices(); return `${i.h}/${i.v || 0}`; }"
STEP_NOW = "() => { const i = Reveal.getIndices(); return `${i.h}/${i.v || 0}/${i.f === undefined ? -1 : i.f}`; }"
SETTLED = "() => document.getAnimations().every(a => !(a instanceof CSSTransition) || a.playState === 'finished')"


def shown_in_full(page) -> str:
    """Show the rest of the current slide (its fragments) and wait until nothing fades; the slide's 'h/v'.

    axe-core measured a fragment still fading in (its colours half-way to white) without the wait.
    """
    page.evaluate("() => { while (Reveal.nextFragment()) {} }")
    page.wait_for_function(SETTLED, timeout=10_000)
    return page.evaluate(SLIDE_NOW)


def every_slide(page, name: str) -> dict[str, list[str]]:
    """axe-core on each slide of the open deck in turn, all its fragments shown, moving on with the Space key.

    The first slide is checked with the whole page (controls, progress bar); each later one on its own (and the
    slide number, whose contrast changes with it). Fails when a key press does not move on before the last slide.
    """
    found: dict[str, list[str]] = {}
    while True:
        here = shown_in_full(page)  # all of the slide, as it ends up
        if f"{name} #/{here}" not in found:
            found[f"{name} #/{here}"] = serious_violations(page, PRESENT_SLIDE if found else None)
        if page.evaluate("Reveal.isLastSlide()"):
            return found
        page.keyboard.press("Space")
        page.wait_for_function(f"() => ({SLIDE_NOW})() !== {here!r}", timeout=10_000)


def walk_with_the_keyboard(page) -> int:
    """Press Space from the first slide to the end of the open deck; how many presses (each must move on)."""
    presses = 0
    while not page.evaluate("Reveal.isLastSlide() && !Reveal.availableFragments().next"):
        here = page.evaluate(STEP_NOW)
        page.keyboard.press("Space")
        page.wait_for_function(f"() => ({STEP_NOW})() !== {here!r}", timeout=10_000)
        presses += 1
    return presses


def print_view(page, path: Path, name: str) -> dict[str, list[str]]:
    """axe-core on every slide of a deck at once: reveal.js's print layout (``?print-pdf``), each slide a page with
    its fragments shown and its number on it. One run instead of one per slide (the course's 209 slides took
    minutes more); the controls around the slides are the template's, checked slide by slide on the small deck."""
    open_offline(page, path, "?print-pdf")
    assert page.evaluate("Reveal.isPrintingPDF()"), f"{name}: reveal.js did not lay out its print view"
    pages = page.locator(".pdf-page").count()
    assert pages >= page.evaluate("Reveal.getTotalSlides()"), f"{name}: {pages} printed pages, fewer than slides"
    page.wait_for_function(SETTLED, timeout=10_000)
    return {f"{name} (every slide, print view)": serious_violations(page)}


def check_pages(page, paths: list[Path], slide_by_slide: bool = True) -> dict[str, list[str]]:
    """Every page through axe-core, each deck slide by slide (else all at once): {page or slide: violations}."""
    problems = {}
    for path in paths:
        name = f"{path.parent.name}/{path.name}"
        if path.name.endswith(".slides.html") and not slide_by_slide:
            problems.update(print_view(page, path, name))
            continue
        open_offline(page, path)
        if path.name.endswith(".slides.html"):
            problems.update(every_slide(page, name))
        else:
            problems[name] = serious_violations(page)
    return {where: found for where, found in problems.items() if found}


def image_alts(page, paths: list[Path]) -> dict[str, list[str | None]]:
    """The alt attribute of every image on each lesson page (indexes left out): {page: [alt, ...]}."""
    alts = {}
    for path in paths:
        if not path.name.startswith("index"):
            open_offline(page, path)
            alts[path.name] = page.locator("img").evaluate_all("images => images.map(i => i.getAttribute('alt'))")
    return alts


def bad_alts(alts: dict[str, list[str | None]]) -> list[str]:
    """The images whose alt text is missing, empty, a file name or a generic word: 'page: alt' each."""
    bad = []
    for name, texts in alts.items():
        for alt in texts:
            text = (alt or "").strip()
            if not text or GENERIC_ALT.match(text) or re.search(r"\.(png|jpe?g|svg|gif)\b", text, re.IGNORECASE):
                bad.append(f"{name}: {alt!r}")
    return bad


def test_every_page_has_no_serious_wcag_violation(tab, built):
    everything = pages(built)
    assert len(everything) == 4  # a handout, a deck, two indexes
    assert check_pages(tab, everything) == {}
    assert tab.asked == [], f"pages asked the network for {tab.asked}"


def test_every_figure_says_what_it_shows(tab, built):
    for name, alts in image_alts(tab, pages(built)).items():
        assert len(alts) >= 3, f"{name}: the lesson's three figures are missing"
        assert bad_alts({name: alts}) == []
        assert AUTHOR_ALT in alts  # the author's own words win
        plotted = next(a for a in alts if "Accuracy while training the head" in a)  # words from the plot itself
        assert "accuracy against epoch" in plotted and "head only train" in plotted, plotted
        assert any("brightness of a gradient" in a for a in alts), alts  # unlabelled: the lesson's words


def focus_drawn(page) -> dict | None:
    """Tab through the page until a control has the focus: how it is drawn (None if nothing ever takes it)."""
    for _ in range(30):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => { const e = document.activeElement; if (!e || e === document.body) return null;"
            " const s = getComputedStyle(e); return {tag: e.tagName, outline: s.outlineStyle,"
            " width: parseFloat(s.outlineWidth), shadow: s.boxShadow}; }"
        )
        if focused:
            return focused
    return None


def test_deck_moves_with_the_keyboard_and_shows_the_focus(tab, built):
    open_offline(tab, built["slides"] / "42_accessible.slides.html")
    index = "() => Reveal.getIndices().h"
    assert tab.evaluate(index) == 0
    for key, expected in (("ArrowRight", 1), ("Space", 2), ("ArrowLeft", 1)):
        tab.keyboard.press(key)
        tab.wait_for_function(f"() => Reveal.getIndices().h === {expected}", timeout=10_000)
    focused = focus_drawn(tab)
    assert focused, "no element ever takes the keyboard focus"
    assert (focused["outline"] != "none" and focused["width"] >= 2) or focused["shadow"] != "none", focused


# The course's own lessons, every one, as committed: their pages are built from the outputs saved in the notebooks
# (`--stored`, seconds instead of minutes of running them). By the course's rule only the checked cells keep
# their outputs, so these pages hold the lessons' prose, math, code and printed facts; figures drawn as a lesson
# runs are covered by the purpose-built lesson above.


@pytest.fixture(scope="module")
def lessons_built(tmp_path_factory) -> dict[str, Path]:
    """The handouts and the slides of every lesson in notebooks/, from their stored outputs: {tool: folder}."""
    base = tmp_path_factory.mktemp("lessons")
    env = {**os.environ, "npm_config_fetch_retries": "0"}
    folders = {}
    for tool in ("handouts", "slides"):
        done = course(tool, "--stored", "--out", str(base / tool), env=env, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        folders[tool] = base / tool
    return folders


def test_every_lesson_page_and_slide_has_no_serious_wcag_violation(tab, lessons_built):
    lessons = find_lessons(ROOT / "notebooks")
    everything = pages(lessons_built)
    assert len(everything) == 2 * len(lessons) + 2 and len(lessons) >= 10  # each lesson twice, two indexes
    assert check_pages(tab, everything, slide_by_slide=False) == {}
    assert tab.asked == [], f"pages asked the network for {tab.asked}"
    assert bad_alts(image_alts(tab, everything)) == []  # every figure a lesson keeps says what it shows


def test_a_lesson_deck_moves_with_the_keyboard_to_its_end(tab, lessons_built):
    open_offline(tab, lessons_built["slides"] / "01_the_analogy.slides.html")
    for key, expected in (("ArrowRight", 1), ("ArrowRight", 2), ("ArrowLeft", 1), ("ArrowLeft", 0)):
        tab.keyboard.press(key)
        tab.wait_for_function(f"() => Reveal.getIndices().h === {expected}", timeout=10_000)
    slides = tab.evaluate("Reveal.getTotalSlides()")
    assert slides > 20 and walk_with_the_keyboard(tab) >= slides - 1  # Space alone reaches the last slide
