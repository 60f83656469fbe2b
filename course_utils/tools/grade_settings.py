"""What one `course grade` run was asked to do: one frozen ``GradeSettings``, built once from the command line.

``main`` (grade.py) builds it from the arguments; every step below it (the class loop, one submission, the
sandboxed run, the rows) reads what it needs from it instead of taking its own copy of each option.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .sandbox import Isolation, Limits

DEFAULT_TIMEOUT = 600


@dataclass(frozen=True)
class GradeSettings:
    """The options of one grading run.

    ``isolation`` is 'auto', 'bwrap', 'none' or an Isolation (None: $COURSE_GRADE_ISOLATION, else auto);
    ``grade.grade_folder`` replaces a mode by the Isolation it checked. ``cell_timeout`` None is half of
    ``timeout``; ``jobs`` None is ``batch.default_jobs``; ``output`` is the report's path without extension
    (kept invisible to the submissions, like ``sources``).
    """

    exercise: str
    hidden: bool = False
    timeout: float = DEFAULT_TIMEOUT
    cell_timeout: float | None = None
    profile: str = "quick"
    sources: Path | None = None
    limits: Limits = field(default_factory=Limits)
    isolation: str | Isolation | None = None
    jobs: int | None = None
    output: Path | None = None

    @property
    def seconds_per_cell(self) -> int:
        """Whole seconds one cell may run before the runner interrupts it (at least 1)."""
        return max(1, int(self.cell_timeout if self.cell_timeout is not None else self.timeout / 2))
