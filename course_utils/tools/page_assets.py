"""What the course's pages load, copied beside them so they read offline: MathJax, require.js, the widget renderer.

MathJax comes from the installed ``jupyter-server-mathjax`` package; the widget renderer
(``@jupyter-widgets/html-manager@1``) and ``requirejs@2`` (and, for the slides, reveal.js and jQuery) come from the
npm registry once (``npm pack``) and are kept in ``data/cache/handout-assets``. Without npm the pages are still
written; widgets then show a note instead of their saved state.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..paths import atomic_write_text, cache_dir

NPM_PACKAGES = {  # npm spec -> the files taken from the package
    "@jupyter-widgets/html-manager@1": "package/dist/",
    "requirejs@2": "package/require.js",
}
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
    """Where a page loads its scripts from (paths relative to the page)."""

    mathjax_url: str
    require_js_url: str
    widget_renderer_url: str
    widgets: bool
    note: str = ""


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


def _copy_widget_renderer(out_dir: Path, manager: Path, requirejs: Path) -> None:
    """The widget renderer in out_dir/@jupyter-widgets/html-manager/dist, its fonts, and require.js in assets/."""
    # The renderer loads its icon fonts from @jupyter-widgets/html-manager/dist/ beside the page: keep that path.
    widgets = out_dir / WIDGETS_DIR
    if not (widgets / "embed-amd.js").is_file():
        skip = ("embed.js", "libembed-amd.js", "embed.js.LICENSE.txt")  # the AMD bundle is all a page needs
        extract_npm(manager, NPM_PACKAGES["@jupyter-widgets/html-manager@1"], widgets, skip=skip)
    # The controls' icon font (e.g. the upload button's) is asked for from @jupyter-widgets/ itself: the
    # bundle's inner modules are named @jupyter-widgets/base and so on, and fonts resolve beside them.
    for font in widgets.iterdir():
        beside = widgets.parent.parent / font.name
        if font.suffix in (".woff", ".woff2", ".ttf", ".eot", ".svg") and not beside.is_file():
            shutil.copyfile(font, beside)
    if not (out_dir / "assets" / "require.js").is_file():
        extract_npm(requirejs, NPM_PACKAGES["requirejs@2"], out_dir / "assets")


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
        _copy_widget_renderer(out_dir, manager, requirejs)
        return Assets(mathjax_url, "assets/require.js", f"{WIDGETS_DIR}/embed-amd.js", widgets=True)
    atomic_write_text(assets / "no-widgets.js", NO_WIDGETS_JS)
    return Assets(
        mathjax_url,
        "assets/no-widgets.js",
        "assets/no-widgets.js",
        widgets=False,
        note="widget renderer unavailable (npm): widgets show a note instead of their saved state",
    )


def use_local_assets(exporter, assets: Assets) -> None:
    """Point an nbconvert HTML exporter at the local assets and clear every URL that would reach a CDN."""
    exporter.mathjax_url = assets.mathjax_url
    exporter.require_js_url = assets.require_js_url
    exporter.widget_renderer_url = assets.widget_renderer_url
    exporter.jupyter_widgets_base_url = ""
    exporter.mermaid_js_url = ""
    exporter.mermaid_layout_elk_js_url = ""
    exporter.jquery_url = ""
