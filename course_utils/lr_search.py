"""Learning-rate searches that bracket their choice: the rule lesson 05 writes out, used by lessons 05-06 and the sweep.

A rate chosen at the edge of the rates tried is not a choice: a rate further out might be better. So every search
tries its grid, and while the best rate is the largest (or smallest) tried, it tries the next rate of the 1-3-10
series beyond it, at most ``MAX_EXTENSIONS`` times. Among equal scores the rate nearest the middle of the rates
tried (in log scale) wins, so a tie (every rate at 100 % on a tiny validation set) never pushes the search outwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

Run = TypeVar("Run")

MAX_EXTENSIONS = 3  # steps beyond the grid in one direction; a rate 30x outside it is not a plausible optimum


def next_rate(lr: float, up: bool) -> float:
    """The next rate of the 1-3-10 series (half a decade) above or below ``lr``: 3e-4 -> 1e-3 or 1e-4."""
    exponent = math.floor(math.log10(lr) + 1e-9)
    mantissa = lr / 10**exponent
    factor = (3.0 if mantissa < 2 else 10 / 3) if up else (0.3 if mantissa < 2 else 1 / 3)
    return float(f"{lr * factor:.3g}")


def best_rate(scores: Mapping[float, float]) -> float:
    """The rate with the highest score; among equals the one nearest the middle (log scale), then the smaller."""
    logs = [math.log10(lr) for lr in scores]
    middle = (min(logs) + max(logs)) / 2
    return max(scores, key=lambda lr: (scores[lr], -abs(math.log10(lr) - middle), -lr))


def bracketed_search(
    train_one: Callable[[float], Run],
    grid: Iterable[float],
    score: Callable[[Run], float],
    extensions: int = MAX_EXTENSIONS,
) -> dict[float, Run]:
    """{rate: train_one(rate)} for every rate of ``grid``, then one more rate past the best while it sits at an edge."""
    runs = {lr: train_one(lr) for lr in grid}
    for _ in range(extensions):
        best = best_rate({lr: score(run) for lr, run in runs.items()})
        if min(runs) < best < max(runs):
            break  # bracketed: a rate tried on each side
        lr = next_rate(best, up=best == max(runs))
        runs[lr] = train_one(lr)
    return runs


def chosen(runs: Mapping[float, Run], score: Callable[[Run], float]) -> float:
    """The rate a search chose: ``best_rate`` of the runs' scores."""
    return best_rate({lr: score(run) for lr, run in runs.items()})


def where(runs: Iterable[float], lr: float) -> str:
    """Where a chosen rate lies among the rates tried, in words."""
    rates = sorted(runs)
    if len(rates) > 1 and rates[0] < lr < rates[-1]:
        return "inside the rates tried"
    return "at an edge of the rates tried: a wider search might do better"
