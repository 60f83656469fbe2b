"""Where the lessons are: the one place that says which notebooks are lessons (``NN_name.ipynb``) and finds them.

Every tool that works on "the lessons" (handouts, slides, `course notebooks slides`) asks ``find_lessons``, so a
new lesson (say a lesson 09) is picked up everywhere by being saved as ``09_something.ipynb`` in notebooks/.
"""

from __future__ import annotations

from pathlib import Path

LESSON_GLOB = "[0-9][0-9]_*.ipynb"


def find_lessons(folder: str | Path) -> list[Path]:
    """The lesson notebooks (``NN_name.ipynb``) in a folder, in lesson order; [] when there are none."""
    return sorted(Path(folder).glob(LESSON_GLOB))


def choose_lessons(folder: str | Path, only: list[str] | None = None) -> list[Path]:
    """The lessons in ``folder``; ``only`` keeps those whose name or number matches (SystemExit names the choices)."""
    lessons = find_lessons(folder)
    if not lessons:
        raise SystemExit(f"no lesson notebooks ({LESSON_GLOB}) in {folder}; pass --notebooks DIR.")
    if not only:
        return lessons
    chosen: list[Path] = []
    for name in only:
        stem = Path(name).stem
        matches = [p for p in lessons if stem in (p.stem, p.stem.split("_")[0]) or p.stem.startswith(stem + "_")]
        if not matches:
            raise SystemExit(f"no lesson called {name!r}; choose from: {', '.join(p.stem for p in lessons)}")
        chosen += [p for p in matches if p not in chosen]
    return sorted(chosen)
