"""One results file for every experiment (sweep, freeze depth, similarity): load it, refuse a changed
configuration, record a run, add a finished point atomically, keep a CSV beside it.

The file is JSON, ``{"meta": {"config": ..., "runs": [...]}, "points": [...]}``; the CSV beside it holds the same
points' flat fields (written with the ``csv`` module, so a value with a comma stays one cell). Both are written
atomically (temp file, then rename): an interrupted run leaves the last finished point, never half a file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Hashable
from datetime import datetime, timezone
from pathlib import Path

from ..measurements import load_results
from ..paths import atomic_write_text


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def points_csv(points: list[dict]) -> str:
    """The points' flat fields as CSV text: one column for every field any point has (nested fields left out)."""
    columns: list[str] = []
    for point in points:
        columns += [k for k, v in point.items() if not isinstance(v, (dict, list)) and k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(points)
    return out.getvalue()


class ResultsConflict(ValueError):
    """A results file that cannot take this run's points: another configuration, another device, or not a results
    file at all. The message says what to do."""


class ResultsFile:
    """An experiment's results on disk, for one configuration; points are added one at a time, each saved at once."""

    def __init__(self, path: str | Path, config: dict, key: Callable[[dict], Hashable]):
        self.path = Path(path)
        try:
            self.record = load_results(self.path)
        except ValueError as exc:
            raise ResultsConflict(str(exc)) from exc
        meta = self.record.setdefault("meta", {})
        if self.record["points"] and meta.get("config") != config:
            changed = sorted(
                k
                for k in set(config) | set(meta.get("config") or {})
                if config.get(k) != (meta.get("config") or {}).get(k)
            )
            raise ResultsConflict(
                f"{self.path} holds points of another configuration (differs in: {', '.join(changed) or '?'}); "
                "resume with the same profile and options, or pass another --out"
            )
        meta["config"] = config
        self.key = key
        self.done = {key(p): p for p in self.record["points"]}

    @property
    def points(self) -> list[dict]:
        """The finished points, in the order they were added."""
        return self.record["points"]

    def start_run(self, command: str, machine: dict) -> None:
        """Note a run (the command as typed, the machine) in the file's history of runs."""
        meta = self.record["meta"]
        meta.setdefault("started", _now())
        meta.setdefault("runs", []).append({"command": command, "machine": machine, "started": _now()})

    def add(self, *points: dict) -> None:
        """Add finished points (a key already present is an error) and save them at once, together."""
        for point in points:
            key = self.key(point)
            if key in self.done:
                raise ValueError(f"{self.path} already holds the point {key}")
            point.setdefault("finished", _now())
            self.record["points"].append(point)
            self.done[key] = point
        meta = self.record["meta"]
        meta["finished"] = points[-1]["finished"]
        if meta.get("runs"):
            meta["runs"][-1]["finished"] = meta["finished"]
        self.save()

    def save(self) -> None:
        """Write the JSON and the CSV beside it, each atomically."""
        atomic_write_text(self.path, json.dumps(self.record, indent=1) + "\n")
        atomic_write_text(self.path.with_suffix(".csv"), points_csv(self.record["points"]))
