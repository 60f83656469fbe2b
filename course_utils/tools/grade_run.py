"""Running one prepared submission in the sandbox: ``run_in_sandbox`` and what it returns (``RunResult``).

The prepared notebook runs with ``runner.py`` (nbclient's public API) inside a sandbox (``sandbox.py``: bubblewrap
on Linux, else a process guard and a loud warning), under the resource limits of the settings, with an overall
time limit; every process it started is gone when this returns. The runner writes one JSON record per cell (and
per judge's export) to a pipe; they come back in ``RunResult``. The sources, the judge's package folder, the
repository's history and every path in ``RunInputs.hidden`` stay invisible inside.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import nbformat

from .. import judge
from ..paths import PACKAGE_DIR, data_dir, file_sha256, project_root
from . import judged as judging
from . import sandbox
from .exercises import source_dir
from .grade_settings import GradeSettings
from .sandbox import Isolation


@dataclass
class RunResult:
    """One sandboxed run: per code cell number (outcome, message), and how the run ended.

    outcome is 'pass', 'fail' or 'review'; status is 'ok' (the runner finished), 'timeout' (stopped at the
    overall limit; finished cells are kept), 'memory' (stopped at the memory limit of the whole submission;
    finished cells are kept) or 'crashed' (ended before reporting every cell).
    """

    cells: dict[int, tuple[str, str]]
    status: str
    detail: str = ""
    seconds: float = 0.0
    records: dict[int, dict] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    survivors: list[str] = field(default_factory=list)
    isolation: Isolation | None = None
    log: str = ""
    memory_peak: int = 0  # bytes: the most the whole run held (processes and files in memory)
    exports: dict[str, tuple[bytes | None, str]] = field(default_factory=dict)  # the judge's data by grade id


@dataclass(frozen=True)
class RunInputs:
    """What one run needs besides the notebook and the settings.

    ``hidden``: paths kept invisible inside; ``preload``: modules the baseline check imports first;
    ``weights_home``: staged checkpoints (``stage_weights``; staged per run without one); ``bindings`` and
    ``defined``: the names and helper functions of the instructor's cells, watched in the kernel;
    ``exports``: the judge's export plan (``judged.export_plan``), run after the notebook.
    """

    hidden: tuple[Path, ...] = ()
    preload: tuple[str, ...] = ()
    weights_home: Path | None = None
    bindings: dict[str, str] | None = None
    defined: dict[str, str] | None = None
    exports: bytes | None = None


def stage_weights(folder: Path) -> Path:
    """A TORCH_HOME in ``folder`` holding verified copies (readable by all) of the course's cached checkpoints."""
    from ..weights import SPECS, hub_checkpoint_dir

    target = Path(folder) / "torch" / "hub" / "checkpoints"
    target.mkdir(parents=True, exist_ok=True)
    source = hub_checkpoint_dir()
    for spec in SPECS.values():
        path = source / spec.filename
        if path.is_file() and spec.matches(file_sha256(path)):
            shutil.copyfile(path, target / spec.filename)
            os.chmod(target / spec.filename, 0o644)
    for path in (target.parent.parent, target.parent, target):
        os.chmod(path, 0o755)
    return Path(folder) / "torch"


def course_mounts() -> list[Path]:
    """What a kernel needs read-only: Python and its packages, the course_utils package, the datasets."""
    paths = sandbox.python_paths() + [PACKAGE_DIR]
    data = data_dir()
    if data.is_dir():
        paths.append(data)
    fashion = Path("/usr/share/datasets/fashion-mnist")  # Debian's package, where data/ may link to
    if fashion.is_dir():
        paths.append(fashion)
    return paths


@lru_cache(maxsize=4)
def isolation_for(mode: str = "auto") -> Isolation:
    """The isolation this machine gives (checked once per process and mode with a real sandboxed Python).

    The check imports what a graded run imports first inside: the runner, nbclient and ipykernel.
    """
    probe = sandbox.Plan(
        [sys.executable, "-c", "import course_utils.tools.runner, nbclient, ipykernel"],
        env={"PYTHONPATH": str(PACKAGE_DIR.parent)},
        read_only=course_mounts(),
    )
    return sandbox.choose_isolation(mode, probe)


def default_isolation_mode() -> str:
    """$COURSE_GRADE_ISOLATION (auto, bwrap or none), else auto."""
    return os.environ.get(sandbox.ISOLATION_VARIABLE, "auto").strip() or "auto"


def resolve_isolation(choice: str | Isolation | None) -> Isolation:
    """``choice`` itself when it is an Isolation, else the one its mode gives here (raises RuntimeError if none)."""
    return choice if isinstance(choice, Isolation) else isolation_for(choice or default_isolation_mode())


def runner_command(cell_timeout: int, exports: bool = False) -> list[str]:
    """The command that runs submission.ipynb inside the sandbox: runner.py (nbclient's public API).

    ``exports``: the runner also runs the judge's exports (judged.EXPORTS_FILE).
    """
    command = [sys.executable, "-m", "course_utils.tools.runner", "submission.ipynb"]
    return command + [f"--cell-timeout={cell_timeout}"] + ([f"--exports={judging.EXPORTS_FILE}"] if exports else [])


def sandbox_plan(
    notebook: bytes, settings: GradeSettings, isolation: Isolation, torch_home: Path, inputs: RunInputs
) -> sandbox.Plan:
    """The sandbox's plan for one run: the runner's command, its files, environment, mounts and hidden paths."""
    limits = settings.limits
    files = {"submission.ipynb": notebook}
    if inputs.exports is not None:
        files[judging.EXPORTS_FILE] = inputs.exports
    return sandbox.Plan(
        runner_command(settings.seconds_per_cell, inputs.exports is not None),
        files=files,
        env={
            "COURSE_PROFILE": settings.profile,
            "MPLBACKEND": "Agg",
            "PYTHONPATH": str(PACKAGE_DIR.parent),
            "COURSE_DATA_DIR": str(data_dir()),
            "COURSE_CACHE_DIR": "{work}/tmp/course-cache",
            "COURSE_OFFLINE": "1",
            "TORCH_HOME": "/opt/course-torch" if isolation.isolated else str(torch_home),
            "COURSE_GRADE_OUTPUT_KB": str(limits.output_kb),
            "COURSE_GRADE_PRELOAD": ",".join(inputs.preload),
            "COURSE_GRADE_BINDINGS": json.dumps(inputs.bindings or {}),
            "COURSE_GRADE_DEFINED": json.dumps(inputs.defined or {}),
        },
        read_only=course_mounts(),
        mounts={"/opt/course-torch": torch_home} if isolation.isolated else {},
        hidden=[Path(p) for p in inputs.hidden] + [source_dir(), project_root() / ".git", judge.JUDGE_DIR],
        limits=limits,
    )


def run_in_sandbox(
    nb, settings: GradeSettings, workdir: Path | None = None, inputs: RunInputs = RunInputs()
) -> RunResult:
    """Run ``nb`` (a notebook, or its JSON bytes) with ``runner.py`` (nbclient) in a sandbox.

    The runner interrupts a single cell after ``settings.seconds_per_cell`` and goes on with the next cells, so
    an endless loop late in a notebook still leaves the earlier results; ``settings.timeout`` is the backstop,
    and the cells that finished before it are kept. ``workdir`` holds the run's temporary files on the
    grader's side (the staged weights). With ``inputs.exports`` the runner exports the judge's data after the
    notebook (``RunResult.exports``). The judge's package folder is never visible inside.
    """
    isolation = resolve_isolation(settings.isolation)
    notebook = nb if isinstance(nb, bytes) else nbformat.writes(nb).encode("utf-8")
    with tempfile.TemporaryDirectory(prefix="grade-", dir=workdir) as tmp:
        torch_home = inputs.weights_home or stage_weights(Path(tmp))
        plan = sandbox_plan(notebook, settings, isolation, torch_home, inputs)
        try:
            outcome = sandbox.run(plan, isolation, settings.timeout)
        except OSError as exc:
            return RunResult({}, "crashed", f"could not start the sandbox: {exc}", isolation=isolation)
    return run_result(outcome, settings, isolation)


def run_result(outcome: sandbox.Outcome, settings: GradeSettings, isolation: Isolation) -> RunResult:
    """The RunResult of a finished sandbox run: the cells' records, the other events, how it ended."""
    records = {int(r["cell"]): r for r in outcome.records if r.get("event") == "cell" and "cell" in r}
    events = [r for r in outcome.records if r.get("event") not in ("cell", "export")]
    cells = {number: (r.get("verdict", "fail"), r.get("message", "")) for number, r in records.items()}
    status, detail = ending(outcome, events, settings)
    return RunResult(
        cells,
        status,
        detail,
        outcome.seconds,
        records,
        events,
        outcome.survivors,
        isolation,
        outcome.log,
        outcome.memory_peak,
        judging.decode_exports(outcome.records),
    )


def ending(outcome: sandbox.Outcome, events: list[dict], settings: GradeSettings) -> tuple[str, str]:
    """How a run ended: (status, detail), status 'memory', 'timeout', 'crashed' or 'ok'."""
    ended = next((e for e in events if e.get("event") == "end"), None)
    if outcome.memory_stopped:
        return "memory", (
            f"the memory limit of {settings.limits.total_memory_gb:g} GB for the whole submission was reached "
            f"(--total-memory-limit): it {outcome.memory_stopped}"
        )
    if outcome.timed_out:
        return "timeout", f"did not finish within {settings.timeout:g} s (an endless loop?); stopped"
    if ended is None or ended.get("exit") not in (0, 1):
        code = ended.get("exit") if ended else outcome.exit_code
        return "crashed", f"the grading run ended before reporting every cell (exit {code})"
    return "ok", ""
