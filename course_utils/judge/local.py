"""Exports of a notebook run here, without a sandbox: for testing the judge on trusted notebooks only."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from . import export_prelude, tasks


def export_locally(notebook: Path, exercise: str, cell_timeout: float = 600) -> dict[str, bytes | None]:
    """Run ``notebook`` top to bottom in a fresh kernel, then every task's export; the bytes by grade id.

    Errors in the notebook's cells are kept going past (as the grader does); a task whose export raised gets
    None. Never use this on a submission: it runs the notebook in this machine's own account.
    """
    nb = nbformat.read(notebook, as_version=4)
    wanted = tasks(exercise)
    with tempfile.TemporaryDirectory(prefix="judge-local-") as tmp:
        for grade_id, task in wanted.items():
            path = Path(tmp) / f"{grade_id}.pt"
            setup = f"import os as _os\n_os.environ['COURSE_EXPORT_PATH'] = {str(path)!r}\n"
            nb.cells.append(nbformat.v4.new_code_cell(setup + export_prelude() + task.export))
        client = NotebookClient(
            nb,
            timeout=cell_timeout,
            kernel_name="python3",
            allow_errors=True,
            resources={"metadata": {"path": str(Path(notebook).resolve().parent)}},
        )
        env = os.environ.get("COURSE_PROFILE")
        os.environ.setdefault("COURSE_PROFILE", "quick")
        try:
            client.execute()
        finally:
            if env is None:
                os.environ.pop("COURSE_PROFILE", None)
        out = {}
        for grade_id in wanted:
            path = Path(tmp) / f"{grade_id}.pt"
            out[grade_id] = path.read_bytes() if path.is_file() else None
        return out
