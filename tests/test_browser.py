"""The course in a real browser: JupyterLab (as `make lab` starts it) driven by headless Chromium.

Opens lessons 00 and 01, runs every cell through JupyterLab's Run menu, and checks what a student sees:
no errors, figures drawn, widgets rendered as widgets, and a widget that answers when moved.
Screenshots go to build/browser/. Skipped, saying why, only where Chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from helpers import CHROMIUM, launched_chromium

from course_utils.tools.lab import start_lab, stop_lab
from course_utils.tools.processes import alive, group_alive

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "build" / "browser"
RUN_TIMEOUT_MS = 240_000  # a lesson takes <= 60 s in the quick profile; CI machines are noisy
WIDGET_REPRS = ("IntSlider(", "Dropdown(", "interactive(children", "VBox(children", "HBox(children", "Output(")

if not Path("/usr/bin/chromium").is_file() and CHROMIUM is None:
    pytest.skip(
        "no Chromium at /usr/bin/chromium: install Debian's chromium and chromium-driver "
        "(.ci/run does) to run the real-browser test",
        allow_module_level=True,
    )
pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed in this environment (pip install -e '.[test]')"
)

KERNEL_IDLE = """() => document.querySelectorAll('.jp-Notebook .jp-CodeCell').length > 0
  && [...document.querySelectorAll('.jp-StatusBar-Item')].some(e => /\\|\\s*Idle$/.test(e.innerText.trim()))
  && document.querySelector('.jp-Notebook-ExecutionIndicator')?.getAttribute('data-status') === 'idle'"""
ALL_RUN = """() => {
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
    .map(e => e.textContent.trim());
  const status = document.querySelector('.jp-Notebook-ExecutionIndicator')?.getAttribute('data-status');
  const numbered = prompts.length > 0 && prompts.every(t => /^\\[\\d+\\]:$/.test(t));
  const stopped = prompts.every(t => t !== '[*]:')
    && document.querySelector('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]') !== null;
  return status === 'idle' && (numbered || stopped);
}"""
OUTPUT_SIGNATURE = """cell => {
  const area = cell.querySelector('.jp-Cell-outputArea') || cell;
  const copy = area.cloneNode(true);  // what the kernel drew, without the controls themselves
  copy.querySelectorAll('.widget-slider, .widget-dropdown, .widget-readout, select, input').forEach(e => e.remove());
  return copy.textContent.trim() + ' | ' + [...area.querySelectorAll('img')].map(i => i.src).join(' ');
}"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a copy of notebooks/ (it may autosave), COURSE_PROFILE=quick, stopped even on failure."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    shutil.copytree(ROOT / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    yield from serve(root, base / "home")


def serve(root: Path, home: Path, **options):
    """JupyterLab on ``root`` (its course folder: the checkout), yielded; stopped even on failure, and no process
    of it left behind (asserted). ``options`` go to start_lab (e.g. course_settings=True)."""
    previous = os.environ.get("COURSE_ROOT")
    os.environ["COURSE_ROOT"] = str(ROOT)  # the copy's course folder is the checkout (its weights, data, caches)
    try:
        server = start_lab(root, home, profile="quick", **options)
    finally:
        if previous is None:
            os.environ.pop("COURSE_ROOT", None)
        else:
            os.environ["COURSE_ROOT"] = previous
    try:
        yield server
    finally:
        stopped = stop_lab(server)
        left = [pid for pid in stopped if alive(pid)]
        assert not group_alive(server.process.pid) and not left, f"JupyterLab left processes behind: {left}"


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Playwright, closed in any case."""
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser, request):
    """A fresh page; the browser console is saved beside the screenshots."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    try:
        yield page
    finally:
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / f"{request.node.name}.console.txt").write_text("\n".join(console) + "\n")
        try:
            page.screenshot(path=str(SHOTS / f"{request.node.name}.last.png"))  # where it ended, pass or fail
        finally:
            context.close()


def run_all(page, lab, name: str) -> None:
    """Open a notebook in JupyterLab, Run > Run All Cells, wait until the kernel is idle and every cell ran."""
    assert (lab.root / name).is_file(), f"notebooks/{name} is missing: the browser test opens it"
    page.goto(lab.notebook_url(name))
    page.wait_for_function(KERNEL_IDLE, timeout=90_000, polling=250)  # notebook shown, kernel started
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator("[data-command='runmenu:run-all']").click()
    page.wait_for_function(ALL_RUN, timeout=RUN_TIMEOUT_MS, polling=250)


def check_cells(page, name: str) -> None:
    """Every code cell ran, none shows a traceback, and no widget fell back to an error or a text repr."""
    prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").all_inner_texts()
    not_run = [i for i, text in enumerate(prompts) if not text.strip()[1:-2].isdigit()]
    stderr = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
    errors = [t for t in stderr if "Traceback" in t or re.search(r"^\w+(Error|Exception): ", t, re.MULTILINE)]
    assert not errors, f"{name}: a cell shows an error:\n" + "\n---\n".join(e[-2000:] for e in errors)
    assert not not_run, f"{name}: code cells {not_run} did not run (prompts {[prompts[i] for i in not_run]})"
    text = page.locator(".jp-Notebook").inner_text()
    assert "Error displaying widget" not in text, f"{name}: a widget failed to render"
    outputs = "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())
    reprs = [r for r in WIDGET_REPRS if r in outputs]
    assert not reprs, f"{name}: widgets show as plain text ({reprs}): the widget manager is not working"


def widget_cell(page):
    """The first code cell whose output holds a slider widget (the explorer)."""
    cells = page.locator(".jp-Notebook .jp-CodeCell").filter(has=page.locator(".jupyter-widgets .widget-slider"))
    cells.first.wait_for(state="visible", timeout=30_000)
    return cells.first


def wait_for_new_output(page, cell, before: str) -> str:
    """Wait until the kernel redrew the cell's widget output (and is idle again); return the new signature."""
    page.wait_for_function(
        f"cell => {{ const now = ({OUTPUT_SIGNATURE})(cell); return now !== {before!r}; }}",
        arg=cell.element_handle(),
        timeout=60_000,
        polling=200,
    )
    page.wait_for_function(KERNEL_IDLE, polling=200)
    return cell.evaluate(OUTPUT_SIGNATURE)


def move_slider(page, cell) -> str:
    """Move the cell's first slider one step (keyboard); return the output's signature once the kernel redrew it."""
    before = cell.evaluate(OUTPUT_SIGNATURE)
    handle = cell.locator(".noUi-handle[role='slider']").first
    value_before = float(handle.get_attribute("aria-valuenow"))
    step = -1 if value_before >= float(handle.get_attribute("aria-valuemax")) else 1
    handle.focus()
    page.keyboard.press("ArrowRight" if step > 0 else "ArrowLeft")
    after = wait_for_new_output(page, cell, before)
    assert float(handle.get_attribute("aria-valuenow")) == value_before + step, "the slider did not move"
    return after


def test_start_here_runs_in_jupyterlab(lab, page):
    run_all(page, lab, "00_start_here.ipynb")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "00_start_here.png"))
    check_cells(page, "00_start_here")
    assert page.locator(".jp-OutputArea .jp-RenderedImage img").count() >= 1, "00_start_here: no figure rendered"
    text = page.locator(".jp-Notebook").inner_text()
    assert "top-1 class is a cat: True" in text
    assert "profile: quick" in text  # the kernel got COURSE_PROFILE from the server's environment


def test_analogy_runs_and_its_explorer_answers(lab, page):
    run_all(page, lab, "01_the_analogy.ipynb")
    page.screenshot(path=str(SHOTS / "01_the_analogy.png"))
    check_cells(page, "01_the_analogy")
    assert page.locator(".jp-OutputArea .jp-RenderedImage img").count() >= 1, "01_the_analogy: no figure rendered"
    cell = widget_cell(page)
    for control in (".widget-dropdown select", ".widget-slider", "img.widget-image"):
        assert cell.locator(control).count() == 1, f"the explorer has no {control}: {cell.inner_html()[-3000:]}"
    caption = re.compile(r"(\w+): channel (\d+) of")
    layer, channel = caption.search(cell.evaluate(OUTPUT_SIGNATURE)).groups()
    cell.screenshot(path=str(SHOTS / "01_explorer_before.png"))

    after = move_slider(page, cell)  # the channel slider: the kernel draws the neighbouring channel
    new_layer, new_channel = caption.search(after).groups()
    assert new_layer == layer and abs(int(new_channel) - int(channel)) == 1, after[:300]

    select = cell.locator(".widget-dropdown select")
    other = next(o for o in select.locator("option").all_inner_texts() if o != layer)
    before = after
    select.select_option(label=other)  # the layer dropdown: the kernel draws that layer's channel
    after = wait_for_new_output(page, cell, before)
    assert caption.search(after).group(1) == other, after[:300]
    cell.screenshot(path=str(SHOTS / "01_explorer_after.png"))


def test_rise_presents_a_lesson_live_and_runs_a_cell(lab, page):
    """RISE (jupyterlab-rise) shows lesson 00 as a deck from its slide metadata; a cell runs on its slide."""
    page.goto(f"{lab.url}rise/00_start_here.ipynb?token={lab.token}")
    current = page.locator(".reveal .slides > section.present")
    current.wait_for(state="visible", timeout=90_000)
    assert "START HERE" in current.inner_text().upper()
    assert page.locator(".reveal .slides > section").count() >= 6  # a slide per section of the lesson
    page.keyboard.press("ArrowRight")
    heading = page.locator(".reveal .slides > section.present h2", has_text="Versions and device")
    heading.wait_for(state="visible", timeout=30_000)
    cell = page.locator(".reveal section.present .jp-CodeCell").first
    assert "environment_report" in cell.inner_text()
    cell.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")  # run it, live, in the deck
    output = page.locator(".reveal .jp-CodeCell .jp-OutputArea-output", has_text="torchvision")
    output.first.wait_for(state="visible", timeout=120_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "rise_00_versions.png"))
    assert re.search(r"torch\s+\d+\.\d+", output.first.inner_text())
