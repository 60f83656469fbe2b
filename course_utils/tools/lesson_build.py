"""One builder for the pages made from executed lessons; the handouts and the slides are its two renderers.

The pipeline is the same for both: find the lessons (``lessons.choose_lessons``), copy what the pages load beside
them, execute each lesson with COURSE_PROFILE set (its figures described as they are drawn, ``figure_alt``), give
every image its alt text, write the page the renderer makes of it, and an index with run times and errors.
A renderer (``Renderer``) says only what differs: the page's name and suffix, and how a notebook becomes HTML.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from ..paths import atomic_write_text, project_root
from ..profiles import PROFILES, pick
from . import figure_alt
from .cli import as_typed
from .lessons import choose_lessons
from .notebook_tools import last_exception
from .page_assets import Assets

TEMPLATES = Path(__file__).resolve().parent / "templates"
Render = Callable[[object, Path], str]


@dataclass(frozen=True)
class Renderer:
    """What one kind of page needs: names, and ``prepare(out_dir, npm_cache) -> (render, assets)``."""

    tool: str  # the command and the index's heading: "handouts", "slides"
    page: str  # one page, in messages: "handout", "slide deck"
    suffix: str  # of each lesson's page: ".html", ".slides.html"
    about: str  # trusted HTML for the index: what the pages are and how they read
    prepare: Callable[[Path, Path | None], tuple[Render, Assets]]
    refusal: type[Exception] | None = None  # raised by prepare when the pages cannot be written at all


@dataclass
class LessonResult:
    """One executed lesson: its page, how long it ran, and the error that stopped it, if any."""

    name: str
    title: str
    seconds: float
    html: Path
    error: str = ""
    images: int = 0
    widgets: int = 0
    slowest: tuple[int, float] = (0, 0.0)


def notebook_title(nb, fallback: str) -> str:
    """The first Markdown heading of a notebook."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return fallback


def execute_lesson(path: Path, profile: str, timeout: int = 600, kind: str = "handout") -> tuple[object, float, str]:
    """Run a lesson in its own folder, its kernel with COURSE_PROFILE=profile; (notebook, seconds, error or '').

    ``timeout`` is per cell, in seconds. Figures shown carry words from their titles and labels (``figure_alt``).
    On failure the notebook keeps what ran and opens with a note ("This handout is incomplete ..."; ``kind``).
    """
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "COURSE_PROFILE": profile}  # the kernel's environment only, not this process's
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(path.parent)}},
    )

    async def describe_figures(notebook) -> None:  # before the first cell; silent: no count, no output
        await client.async_wait_for_reply(client.kc.execute(figure_alt.KERNEL_SETUP, silent=True, store_history=False))

    client.on_notebook_start = describe_figures
    error = ""
    start = time.perf_counter()
    try:
        client.execute(env=env)
    except Exception as err:  # noqa: BLE001 (any failure is reported on the index, the page is still written)
        lines, last = last_exception(str(err))  # tracebacks arrive coloured
        shown = lines[last].strip() if last is not None else next((line.strip() for line in lines if line.strip()), "")
        error = f"{type(err).__name__}: {shown}".rstrip(": ")
        note = f"**This {kind} is incomplete: the lesson stopped ({error}).** Cells below the failing one did not run."
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(note))
    return nb, time.perf_counter() - start, error


def _parent_exists(state, path: list) -> bool:
    """True when every step but the last of a buffer path leads somewhere in a widget's state."""
    node = state
    for key in path[:-1]:
        if (
            isinstance(node, dict)
            and key in node
            or isinstance(node, list)
            and isinstance(key, int)
            and 0 <= key < len(node)
        ):
            node = node[key]
        else:
            return False
    last = path[-1] if path else None
    return isinstance(node, dict) or (isinstance(node, list) and isinstance(last, int) and 0 <= last < len(node))


def drop_stale_widget_buffers(nb) -> int:
    """Remove saved binary buffers whose place in the widget state is gone; return how many.

    nbclient keeps the buffers of an earlier value (e.g. a FileUpload's files) after the value was reset;
    the HTML widget renderer then stops with "Cannot set properties of undefined" and draws no widget at all.
    """
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    dropped = 0
    for model in state.values():
        buffers = model.get("buffers")
        if buffers:
            kept = [b for b in buffers if _parent_exists(model.get("state", {}), list(b.get("path", [])))]
            dropped += len(buffers) - len(kept)
            model["buffers"] = kept
    return dropped


def slowest_cell(nb) -> tuple[int, float]:
    """(number among the code cells, counting from 1, and seconds) of the cell that ran longest; (0, 0.0) if none."""
    best = (0, 0.0)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for number, cell in enumerate(code_cells, start=1):
        timing = cell.metadata.get("execution", {})
        start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if start and end:
            began, ended = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (start, end))
            if (ended - began).total_seconds() > best[1]:
                best = (number, (ended - began).total_seconds())
    return best


def count_outputs(nb) -> tuple[int, int]:
    """(images, widget views) among a notebook's outputs."""
    images = widgets = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            images += any(key.startswith("image/") for key in data)
            widgets += "application/vnd.jupyter.widget-view+json" in data
    return images, widgets


def machine_line() -> str:
    """The machine a run happened on, in words (a busy machine runs slower: the load average says so)."""
    from ..device import describe_machine, machine_record  # torch: only when an index is written

    return describe_machine(machine_record())


def write_index(
    out_dir: Path,
    results: list[LessonResult],
    profile: str,
    assets: Assets,
    command: str,
    kind: str = "handouts",
    about: str = "Pages are self-contained (images embedded; MathJax and widgets from <code>assets/</code>) "
    "and read offline.",
    stored: bool = False,
) -> Path:
    """index.html (from templates/index.html.j2): one row per lesson with its title, run time and status.

    ``about`` is trusted HTML written by the tool; everything else is escaped by the template.
    """
    import jinja2
    from markupsafe import Markup

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    when, machine = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), machine_line()
    page = environment.get_template("index.html.j2").render(
        kind=kind, profile=profile, when=when, machine=machine, about=Markup(about), note=assets.note,
        results=results, total=sum(r.seconds for r in results), command=command, stored=stored,
    )  # fmt: skip
    path = out_dir / "index.html"
    atomic_write_text(path, page)
    path.chmod(0o644)
    lessons = [
        {"name": r.name, "seconds": round(r.seconds, 1), "error": r.error, "slowest_code_cell": r.slowest[0],
         "slowest_seconds": round(r.slowest[1], 1)}
        for r in results
    ]  # fmt: skip
    summary = {"profile": profile, "stored": stored, "when": when, "machine": machine, "command": command,
               "widgets_rendered": assets.widgets, "lessons": lessons}  # fmt: skip
    atomic_write_text(out_dir / "timings.json", json.dumps(summary, indent=2) + "\n")
    return path


def run_lessons(
    lessons: list[Path],
    profile: str,
    out_dir: Path,
    render: Render,
    renderer: Renderer,
    cell_timeout: int | None,
    stored: bool = False,
) -> list[LessonResult]:
    """Execute each lesson (``stored``: take the outputs saved in it) and write ``render(notebook, path)`` to
    out_dir/<lesson><suffix>; one result each."""
    results = []
    for path in lessons:
        if stored:
            print(f"{renderer.tool}: rendering {path.name} as saved (not run) ...", flush=True)
            nb, seconds, error = nbformat.read(path, as_version=4), 0.0, ""
        else:
            print(f"{renderer.tool}: running {path.name} ({profile}) ...", flush=True)
            timeout = cell_timeout or pick(quick=600, full=1800, profile=profile)
            nb, seconds, error = execute_lesson(path, profile, timeout, kind=renderer.page)
        drop_stale_widget_buffers(nb)
        figure_alt.label_images(nb)
        page = out_dir / f"{path.stem}{renderer.suffix}"
        atomic_write_text(page, render(nb, path))
        page.chmod(0o644)  # readable when the folder is served or copied for students
        images, widgets = count_outputs(nb)
        title = notebook_title(nb, path.stem)
        results.append(LessonResult(path.stem, title, seconds, page, error, images, widgets, slowest_cell(nb)))
        print(f"  {seconds:.1f} s" + (f"  FAILED: {error}" if error else "") + f"  -> {page}", flush=True)
    return results


def build(
    renderer: Renderer,
    profile: str,
    out_dir: Path,
    only: list[str] | None = None,
    notebooks_dir: Path | None = None,
    npm_cache: Path | None = None,
    command: str = "",
    cell_timeout: int | None = None,
    stored: bool = False,
) -> list[LessonResult]:
    """Execute the chosen lessons (``stored``: render the outputs saved in them) and write the renderer's pages and
    the index into out_dir."""
    if profile not in PROFILES:
        raise SystemExit(f"{renderer.tool}: profile {profile!r} is not one of {', '.join(PROFILES)}.")
    lessons = choose_lessons(Path(notebooks_dir or project_root() / "notebooks"), only)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    render, assets = renderer.prepare(out_dir, npm_cache)  # first: a refusal comes before any lesson runs
    results = run_lessons(lessons, profile, out_dir, render, renderer, cell_timeout, stored)
    command = command or f"course {renderer.tool} --profile {profile}" + (" --stored" if stored else "")
    index = write_index(out_dir, results, profile, assets, command, renderer.tool, renderer.about, stored)
    print(f"{renderer.tool}: {index} ({sum(r.seconds for r in results):.0f} s in all)")
    return results


def add_lesson_run_arguments(parser: argparse.ArgumentParser, output: str) -> None:
    """The options of every tool that runs the lessons: --profile, --out (default build/OUTPUT), --only, ..."""
    parser.add_argument("--profile", choices=PROFILES, default=os.environ.get("COURSE_PROFILE", "quick"))
    parser.add_argument("--out", type=Path, default=None, help=f"folder for the {output} (default build/{output})")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="lessons by name or number, e.g. 00_start_here or 03")
    parser.add_argument("--notebooks", type=Path, default=None, help="folder holding the lessons (default notebooks/)")
    parser.add_argument(
        "--cell-timeout",
        type=int,
        default=None,
        metavar="S",
        help="seconds one cell may run (default 600 quick, 1800 full)",
    )
    parser.add_argument(
        "--stored",
        action="store_true",
        help="render the outputs saved in the notebooks instead of running them (seconds, not minutes; committed "
        "lessons hold only their checked outputs, so most cells show none)",
    )


def run_main(renderer: Renderer, description: str, argv: list[str] | None = None) -> int:
    """`course TOOL ...`: build, then exit 0 (every lesson ran), 1 (some failed: pages say why) or 2 (refused)."""
    parser = argparse.ArgumentParser(prog=f"course {renderer.tool}", description=description)
    add_lesson_run_arguments(parser, renderer.tool)
    args = parser.parse_args(argv)
    out = args.out or project_root() / "build" / renderer.tool
    command = as_typed(renderer.tool, argv)
    try:
        results = build(
            renderer,
            args.profile,
            out,
            args.only,
            args.notebooks,
            command=command,
            cell_timeout=args.cell_timeout,
            stored=args.stored,
        )
    except Exception as err:
        if renderer.refusal is None or not isinstance(err, renderer.refusal):
            raise
        print(err, file=sys.stderr)
        return 2
    failed = [r.name for r in results if r.error]
    if failed:
        print(
            f"{renderer.tool}: {len(failed)} lesson(s) failed: {', '.join(failed)} (their pages show the error)",
            file=sys.stderr,
        )
    return 1 if failed else 0
