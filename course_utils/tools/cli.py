"""`course`: one command for every tool of the course (works the same on Linux, macOS and Windows).

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
    course predict             classify photos with a model file saved in lesson 08

`course COMMAND --help` explains each one.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module with a main(argv) function, one-line summary); modules are imported only when run,
# so `course --help` answers at once, without loading torch.
COMMANDS: dict[str, tuple[str, str]] = {
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
    "predict": ("course_utils.predict", "classify photos with a model file saved in lesson 08"),
}


def usage() -> str:
    """The list of commands, as `course --help` prints it."""
    width = max(map(len, COMMANDS))
    lines = ["usage: course COMMAND [ARGS ...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "`course COMMAND --help` explains each command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch `course COMMAND ARGS...` to the command's own main(ARGS)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"course: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    program = sys.argv[0]
    sys.argv[0] = f"course {name}"  # argparse names the program after it: `usage: course bench ...`
    try:
        status = module.main(rest)
    finally:
        sys.argv[0] = program
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
