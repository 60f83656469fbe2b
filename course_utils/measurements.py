"""The committed measurements (sweep, benchmark) and what they say: tables, best scenario, crossover.

Reading only: no training code is imported, so lesson 07's plots and the advisor load in a blink.
The experiments that write these files live in course_utils.experiments.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "experiments" / "results"
COMMITTED_FULL = RESULTS_DIR / "sweep_full.json"

SCENARIOS = ("A", "B", "C", "scratch")
SCENARIO_LABELS = {
    "A": "A: head on frozen features",
    "B": "B: later stages unfrozen",
    "C": "C: full fine-tune",
    "scratch": "from scratch (random init)",
}


def load_results(path: str | Path) -> dict:
    """{'meta': ..., 'points': [...]} from ``path``; an empty record if the file does not exist yet."""
    path = Path(path)
    if not path.exists():
        return {"meta": {}, "points": []}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); delete it to start the sweep again") from exc
    if not isinstance(record, dict) or not isinstance(record.get("points"), list):
        raise ValueError(f"{path} is not a sweep result (no 'points' list); delete it to start again")
    return record


def accuracy_table(points: list[dict]) -> dict[str, dict[int, float]]:
    """scenario -> {n_per_class: test accuracy}."""
    table: dict[str, dict[int, float]] = {}
    for p in points:
        table.setdefault(p["scenario"], {})[int(p["n_per_class"])] = float(p["test_acc"])
    return table


def best_by_size(points: list[dict]) -> dict[int, str]:
    """n_per_class -> the scenario with the highest test accuracy there."""
    best: dict[int, tuple[float, str]] = {}
    for p in points:
        n = int(p["n_per_class"])
        if n not in best or p["test_acc"] > best[n][0]:
            best[n] = (float(p["test_acc"]), p["scenario"])
    return {n: scenario for n, (_, scenario) in sorted(best.items())}


def crossover(points: list[dict], baseline: str = "A", challengers: tuple[str, ...] = ("B", "C")) -> int | None:
    """Smallest n_per_class from which a challenger beats ``baseline`` there and at every larger size (None: never)."""
    table = accuracy_table(points)
    sizes = sorted(table.get(baseline, {}))
    winning = [
        n for n in sizes if max(table.get(c, {}).get(n, float("-inf")) for c in challengers) > table[baseline][n]
    ]
    for n in sizes:
        if n in winning and all(m in winning for m in sizes if m >= n):
            return n
    return None
