"""What an experiment's run costs in CPU time: what its finished points took, and an estimate of what is left.

The estimate is read off the finished points, per contender: the CPU seconds of one training epoch, fitted as a
cost per training image plus a fixed cost per epoch (validation, BatchNorm recalibration), times the epochs a run
used at its largest measured size (as a share of its epoch limit), times what a point costs beyond its final
training (warm-up head, caches, test). A seed-0 point also searches the learning rate: every candidate of the
starting grid trains (to its early stop, or for the probe epochs where the budget has them). A grid extended past
an edge adds a candidate the estimate does not count. Points measured on a GPU are left out of the fit.

Reading only (no torch): ``course sweep --status`` and ``course results`` print it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..measurements import SHARED_DEPTHS, missing_points

GRID_OF = {"raw": "linear", "A": "linear", "head": "linear", "scratch": "scratch"}  # else: "finetune"


@dataclass(frozen=True)
class Cost:
    """CPU-hours spent on a record's finished points and estimated for its missing ones."""

    spent_hours: float
    left_hours: float  # runs stopping as early as they did at the largest measured size
    left_hours_max: float  # every run to its epoch limit
    missing: int
    unestimated: list[str]  # contenders with no finished CPU point to estimate from


def _trained_here(point: dict) -> bool:
    return "from_sweep" not in point


def spent_hours(record: dict) -> float:
    """CPU-hours of the points trained for this record (searches included; points copied from the sweep excluded)."""
    return sum(p.get("point_cpu_seconds", 0.0) for p in record["points"] if _trained_here(p)) / 3600


def _train_images(config: dict, n: int) -> int:
    per_class = n - int(config["val_per_class"]) if n >= int(config["all_size"]) else n
    return per_class * 10


@dataclass(frozen=True)
class _Rates:
    per_image: float  # CPU seconds per training image and epoch
    per_epoch: float  # fixed CPU seconds per epoch
    fill: float  # epochs run / epoch limit, at the largest measured size
    overhead: float  # point CPU / final training CPU


def _fit(points: list[dict], config: dict) -> _Rates | None:
    """Least squares of epoch CPU = per_image x training images + per_epoch, over fixed-rate CPU points."""
    fixed = [
        p for p in points if not p["lr_chosen_here"] and p.get("device", "cpu") == "cpu" and p["train_cpu_seconds"] > 0
    ]
    if not fixed:
        return None
    xs = [_train_images(config, int(p["n_per_class"])) for p in fixed]
    ys = [p["train_cpu_seconds"] / max(p["epochs_run"], 1) for p in fixed]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    if slope <= 0 or my - slope * mx < 0:  # one size, or a fit that says the fixed part is negative: no fixed part
        slope, intercept = sum(ys) / sum(xs), 0.0
    else:
        intercept = my - slope * mx
    largest = max(int(p["n_per_class"]) for p in fixed)
    top = [p for p in fixed if int(p["n_per_class"]) == largest]
    fill = sum(p["epochs_run"] / p["max_epochs"] for p in top) / len(top)
    overhead = sum(p["point_cpu_seconds"] / p["train_cpu_seconds"] for p in top) / len(top)
    return _Rates(slope, intercept, fill, overhead)


def point_hours(rates: _Rates, config: dict, scenario: str, n: int, search: bool, fill: float) -> float:
    """Estimated CPU-hours of one point (``fill``: share of the epoch limit a run uses)."""
    budget = config["budgets"][str(n)]
    epochs = budget["max_epochs"] * fill
    if search:
        candidates = len(config["lr_grids"][GRID_OF.get(scenario, "finetune")])
        probe = budget.get("probe_epochs")
        epochs = candidates * probe + max(epochs - probe, 0) if probe else candidates * epochs
    epoch_seconds = rates.per_image * _train_images(config, n) + rates.per_epoch
    return epoch_seconds * epochs * rates.overhead / 3600


def estimate(record: dict) -> Cost:
    """CPU-hours spent so far and an estimate of the rest (missing points; points the sweep shares cost nothing)."""
    config = record.get("meta", {}).get("config")
    if not config:
        return Cost(0.0, 0.0, 0.0, 0, [])
    copied = SHARED_DEPTHS if config["experiment"] == "freeze-depth" else {}
    todo = [key for key in missing_points(record) if key[0] not in copied]
    left = left_max = 0.0
    unestimated: list[str] = []
    for scenario in dict.fromkeys(s for s, _, _ in todo):
        rates = _fit([p for p in record["points"] if p["scenario"] == scenario and _trained_here(p)], config)
        if rates is None:
            unestimated.append(scenario)
            continue
        for _, n, seed in (key for key in todo if key[0] == scenario):
            left += point_hours(rates, config, scenario, n, seed == 0, rates.fill)
            left_max += point_hours(rates, config, scenario, n, seed == 0, 1.0)
    return Cost(spent_hours(record), left, left_max, len(todo), unestimated)


def holdout_check(record: dict, n: int) -> tuple[float, float]:
    """(estimated, measured) CPU-hours of the finished points at size ``n``, estimated from the smaller sizes only:
    how far the estimate can be trusted one size up."""
    config = record["meta"]["config"]
    held = [p for p in record["points"] if int(p["n_per_class"]) == n and _trained_here(p)]
    estimated = measured = 0.0
    for point in held:
        smaller = [q for q in record["points"] if q["scenario"] == point["scenario"] and int(q["n_per_class"]) < n]
        rates = _fit([q for q in smaller if _trained_here(q)], config)
        if rates is not None:
            estimated += point_hours(rates, config, point["scenario"], n, point["lr_chosen_here"], rates.fill)
            measured += point["point_cpu_seconds"] / 3600
    return estimated, measured


def cost_line(record: dict) -> str:
    """One line: CPU-hours spent, and the estimate of what is left."""
    cost = estimate(record)
    line = f"CPU time: {cost.spent_hours:.1f} h in the finished points"
    if cost.missing:
        line += (
            f"; {cost.missing} points to train, estimated {cost.left_hours:.1f} h of one core "
            f"({cost.left_hours_max:.1f} h if every run used its epoch limit)"
        )
    if cost.unestimated:
        line += f"; not estimated (no finished point): {', '.join(cost.unestimated)}"
    return line
