"""Lesson 07's advisor: "how many images per class, how similar to ImageNet" -> a scenario, backed by the sweep.

The rule is plain and uses measured numbers only where they exist:

* The sweep (course_utils.experiments.sweep) measured, on Fashion-MNIST, from which size fine-tuning (B or C) beats a
  head on frozen features (A): the crossover.
* Fashion-MNIST is far from ImageNet (grayscale product scans). For data closer to ImageNet the frozen
  features fit better, so the crossover moves to larger sizes: the threshold is multiplied by a factor
  per similarity level. That factor is a rule of thumb, not a measurement, and the advice says so.
* Above the threshold: the better of B and C at the nearest measured size; from scratch only where the
  sweep measured it beating every transfer scenario.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .measurements import SCENARIO_LABELS, accuracy_table, crossover

SIMILARITY = {
    "similar": "similar to ImageNet photos (animals, objects, scenes in colour)",
    "somewhat": "somewhat similar (product photos, aerial or microscope images)",
    "different": "different (X-rays, sketches, grayscale scans such as Fashion-MNIST)",
}
# How much later the crossover is assumed to come than on Fashion-MNIST (rule of thumb, not measured).
CROSSOVER_FACTOR = {"similar": 3.0, "somewhat": 1.7, "different": 1.0}


@dataclass
class Recommendation:
    """The advice: scenario, why, and the sweep's measured accuracies at the nearest size."""

    scenario: str
    reason: str
    threshold: float
    nearest_size: int
    measured: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The scenario's long name."""
        return SCENARIO_LABELS[self.scenario]


def nearest_size(sizes: list[int], n_per_class: int) -> int:
    """The measured size closest to ``n_per_class`` on a log scale."""
    return min(sizes, key=lambda s: abs(math.log(s) - math.log(n_per_class)))


def recommend(n_per_class: int, similarity: str, points: list[dict]) -> Recommendation:
    """A scenario for ``n_per_class`` labelled images per class at a similarity level, from sweep ``points``."""
    if similarity not in SIMILARITY:
        raise ValueError(f"similarity {similarity!r} unknown; choose one of {', '.join(SIMILARITY)}")
    if not isinstance(n_per_class, int) or n_per_class < 1:
        raise ValueError(f"images per class must be a whole number of at least 1, got {n_per_class!r}")
    table = accuracy_table(points)
    if "A" not in table or not ({"B", "C"} & set(table)):
        raise ValueError(
            "the sweep results need scenario A and at least one of B, C; run python -m course_utils.experiments.sweep"
        )
    sizes = sorted(table["A"])
    near = nearest_size(sizes, n_per_class)
    measured = {s: table[s][near] for s in table if near in table[s]}
    measured_crossover = crossover(points)
    base = measured_crossover if measured_crossover is not None else math.inf
    threshold = base * CROSSOVER_FACTOR[similarity]
    where = f"on Fashion-MNIST at {near} per class"
    if n_per_class < threshold:
        if measured_crossover is None:
            why = "in the sweep, fine-tuning never beat frozen features at any measured size"
        else:
            why = (
                f"below the threshold of {threshold:.0f} per class (measured crossover {measured_crossover}"
                + (
                    ""
                    if similarity == "different"
                    else f" x {CROSSOVER_FACTOR[similarity]} for data closer to ImageNet"
                )
                + ")"
            )
        return Recommendation(
            "A", f"{why}; A measured {measured.get('A', float('nan')):.3f} {where}", threshold, near, measured
        )
    transfer = {s: measured[s] for s in ("B", "C") if s in measured}
    choice = max(transfer, key=transfer.get)
    if "scratch" in measured and measured["scratch"] > max(measured[s] for s in measured if s != "scratch"):
        choice = "scratch"
    why = (
        f"at or above the threshold of {threshold:.0f} per class (measured crossover {measured_crossover}); "
        f"{choice} measured {measured[choice]:.3f} {where}, A {measured['A']:.3f}"
    )
    return Recommendation(choice, why, threshold, near, measured)


def format_recommendation(rec: Recommendation) -> str:
    """The advice as a few lines of HTML."""
    rows = "".join(f"<li>{SCENARIO_LABELS[s]}: {acc:.3f}</li>" for s, acc in sorted(rec.measured.items()))
    return (
        f"<b>Recommended: {rec.label}</b><br>{rec.reason}.<br>"
        f"Measured test accuracy at {rec.nearest_size} per class:<ul>{rows}</ul>"
    )


def advisor_widget(points: list[dict], n_per_class: int = 50, similarity: str = "different"):
    """Images per class + similarity -> the recommendation. ``box.n``, ``box.similarity`` are the controls,
    ``box.result`` the current Recommendation (None with an error shown when the input is not usable)."""
    import ipywidgets as widgets

    n_box = widgets.BoundedIntText(
        value=n_per_class, min=1, max=10_000_000, description="images / class", style={"description_width": "initial"}
    )
    sim_box = widgets.Dropdown(
        options=[(text, key) for key, text in SIMILARITY.items()],
        value=similarity,
        description="similar to ImageNet?",
        style={"description_width": "initial"},
        layout=widgets.Layout(width="560px"),
    )
    html = widgets.HTML()
    box = widgets.VBox([n_box, sim_box, html])
    box.n, box.similarity, box.html, box.result = n_box, sim_box, html, None

    def update(*_):
        try:
            box.result = recommend(int(n_box.value), sim_box.value, points)
            html.value = format_recommendation(box.result)
        except ValueError as exc:
            box.result = None
            html.value = f"<span style='color:#b00'>{exc}</span>"

    n_box.observe(update, names="value")
    sim_box.observe(update, names="value")
    update()
    return box
