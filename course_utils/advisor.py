"""Lesson 07's advisor: "how many images per class, how similar to ImageNet" -> a scenario, from measured numbers.

Every number the advice uses was measured by ``course sweep`` and committed:

* the scenario sweep (Fashion-MNIST, far from ImageNet): at the measured size nearest yours, whether fine-tuning
  (B or C) is *ahead* of a head on frozen features (A) by the course's one verdict (measurements.compare: paired on
  matched seeds, two standard errors); A otherwise, the cheapest; a tie goes to the cheaper recipe (B before C),
  a costlier one must be *ahead*; the crossover is shown as evidence;
* the similarity experiment: the transfer gain (ImageNet weights minus random weights, same linear probe) on
  natural photos and on Fashion-MNIST, and which stage's features probe best on each.

What was not measured is said, not guessed: fine-tuning was measured on Fashion-MNIST only, so for data like
ImageNet's the advice keeps the measured crossover as its threshold and says that it was measured elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .measurements import (
    SCENARIO_LABELS,
    accuracy_table,
    best_probe_stage,
    compare,
    compare_gains,
    crossover,
    sizes,
    transfer_gain,
)

SIMILARITY = {
    "similar": "similar to ImageNet photos (objects, animals, scenes: measured on natural photos)",
    "different": "different (grey scans, sketches, X-rays: measured on Fashion-MNIST)",
}
TASK_OF = {"similar": "photos", "different": "fashion"}


@dataclass
class Recommendation:
    """The advice: scenario, why, and the measured numbers it rests on."""

    scenario: str
    reason: str
    nearest_size: int
    measured: dict[str, float] = field(default_factory=dict)  # scenario -> mean test accuracy at nearest_size
    evidence: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The scenario's long name."""
        return SCENARIO_LABELS[self.scenario]


OUT_OF_RANGE = 3  # a size more than 3x beyond the measured ones is said to be outside them


def nearest_size(measured_sizes: list[int], n_per_class: int) -> int:
    """The measured size closest to ``n_per_class`` on a log scale."""
    return min(measured_sizes, key=lambda s: abs(math.log(s) - math.log(n_per_class)))


NOT_MEASURED = "not measured"


def in_measured_range(measured_sizes: list[int], n_per_class: int) -> bool:
    """Whether ``n_per_class`` lies within OUT_OF_RANGE times the measured sizes (else: not measured)."""
    return min(measured_sizes) / OUT_OF_RANGE <= n_per_class <= max(measured_sizes) * OUT_OF_RANGE


def run_sizes(points: list[dict], table: dict[str, dict[int, float]]) -> list[int]:
    """The sizes where A and fine-tuning (B or C) both have a point, with or without a verdict."""
    return [n for n in sizes(points) if n in table.get("A", {}) and any(n in table.get(s, {}) for s in ("B", "C"))]


def comparable_sizes(points: list[dict], table: dict[str, dict[int, float]]) -> list[int]:
    """The measured sizes where fine-tuning (B or C) has a verdict against A (two matched seeds or more): only they
    can answer "which one?". A size measured with one seed so far counts once its other seeds are in."""
    return [n for n in run_sizes(points, table) if any(_decided(points, s, n) for s in ("B", "C"))]


def _decided(points: list[dict], challenger: str, n: int) -> bool:
    comparison = compare(points, challenger, "A", n)
    return comparison is not None and comparison.verdict != "not decided"


def choose_scenario(points: list[dict], n_per_class: int) -> tuple[str, int | None]:
    """(scenario, measured size it rests on): at the nearest size where fine-tuning has a verdict against A (two
    matched seeds or more), B or C when it is 'ahead' of A, else A; when both are, C only when it is 'ahead' of B
    (a tie goes to B, which trains fewer layers); scratch only when 'ahead' of that choice; ('not measured', None)
    outside those sizes, or when none has a verdict yet. Exercise 5 asks students to write this rule."""
    table = accuracy_table(points)
    comparable = comparable_sizes(points, table)
    if not comparable or not in_measured_range(comparable, n_per_class):
        return NOT_MEASURED, None
    near = nearest_size(comparable, n_per_class)
    ahead = [s for s in ("B", "C") if (c := compare(points, s, "A", near)) and c.verdict == "ahead"]
    choice = unless_ahead(points, "B", "C", near) if len(ahead) == 2 else (ahead or ["A"])[0]
    return unless_ahead(points, choice, "scratch", near), near


def unless_ahead(points: list[dict], choice: str, rival: str, n: int) -> str:
    """``rival`` only when it is 'ahead' of ``choice`` at size ``n``; a tie (or no verdict) keeps ``choice``."""
    comparison = compare(points, rival, choice, n)
    return rival if comparison and comparison.verdict == "ahead" else choice


def _nearest_key(keys, task: str, n: int) -> tuple[str, int] | None:
    options = [k for k in keys if k[0] == task]
    return min(options, key=lambda k: abs(math.log(k[1]) - math.log(n))) if options else None


def _similar_gain_sentence(similarity_points: list[dict] | None, n_per_class: int) -> str:
    """What the similarity experiment says about frozen features on photos vs Fashion-MNIST, as measured."""
    compared = compare_gains(similarity_points) if similarity_points else {}
    if not compared:
        return "how much more ImageNet features help on photos was not measured"
    p, f, verdict = compared[nearest_size(list(compared), n_per_class)]
    said = {
        "photos": "ImageNet features helped more on natural photos",
        "fashion": "ImageNet features helped more on Fashion-MNIST than on natural photos",
        "tie": "ImageNet features helped about as much on natural photos as on Fashion-MNIST",
    }[verdict]
    return f"{said} (transfer gain at each one's best stage {p.mean:+.2f} vs {f.mean:+.2f})"


def _extrapolated_choice(
    points: list[dict], n_per_class: int, comparable: list[int], measured: dict[str, float], undecided: bool
) -> str:
    """Outside the measured sizes: A below them; above them the verdict's choice at the largest measured size, or,
    with one seed everywhere (no verdict yet), B or C by the higher mean unless A's mean is higher."""
    if n_per_class < min(comparable):
        return "A"
    if not undecided:
        return choose_scenario(points, max(comparable))[0]
    choice = max(("B", "C"), key=lambda s: measured.get(s, -1))
    return "A" if measured.get("A", -1) > measured.get(choice, -1) else choice


def _highest_mean_sentence(points: list[dict], choice: str, near: int) -> str:
    """Why an extrapolated choice was made: the highest mean at the nearest size, with its verdict against A there."""
    lead = compare(points, choice, "A", near)
    verdict = lead.verdict if lead else "not compared"
    return f"{choice} has the highest mean at the nearest measured size (against A there, verdict: {verdict})"


def recommend(
    n_per_class: int, similarity: str, sweep_points: list[dict], similarity_points: list[dict] | None = None
) -> Recommendation:
    """A scenario for ``n_per_class`` labelled images per class of data ``similar`` or ``different`` from ImageNet."""
    if similarity not in SIMILARITY:
        raise ValueError(f"similarity {similarity!r} unknown; choose one of {', '.join(SIMILARITY)}")
    if not isinstance(n_per_class, int) or n_per_class < 1:
        raise ValueError(f"images per class must be a whole number of at least 1, got {n_per_class!r}")
    table = accuracy_table(sweep_points)
    if "A" not in table or not ({"B", "C"} & set(table)):
        raise ValueError("the sweep results need scenario A and at least one of B, C; run `course sweep`")
    comparable = comparable_sizes(sweep_points, table)
    undecided = not comparable  # one seed at every size so far: the nearest measurement, without a verdict
    if undecided:
        comparable = run_sizes(sweep_points, table)
    near = nearest_size(comparable, n_per_class)
    measured = {s: acc[near] for s, acc in table.items() if near in acc}
    cross = crossover(sweep_points)
    evidence = [
        f"crossover on Fashion-MNIST: fine-tuning ahead of A from {cross} images per class"
        if cross
        else "on Fashion-MNIST fine-tuning has not been ahead of A at every measured size from any size on"
    ]
    evidence += [c.sentence() for c in (compare(sweep_points, s, "A", near) for s in ("B", "C", "scratch")) if c]
    task = TASK_OF[similarity]
    if similarity_points:
        gains = transfer_gain(similarity_points)
        for other in ("photos", "fashion"):
            key = _nearest_key(gains, other, n_per_class)
            if key:
                evidence.append(
                    f"transfer gain of ImageNet features on {other} at {key[1]}/class: "
                    f"{gains[key].mean:+.2f} (pretrained minus random, same probe)"
                )
        stages = best_probe_stage(similarity_points)
        key = _nearest_key(stages, task, n_per_class)
        if key:
            evidence.append(f"best-probing stage on {task} at {key[1]}/class: {stages[key]}")
    where = f"measured on Fashion-MNIST at {near} per class"
    choice, _ = choose_scenario(sweep_points, n_per_class)
    extrapolated = choice == NOT_MEASURED
    if extrapolated:
        where += (
            " (one seed at every measured size so far: no size has a verdict, so this is the highest mean there)"
            if undecided
            else f" (the sweep has measured {min(comparable)} to {max(comparable)} per class: your size was not"
            " measured, so this is the nearest measurement, not a measurement of your case)"
        )
        choice = _extrapolated_choice(sweep_points, n_per_class, comparable, measured, undecided)
    if choice == "A":
        why = "at the nearest measured size no fine-tuning is ahead of frozen features (the course's verdict)"
        if similarity == "similar":
            why += "; " + _similar_gain_sentence(similarity_points, n_per_class)
            why += ", so A is the safe start (fine-tuning was measured on Fashion-MNIST only)"
        if cross is not None:
            why += f"; measured crossover: {cross} per class"
        return Recommendation("A", f"{why}; A {measured['A']:.3f} {where}", near, measured, evidence)
    why = (
        _highest_mean_sentence(sweep_points, choice, near)
        if undecided
        else f"{choice} is ahead of frozen features at the nearest measured size"
    )
    c_vs_b = compare(sweep_points, "C", "B", near)
    if c_vs_b and not undecided and choice in ("B", "C"):
        evidence.append(c_vs_b.sentence())
        if choice == "B" and c_vs_b.verdict != "ahead":
            said = {"tie": "ties", "behind": "is behind"}.get(c_vs_b.verdict, "has no verdict against")
            why += f" (C {said} B there, and B trains fewer layers)"
    if cross is not None:
        why += f"; measured crossover ({cross} per class)"
    why += f"; {choice} {measured[choice]:.3f}, A {measured['A']:.3f} {where}"
    if similarity == "similar":
        why += "; fine-tuning was measured on Fashion-MNIST only: compare it with A on your validation set"
    return Recommendation(choice, why, near, measured, evidence)


def format_recommendation(rec: Recommendation) -> str:
    """The advice as a few lines of HTML."""
    rows = "".join(f"<li>{SCENARIO_LABELS[s]}: {acc:.3f}</li>" for s, acc in sorted(rec.measured.items()))
    proof = "".join(f"<li>{line}</li>" for line in rec.evidence)
    return (
        f"<b>Recommended: {rec.label}</b><br>{rec.reason}.<br>Measured test accuracy (mean over seeds) at "
        f"{rec.nearest_size} per class:<ul>{rows}</ul>Measurements behind the advice:<ul>{proof}</ul>"
    )


def advisor_widget(
    sweep_points: list[dict],
    similarity_points: list[dict] | None = None,
    n_per_class: int = 50,
    similarity: str = "different",
):
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
        layout=widgets.Layout(width="620px"),
    )
    html = widgets.HTML()
    box = widgets.VBox([n_box, sim_box, html])
    box.n, box.similarity, box.html, box.result = n_box, sim_box, html, None

    def update(*_):
        try:
            box.result = recommend(int(n_box.value), sim_box.value, sweep_points, similarity_points)
            html.value = format_recommendation(box.result)
        except ValueError as exc:
            box.result = None
            html.value = f"<span style='color:#b00'>{exc}</span>"

    n_box.observe(update, names="value")
    sim_box.observe(update, names="value")
    update()
    return box
