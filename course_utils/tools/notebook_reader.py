"""Read and prepare a submitted notebook in a child process with a memory and time limit.

A notebook is JSON, and JSON of many tiny objects costs far more memory than its size: 10 MB of ``{}``
becomes about 2 GB of Python objects, 100 MB more than 20 GB. The grader therefore never parses a submission
itself. A child Python (``python -I``, no student code runs in it) reads the file from its standard input,
parses it under an address-space limit (``PARSE_MEMORY_MB``) and a time limit (``PARSE_SECONDS``), puts the
instructor's tests back (``submissions.prepare``) and answers with one JSON object: the prepared notebook as
text (outputs cleared, at most ``MAX_PREPARED_MB``) and what was found for each test cell. A child that runs
out of memory or time is a ``refused`` row with the reason; a file that is not a notebook is an
``invalid-notebook`` row, as before.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..paths import PACKAGE_DIR
from .submissions import MAX_NOTEBOOK_MB, SubmissionProblem

PARSE_MEMORY_MB = 1536  # address space of the reading child; a 100 MB notebook of images needs about 700
PARSE_SECONDS = 120
MAX_PREPARED_MB = 20  # the notebook that runs, outputs cleared; an honest one is well under 1 MB
MAX_CELLS = 5000
CHILD = (  # the child limits itself first (preexec_fn is unsafe in a threaded grader), then reads
    "import sys; sys.path.insert(0, {root!r}); sys.modules.setdefault('rfc3987_syntax', None); "
    "from course_utils.tools import notebook_reader as reader; reader.limit_self(); sys.exit(reader.child_main())"
)


@dataclass
class ReadNotebook:
    """A prepared submission as the grader holds it: the notebook's text, never its parsed objects."""

    text: bytes
    code_cell_of: dict[str, int] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    edited: list[str] = field(default_factory=list)


def read_prepared(path: Path, source: Path, exercise: str, hidden: bool) -> ReadNotebook:
    """Read ``path`` and prepare it against the source notebook ``source`` in a limited child process.

    Raises SubmissionProblem (status refused, invalid-notebook or wrong-exercise, with the reason) for
    anything that cannot be graded; OSError only when the file cannot be opened at all.
    """
    fd = _open_regular(path)
    config = {"source": str(source), "exercise": exercise, "hidden": bool(hidden)}
    try:
        child = subprocess.run(
            [sys.executable, "-I", "-c", CHILD.format(root=str(PACKAGE_DIR.parent)), json.dumps(config)],
            stdin=fd,
            capture_output=True,
            timeout=PARSE_SECONDS,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1"},
        )
    except subprocess.TimeoutExpired:
        raise SubmissionProblem(
            "refused", f"reading the notebook took longer than {PARSE_SECONDS} s; ask for a notebook saved by Jupyter"
        ) from None
    finally:
        os.close(fd)
    return _answer(child)


def _open_regular(path: Path) -> int:
    """An open descriptor of ``path``; refuses a link or special file that appeared since it was listed."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = SubmissionProblem("refused", "not a regular file")
    elif info.st_size > MAX_NOTEBOOK_MB * 1024 * 1024:
        problem = SubmissionProblem(
            "refused",
            f"larger than {MAX_NOTEBOOK_MB} MB ({info.st_size / 1e6:.0f} MB); ask for it with outputs cleared",
        )
    if problem is not None:
        os.close(fd)
        raise problem
    return fd


def limit_self() -> None:
    """In the child, before anything is read: address space, CPU time, no core files."""
    import resource

    limit = PARSE_MEMORY_MB * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (PARSE_SECONDS, PARSE_SECONDS + 2))


def _answer(child: subprocess.CompletedProcess) -> ReadNotebook:
    """The child's answer as a ReadNotebook, or the SubmissionProblem it describes."""
    try:
        answer = json.loads(child.stdout)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        error = child.stderr.decode("utf-8", "replace")
        if child.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            raise SubmissionProblem(
                "refused",
                f"reading the notebook took more than {PARSE_SECONDS} s of CPU time; ask for it saved by Jupyter",
            )
        if child.returncode and ("MemoryError" in error or child.returncode == -signal.SIGABRT):
            raise SubmissionProblem(
                "refused",
                f"reading it needs more than {PARSE_MEMORY_MB} MB of memory (JSON of very many small objects); "
                "ask for the notebook saved again from Jupyter with outputs cleared",
            )
        last = (error.strip().splitlines() or [f"exit status {child.returncode}"])[-1][:200]
        raise SubmissionProblem("refused", f"the notebook could not be read: {last}")
    if answer.get("problem"):
        raise SubmissionProblem(str(answer["problem"]), str(answer.get("message", "")))
    return ReadNotebook(
        answer["notebook"].encode("utf-8"),
        {str(k): int(v) for k, v in answer["code_cell_of"].items()},
        {str(k): str(v) for k, v in answer["notes"].items()},
        set(answer["deleted"]),
        [str(e) for e in answer["edited"]],
    )


# ------------------------------------------------------------------------------------ in the child
def child_main() -> int:
    """In the child: read stdin, prepare it, print one JSON answer (a problem is an answer too)."""
    config = json.loads(sys.argv[1])
    try:
        answer = _prepare_stdin(Path(config["source"]), config["exercise"], config["hidden"])
    except SubmissionProblem as exc:
        answer = {"problem": exc.status, "message": str(exc)}
    except MemoryError:
        sys.stderr.write("MemoryError\n")
        return 3
    except RecursionError:
        answer = {"problem": "invalid-notebook", "message": "not a valid notebook: JSON nested too deeply"}
    except Exception as exc:  # a shape of JSON nothing foresaw: a row with the reason, never a crash
        first = str(exc).strip().split("\n")[0][:200]
        answer = {
            "problem": "invalid-notebook",
            "message": f"not a valid notebook: a part of it has a shape Jupyter never writes ({type(exc).__name__}: "
            f"{first}); ask for it saved again from Jupyter",
        }
    sys.stdout.write(json.dumps(answer))
    return 0


def _prepare_stdin(source: Path, exercise: str, hidden: bool) -> dict:
    import nbformat

    from .exercises import graded_cells
    from .submissions import edited_scaffolding, prepare

    reference = nbformat.read(source, as_version=4)
    tests = graded_cells(reference, exercise)
    raw = _without_outputs(sys.stdin.buffer.read(MAX_NOTEBOOK_MB * 1024 * 1024 + 1))
    prepared = prepare(raw, exercise, tests, hidden)
    del raw
    if len(prepared.nb.cells) > MAX_CELLS:
        raise SubmissionProblem("refused", f"{len(prepared.nb.cells)} cells, more than {MAX_CELLS}")
    text = nbformat.writes(prepared.nb)
    if len(text) > MAX_PREPARED_MB * 1024 * 1024:
        raise SubmissionProblem(
            "refused", f"{len(text) / 1e6:.0f} MB even with outputs cleared (at most {MAX_PREPARED_MB} MB)"
        )
    return {
        "notebook": text,
        "code_cell_of": prepared.code_cell_of,
        "notes": prepared.notes,
        "deleted": sorted(prepared.deleted),
        "edited": edited_scaffolding(prepared.nb, reference),
    }


def _without_outputs(raw: bytes) -> bytes:
    """The notebook's bytes with every code cell's outputs emptied (they are cleared anyway); else unchanged."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return raw  # prepare says what is wrong with it
    cells = data.get("cells") if isinstance(data, dict) else None
    if not isinstance(cells, list):
        return raw
    for cell in cells:
        if isinstance(cell, dict) and isinstance(cell.get("outputs"), list):
            cell["outputs"] = []
    return json.dumps(data).encode("utf-8")
