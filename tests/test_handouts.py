"""Handouts: an executed lesson becomes a page that reads offline (images embedded, no CDN scripts)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
from helpers import course
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course_utils.tools import figure_alt, lesson_build, page_assets
from course_utils.tools.lessons import LESSON_GLOB, choose_lessons, find_lessons

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CDN_SCRIPT = re.compile(r"""<(script|link)[^>]+(src|href)=["']https?://|import\(["']https?://""", re.IGNORECASE)


def tiny_lesson(folder: Path) -> Path:
    """A lesson with math, a figure, a widget with interactive output, and a cell that prints the profile."""
    folder.mkdir(parents=True, exist_ok=True)
    nb = new_notebook(
        cells=[
            new_markdown_cell("# 42 · A tiny lesson\n\nEuler: $e^{i\\pi} + 1 = 0$"),
            new_code_cell("import os\nprint('profile is', os.environ.get('COURSE_PROFILE'))"),
            new_code_cell("import matplotlib.pyplot as plt\nplt.plot([0, 1, 4, 9])\nplt.show()"),
            new_code_cell(
                "import ipywidgets as w\n"
                "slider = w.IntSlider(value=3, min=0, max=10, description='layer')\n"
                "out = w.interactive_output(lambda layer: print(f'layer {layer} squared is {layer * layer}'),\n"
                "                           {'layer': slider})\n"
                "display(w.VBox([slider, out]))"
            ),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    path = folder / "42_tiny.ipynb"
    nbformat.write(nb, path)
    (folder / "43_broken.ipynb").write_text(nbformat.writes(new_notebook(cells=[new_code_cell("1 / 0")])))
    return path


def test_handout_pages_are_self_contained_and_indexed(tmp_path):
    lessons = tmp_path / "notebooks"
    tiny_lesson(lessons)
    out = tmp_path / "handouts"
    done = course(
        "handouts",
        "--profile",
        "quick",
        "--out",
        str(out),
        "--notebooks",
        str(lessons),
        # --profile wins over the environment; npm (first run only) gives up fast when the registry is unreachable
        env={
            **os.environ,
            "COURSE_PROFILE": "full",
            "npm_config_fetch_retries": "0",
            "npm_config_fetch_timeout": "20000",
        },
    )
    assert done.returncode == 1, done.stderr  # one lesson failed: the run says so ...
    assert "43_broken" in done.stderr
    page = (out / "42_tiny.html").read_text()  # ... and every page is still written
    assert "profile is quick" in page
    assert "data:image/png;base64," in page  # the figure is embedded, not a file beside the page
    assert not CDN_SCRIPT.search(page), CDN_SCRIPT.search(page)
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', page) + re.findall(r"widgetRendererSrc = '([^']+)'", page)
    assert len(scripts) >= 3  # MathJax, require.js, the widget renderer
    for script in scripts:  # every script it loads is in the folder
        assert (out / script.split("?")[0]).is_file(), script
    assert "application/vnd.jupyter.widget-state+json" in page  # saved widget state, shown without a kernel
    assert "layer 3 squared is 9" in page
    broken = (out / "43_broken.html").read_text()
    assert "ZeroDivisionError" in broken and "This handout is incomplete" in broken
    index = (out / "index.html").read_text()
    assert 'href="42_tiny.html"' in index and "A tiny lesson" in index
    timings = json.loads((out / "timings.json").read_text())
    assert [lesson["name"] for lesson in timings["lessons"]] == ["42_tiny", "43_broken"]
    for lesson in timings["lessons"]:
        assert lesson["seconds"] > 0 and f"{lesson['seconds']:.1f} s" in index
    tiny = timings["lessons"][0]  # the slowest of its 3 code cells, timed by the kernel's own messages
    assert 1 <= tiny["slowest_code_cell"] <= 3 and 0 < tiny["slowest_seconds"] <= tiny["seconds"]
    assert f"code cell {tiny['slowest_code_cell']}: {tiny['slowest_seconds']:.1f} s" in index
    assert timings["lessons"][1]["error"].endswith("ZeroDivisionError: division by zero")
    assert '<span class="failed">failed: ' in index and "ZeroDivisionError: division by zero</span>" in index
    assert timings["profile"] == "quick"


def test_only_picks_lessons_by_name_or_number(tmp_path):
    lessons = tmp_path / "notebooks"
    tiny_lesson(lessons)
    assert [p.name for p in choose_lessons(lessons, ["43"])] == ["43_broken.ipynb"]
    assert [p.name for p in choose_lessons(lessons, ["42_tiny", "43_broken.ipynb"])] == [
        "42_tiny.ipynb",
        "43_broken.ipynb",
    ]
    with pytest.raises(SystemExit) as err:
        choose_lessons(lessons, ["no_such_lesson"])
    assert "42_tiny" in str(err.value) and "43_broken" in str(err.value)


def test_without_npm_pages_still_load_no_cdn(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no npm on PATH, empty package cache
    assets = page_assets.prepare_assets(tmp_path / "out", npm_cache=tmp_path / "cache")
    assert not assets.widgets
    assert "npm" in capsys.readouterr().err
    for url in (assets.mathjax_url, assets.require_js_url, assets.widget_renderer_url):
        assert not url.startswith("http") and (tmp_path / "out" / url.split("?")[0]).is_file(), url


def test_stale_widget_buffers_are_dropped_and_live_ones_kept():
    upload = {
        "model_name": "FileUploadModel",
        "state": {"value": [{"name": "a.png"}]},
        "buffers": [
            {"path": ["value", 0, "content"], "data": "AA==", "encoding": "base64"},
            {"path": ["value", 1, "content"], "data": "AA==", "encoding": "base64"},
        ],
    }
    image = {
        "model_name": "ImageModel",
        "state": {"format": "png"},
        "buffers": [{"path": ["value"], "data": "AA==", "encoding": "base64"}],
    }
    nb = new_notebook(
        metadata={
            "widgets": {
                "application/vnd.jupyter.widget-state+json": {
                    "version_major": 2,
                    "version_minor": 0,
                    "state": {"u": upload, "i": image},
                }
            }
        }
    )
    assert lesson_build.drop_stale_widget_buffers(nb) == 1  # value[1] is gone: the upload was reset to one file
    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    assert [b["path"] for b in state["u"]["buffers"]] == [["value", 0, "content"]]
    assert [b["path"] for b in state["i"]["buffers"]] == [["value"]]


def test_execute_lesson_gives_the_profile_to_the_kernel_only(tmp_path, monkeypatch):
    """The kernel runs with COURSE_PROFILE=quick; this process (and any thread in it) keeps its own profile."""
    import threading

    monkeypatch.setenv("COURSE_PROFILE", "full")
    lesson = tiny_lesson(tmp_path / "notebooks")
    seen: set[str] = set()
    running = threading.Event()

    def watch():
        while not running.is_set():
            seen.add(os.environ.get("COURSE_PROFILE", ""))
            running.wait(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        nb, seconds, error = lesson_build.execute_lesson(lesson, "quick", timeout=120)
    finally:
        running.set()
        watcher.join()
    assert error == "" and seconds > 0
    printed = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert printed == "profile is quick\n"  # the kernel's environment
    assert seen == {"full"} and os.environ["COURSE_PROFILE"] == "full"  # never changed here, not even briefly


def test_index_is_rendered_from_the_template_and_escapes_what_lessons_say(tmp_path):
    page = tmp_path / "42_x.html"
    results = [
        lesson_build.LessonResult("42_x", "Tags <b>&</b> more", 1.25, page, "", 2, 1, (3, 0.75)),
        lesson_build.LessonResult("43_y", "Broken", 0.5, tmp_path / "43_y.html", "ValueError: a < b", 0, 0, (0, 0.0)),
    ]
    assets = page_assets.Assets("m", "r", "w", widgets=False, note="widgets <off>")
    index = lesson_build.write_index(tmp_path, results, "quick", assets, "course handouts --only <42>").read_text()
    assert "Tags &lt;b&gt;&amp;&lt;/b&gt; more" in index and "<b>&" not in index
    assert '<span class="failed">failed: ValueError: a &lt; b</span>' in index
    assert "code cell 3: 0.8 s" in index and '<td class="time">1.2 s</td>' in index  # 1.25 rounds half to even
    assert '<p class="note">widgets &lt;off&gt;</p>' in index
    assert "<code>course handouts --only &lt;42&gt;</code>" in index
    assert '<td class="time">1.8 s</td>' in index  # the total
    assert "Pages are self-contained" in index and "<code>assets/</code>" in index  # the tool's own HTML, kept
    assert (lesson_build.TEMPLATES / "index.html.j2").is_file()


def test_one_function_finds_the_lessons_and_a_new_lesson_is_found_everywhere(tmp_path):
    """Lessons are `NN_name.ipynb`; the handouts, the slides and `course notebooks` all ask lessons.find_lessons."""
    tiny_lesson(tmp_path)
    (tmp_path / "09_a_new_lesson.ipynb").write_text(nbformat.writes(new_notebook()))
    for other in ("notes.ipynb", "9_one_digit.ipynb", "ex1_exercise.ipynb"):
        (tmp_path / other).write_text(nbformat.writes(new_notebook()))
    assert [p.name for p in find_lessons(tmp_path)] == ["09_a_new_lesson.ipynb", "42_tiny.ipynb", "43_broken.ipynb"]
    assert choose_lessons(tmp_path, ["09"]) == [tmp_path / "09_a_new_lesson.ipynb"]
    from course_utils.tools import notebook_tools

    assert notebook_tools.lesson_paths([tmp_path]) == find_lessons(tmp_path)
    package = ROOT / "course_utils"
    globbing = [p for p in package.rglob("*.py") if LESSON_GLOB in p.read_text(encoding="utf-8")]
    assert globbing == [package / "tools" / "lessons.py"], "lessons are found in one place: lessons.find_lessons"


# ---------------------------------------------------------------- every figure says what it shows


def figure_cell(source: str, *images: dict, **metadata) -> nbformat.NotebookNode:
    """A code cell as the kernel leaves it: one display_data output per image (its metadata as given)."""
    outputs = [
        nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}, metadata=m)
        for m in images
    ]
    return new_code_cell(source, outputs=outputs, metadata=metadata)


def alts(nb) -> list[str]:
    return [o.metadata["image/png"]["alt"] for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def test_alt_text_comes_from_the_author_then_the_figure_then_the_lesson():
    described = {"image/png": {"alt": "Chart of loss against epoch"}}
    nb = new_notebook(
        cells=[
            new_markdown_cell("## 3. Two flowers\n\nA tulip next to a rose. Then more text."),
            figure_cell("# alt: A red tulip\n# alt: A white rose\nshow(a)\nshow(b)", described, {}),
            figure_cell("plot(x)", {}, alt="A histogram of pixel values, most of them dark"),
            figure_cell("plot(y)", described),
            figure_cell("# the learning curves of both runs\nplot(z)", {}),
            figure_cell("plot(w)", {}),
        ]
    )
    assert figure_alt.label_images(nb) == 6
    assert alts(nb) == [
        "A red tulip",  # the author's comments, in order, win over the kernel's description
        "A white rose",
        "A histogram of pixel values, most of them dark",  # the cell's metadata
        "Chart of loss against epoch",  # the kernel's description of the figure
        "Figure: the learning curves of both runs",  # the cell's first comment
        "Figure: Two flowers – A tulip next to a rose.",  # the heading and sentence above
    ]


def test_a_figure_is_described_from_its_titles_labels_and_legend():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from course_utils import plots

    history = {"train_acc": [0.5, 0.8], "val_acc": [0.4, 0.7], "train_loss": [1, 0.5], "val_loss": [1.1, 0.7]}
    ax = plots.plot_learning_curves({"A": history})
    ax.set_title("Scenario A")
    assert figure_alt.describe_figure(ax.figure) == "Chart “Scenario A” of accuracy against epoch with A train, A val"
    ax = plots.plot_confusion_matrix([0, 1, 1], [0, 1, 0], ["cat", "dog"])
    assert figure_alt.describe_figure(ax.figure) == "Heat map of true against predicted"
    grid = plots.show_image_grid([torch.zeros(3, 4, 4)] * 5, [0, 1, 0, 1, 0], [0, 0, 0, 1, 0], ["cat", "dog"], 3)
    grid.suptitle("Validation images")
    text = figure_alt.describe_figure(grid)
    assert text.startswith("Validation images: 5 images: true cat pred cat; true dog pred cat;"), text
    bare = plt.figure()
    bare.add_subplot().imshow(np.zeros((4, 4)))
    assert figure_alt.describe_figure(bare) == ""  # nothing to say: the builder falls back to the lesson's words
    plt.close("all")
