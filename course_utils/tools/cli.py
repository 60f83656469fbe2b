"""`course`: one command for every tool of the course (works the same on Linux, macOS and Windows).

    course init DIR            a student's working folder: lessons, exercises, diary template
    course lab                 JupyterLab on the lessons (after checking weights and data)
    course fetch               verified ImageNet weights and Fashion-MNIST, offline too
    course diary               fill the learning diary's counters
    course release             write the student copies of the exercises (instructors)
    course grade               grade a folder of submissions (instructors)
    course handouts            executed lessons as HTML that reads offline (instructors)
    course slides              executed lessons as reveal.js decks that work offline (instructors)
    course notebooks           keep committed notebooks clean, derive their slide metadata (authors)
    course bench               the feature-cache benchmark of lessons 03 and 04
    course sweep               the scenario sweep, freeze-depth and similarity experiments of lesson 07
    course results             README's measured sections, rebuilt from the committed results (authors)
    course predict             classify photos with a model file saved in lesson 09

`course COMMAND --help` explains each one. Every command finds its course folder the same way ($COURSE_ROOT, else
the folder it runs in or above that `course init` made, or the checkout); the author and instructor tools in
CHECKOUT_ONLY run only in the checkout and say so elsewhere (exit status 2).
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from pathlib import Path

from .. import __version__
from ..paths import CourseFolderError, checkout_root

# command -> (module with a main(argv) function, one-line summary); modules are imported only when run,
# so `course --help` answers at once, without loading torch.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("course_utils.tools.init", "write a student's working folder: lessons, exercises, diary template"),
    "lab": ("course_utils.tools.lab", "JupyterLab on the lessons (after checking weights and data)"),
    "fetch": ("course_utils.tools.fetch", "verified ImageNet weights and Fashion-MNIST, offline too"),
    "diary": ("course_utils.tools.diary", "fill the learning diary's counters"),
    "release": ("course_utils.tools.exercises", "write (or check) the student copies of the exercises"),
    "grade": ("course_utils.tools.grade", "grade a folder of submitted notebooks"),
    "handouts": ("course_utils.tools.handouts", "executed lessons as HTML that reads offline"),
    "slides": ("course_utils.tools.slides", "executed lessons as reveal.js decks that work offline"),
    "notebooks": ("course_utils.tools.notebook_tools", "clean, check or refresh the notebooks; derive slide metadata"),
    "bench": ("course_utils.experiments.bench", "benchmark: feature cache (A) and boundary cache (B)"),
    "sweep": ("course_utils.experiments.sweep", "scenario sweep, freeze depth and similarity experiments"),
    "results": ("course_utils.experiments.report", "README's measured sections, rebuilt from the committed results"),
    "predict": ("course_utils.predict", "classify photos with a model file saved in lesson 09"),
}

# Author/instructor commands that read the checkout's sources (solutions, results, README): refused elsewhere.
# The value is the argument that lets the command run without the checkout, if any.
CHECKOUT_ONLY: dict[str, str | None] = {
    "bench": None,
    "sweep": None,
    "results": None,
    "release": None,
    "grade": "--sources",
}


def usage() -> str:
    """The list of commands, as `course --help` prints it."""
    width = max(map(len, COMMANDS))
    lines = ["usage: course COMMAND [ARGS ...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "`course COMMAND --help` explains each command; `course --version` prints the version."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch `course COMMAND ARGS...` to the command's own main(ARGS)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"course {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"course: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    refusal = checkout_refusal(name, rest)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    program = sys.argv[0]
    sys.argv[0] = f"course {name}"  # argparse names the program after it: `usage: course bench ...`
    try:
        status = module.main(rest)
    except CourseFolderError as exc:
        print(f"course {name}: {exc}", file=sys.stderr)
        return 2
    finally:
        sys.argv[0] = program
    return int(status or 0)


def doc_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """The parser of `PROG`, its help a module's docstring ``doc``: the first paragraph, then the rest as written."""
    return argparse.ArgumentParser(
        prog=prog,
        description=doc.split("\n\n")[0],
        epilog=doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def as_typed(name: str, argv: list[str] | None = None) -> str:
    """`course NAME ARGS...` as a person types it again in a shell (quoted where needed); ARGS default to this run's."""
    return f"course {name} " + shlex.join(sys.argv[1:] if argv is None else argv)


def checkout_refusal(name: str, rest: list[str]) -> str | None:
    """One line saying why ``course NAME`` cannot run here (it needs the checkout), or None when it can."""
    if name not in CHECKOUT_ONLY or checkout_root() is not None:
        return None
    escape = CHECKOUT_ONLY[name]
    if escape and any(arg == escape or arg.startswith(f"{escape}=") for arg in rest):
        return None
    hint = f", or pass {escape} DIR" if escape else ""
    return (
        f"course {name}: an author/instructor tool that needs the course's source checkout (not found from "
        f"{Path.cwd()}); run it inside a clone of the course{hint}."
    )


if __name__ == "__main__":
    sys.exit(main())
