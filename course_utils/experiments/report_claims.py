# README sections written from the results: a Markdown table row is one line, however long.
# ruff: noqa: E501
"""README's "Claims and evidence" table for `course results`, and the verdicts it shares with docs/experiments.md.

Every number comes from the committed result files (through report.Results); every verdict is computed from them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import measurements as m

if TYPE_CHECKING:
    from .report import Results

CLAIMS_HEADING = "## Claims and evidence"


def short_verdict(c: m.Comparison) -> str:
    """A comparison's difference and verdict in a few words: '+0.030 ± 0.004, 3 seeds: ahead'."""
    d = c.difference
    if d.seeds < 2:
        return f"{d.mean:+.3f}, 1 seed: not decided"
    return f"{d.mean:+.3f} ± {d.se:.3f}, {d.seeds} seeds: {c.verdict}"


def similarity_verdicts(r: Results) -> dict[str, bool]:
    """The similarity probe's verdicts: later stages specific, early ones generic, photos gain more, Fashion earlier."""
    sizes = sorted({n for (_, _, n) in r.table})
    both = [
        n for n in sizes if all((t, i, n) in r.table for t in ("photos", "fashion") for i in ("pretrained", "random"))
    ]
    order = list(m.STAGES)
    return {
        "later_specific": all(
            r.best_stage(t, "pretrained", n)[0] not in ("last_conv", "stem")
            for t in ("photos", "fashion")
            for n in both
        ),
        "photos_gain_more": any(
            verdict == "photos" for _, _, verdict in m.compare_gains(r.similarity["points"]).values()
        ),
        "fashion_earlier": all(
            order.index(r.best_stage("fashion", "pretrained", n)[0])
            < order.index(r.best_stage("photos", "pretrained", n)[0])
            for n in both
        ),
        "early_generic": all(
            r.table[(t, "random", n)]["block1"].mean >= r.table[(t, "pretrained", n)]["block1"].mean - 0.05
            for t in ("photos", "fashion")
            for n in both
        ),
    }


def gains_text(r: Results) -> str:
    """The transfer gain on each task at its best stage, per size, with the paired verdict."""
    said = {"photos": "photos more", "fashion": "Fashion-MNIST more", "tie": "a tie", "not decided": "not decided"}
    return "; ".join(
        f"{n}/class: photos {p.mean:+.3f} ± {p.se:.3f} vs Fashion-MNIST {f.mean:+.3f} ± {f.se:.3f}, {said[verdict]}"
        for n, (p, f, verdict) in m.compare_gains(r.similarity["points"]).items()
    )


PUBLISHED = "2-conv CNN 0.916 without augmentation; MobileNet 0.950 with flip augmentation and many epochs"
LARGE = (1000, 6000)


def _cpu_hours(r: Results, scenario: str, n: int) -> float:
    """Mean CPU hours of one finished point (learning-rate search included only where it ran)."""
    points = [p for p in r.sweep["points"] if p["scenario"] == scenario and int(p["n_per_class"]) == n]
    return sum(p.get("point_cpu_seconds", 0.0) for p in points) / max(len(points), 1) / 3600


def large_data_reading(r: Results) -> tuple[str, str]:
    """'C suits large data': C against B and A at 1,000 and 6,000 per class, as measured, with CPU cost; status."""
    points, parts, decided = r.sweep["points"], [], []
    for n in LARGE:
        vs = [c for c in (m.compare(points, "C", other, n) for other in ("B", "A")) if c]
        if any(c.difference.seeds >= 2 for c in vs):
            decided.append(n)
        if vs:
            cost = f"CPU per run: C {_cpu_hours(r, 'C', n):.2f} h, B {_cpu_hours(r, 'B', n):.2f} h"
            parts.append(
                f"{n:,}/class: " + "; ".join(f"C vs {c.baseline} {short_verdict(c)}" for c in vs) + f" ({cost})"
            )
    all_data = {s: r.stats[(s, max(LARGE))] for s in ("B", "C") if (s, max(LARGE)) in r.stats}
    if "C" in all_data:
        said = ", ".join(
            f"{s} {st.mean:.3f} ({f'{st.seeds} seeds' if st.seeds > 1 else '1 seed so far'})"
            for s, st in all_data.items()
        )
        best = max(all_data, key=lambda s: all_data[s].mean)
        goal = f"met by {best}" if all_data[best].mean >= 0.93 else "not met"
        parts.append(
            f"all data, no augmentation: {said}, against the published {PUBLISHED}; "
            f"goal ≥ 0.93 for a full-data fine-tune on a CPU {goal}{flip_sentence(r)}"
        )
    missing = [n for n in LARGE if n not in decided]
    measured = "; ".join(parts) or "not measured yet"
    if missing:
        return f"{measured}; still running: {', '.join(f'{n:,}' for n in missing)} per class", "**open**"
    return measured, _large_data_status(r, max(LARGE))


def flip_sentence(r: Results) -> str:
    """The extra C point with flip augmentation beside its unaugmented seed, or that it has not run yet."""
    [flip] = r.flip["points"] or [None]
    if flip is None:
        return "; C with flip augmentation (an extra point after the plan): not run yet"
    n = int(flip["n_per_class"])
    [plain] = [
        p for p in r.sweep["points"] if (p["scenario"], int(p["n_per_class"]), p["seed"]) == ("C", n, flip["seed"])
    ]
    return (
        f"; C with flip augmentation (same budget, {flip['epochs_run']} epochs, C's seed-0 learning rate, 1 seed): "
        f"{flip['test_acc']:.3f} vs {plain['test_acc']:.3f} without, on the same images and start"
    )


def _large_data_status(r: Results, n: int) -> str:
    """Whether the largest size shows C as the recipe for large data: ahead of both, or what beats or ties it."""
    vs_b, vs_a = (m.compare(r.sweep["points"], "C", other, n) for other in ("B", "A"))
    if vs_b.verdict == "ahead" and vs_a.verdict == "ahead":
        return f"shown at {n:,} per class (C ahead of B and A)"
    cost = _cpu_hours(r, "C", n) / max(_cpu_hours(r, "B", n), 1e-9)
    b_said = {"tie": "C ties B", "behind": "B is ahead of C"}.get(vs_b.verdict, f"C vs B {vs_b.verdict}")
    a_said = "ahead of" if vs_a.verdict == "ahead" else f"{vs_a.verdict} against"
    return f"**not shown** at {n:,} per class: {b_said} (C {a_said} A), at {cost:.1f}× B's CPU per run"


def _why_not_b(r: Results, n: int) -> str | None:
    """Why B is not the recipe at size ``n`` (not ahead of A there, or C ahead of it); None where it is."""
    points = r.sweep["points"]
    vs_a, c_vs_b = m.compare(points, "B", "A", n), m.compare(points, "C", "B", n)
    if vs_a is None or c_vs_b is None:
        return "not every contender is measured"
    if vs_a.verdict != "ahead":
        return {"tie": "B ties A", "behind": "B is behind A"}.get(vs_a.verdict, f"B vs A {vs_a.verdict}")
    return "C is ahead of B" if c_vs_b.verdict == "ahead" else None


def _fine_tune_status(r: Results) -> str:
    """What is left to run; once everything is in, the sizes from which B suits (ahead of A, C not ahead of it)."""
    left = sorted(set(r.unfinished) | set(r.depth_unfinished))
    if left:
        return f"partly measured ({', '.join(f'{n:,}' for n in left)} per class still to run)"
    sizes, why = list(r.sizes), {n: _why_not_b(r, n) for n in r.sizes}
    start = next((n for i, n in enumerate(sizes) if not any(why[k] for k in sizes[i:])), None)
    if start is None:
        return f"**not shown**: at the largest size {why[sizes[-1]]}"
    below = "; ".join(f"at {n:,} per class {why[n]}" for n in sizes if n < start and why[n])
    return f"shown from {start:,} per class up: B ahead of A and C not ahead of B there" + (
        f" ({below})" if below else ""
    )


def _c_vs_scratch(r: Results) -> str:
    comparisons = ((n, m.compare(r.sweep["points"], "C", "scratch", n)) for n in r.sizes)
    return "; ".join(
        f"{n}/class {r.acc('C', n)} vs {r.acc('scratch', n)}: {short_verdict(c)}" for n, c in comparisons if c
    )


def claims_section(r: Results) -> str:
    """README's claims-and-evidence table."""
    v = similarity_verdicts(r)
    pp, fp = r.best_stage("photos", "pretrained", 10), r.best_stage("fashion", "pretrained", 10)
    cpu = r.bench["speed"]["cpu"]
    points = r.sweep["points"]
    fine_tune = "; ".join(
        f"{n}/class B {r.acc('B', n)} vs A {r.acc('A', n)}: {short_verdict(c)}"
        for n in r.sizes
        if (c := m.compare(points, "B", "A", n))
    )
    depth = "; ".join(
        f"freeze depth at {n}/class: best from {c.challenger} vs head alone: {short_verdict(c)}"
        for n, c in m.depth_against_head(r.depth["points"]).items()
    )
    fine_tune += f"; {depth}" if depth else ""
    c_measured, c_status = large_data_reading(r)
    size_part = f"crossover at {r.cross} per class" if r.cross else "no crossover among the finished sizes yet"
    gains = gains_text(r)
    similar = "gained more, at some size," if v["photos_gain_more"] else "did **not** gain more"
    return f"""{CLAIMS_HEADING}

Every claim the course makes, where it is shown, and the number behind it. Lesson checks run under nbval in
`make test` (quick profile; the full profile gives the students' numbers); the experiments' numbers come from the committed
result files (commands and status in [docs/experiments.md](docs/experiments.md)) and this section is rebuilt from them by `course results`. A claim
without a fair measurement says so.

| claim | shown in | measured | status |
|---|---|---|---|
| Early layers are generic, later ones specific | 01 §4 (top-activating patches, ImageNet vs random), 01 (filters; 1-NN in feature space), 07 §5 (a probe on every stage), 04 §6 (freeze depth) | late (last_conv) ImageNet channels' top images come from one source more often than random channels' by more than 0.1, while early (block2) ImageNet channels' top patches are no more edge-like than random ones' (01 §4, both checked: no edge or part detector is shown); first-layer filter strengths spread ≥ 3× more than random ones (01, checked); ImageNet features probe best at {pp[0]} on photos ({pp[1]:.3f}, last stage {pp[2]:.3f}) and at {fp[0]} on Fashion-MNIST ({fp[1]:.3f}, last stage {fp[2]:.3f}), 10/class; at block1 random weights probe {"about as well" if v["early_generic"] else "worse"} (photos {r.table[("photos", "random", 10)]["block1"].mean:.3f} vs {r.table[("photos", "pretrained", 10)]["block1"].mean:.3f}) | {"shown" if v["later_specific"] else "not shown"}{"; freeze depth at larger sizes still running" if r.depth_unfinished else ""} |
| Freezing trains only the new head | 02 §1, §2, §4, §5; exercise 1 | 1,539 trainable of 11,178,051 (= 512·3+3, ResNet18); 3,843 of 2,227,715 (MobileNetV2); body weights and BatchNorm statistics unchanged after training (checked) | shown |
| Caching the frozen activations makes head training (nearly) instant | 03, `course bench` | 10 head epochs: through the body {cpu["a_through_body_s"]:.2f} s vs cache build + epochs {cpu["b_total_s"]:.2f} s: **{cpu["speedup_total"]:.2f}×** (one cache build ≈ one epoch, so ~10× is the limit for 10 epochs); the two heads identical | shown |
| The frozen network is a fixed function f(x) | 06 §1, 03 | same image, identical features (checked); the head trained on cached features gives the full network's answers (checked) | shown |
| The softmax head is logistic regression on f(x) | 06 §2 | agreement with scikit-learn `LogisticRegression` above 98 % and weight correlation above 0.99 when both minimise the same objective (checked) | shown |
| B suits medium data | 04, 07 | {fine_tune} (lesson 07 gives each comparison's verdict on matched seeds) | {_fine_tune_status(r)} |
| C suits large data | 05, 07 | {c_measured} | {c_status} |
| Pretrained weights converge faster than random initialization | 05 §4–§5, 06 §3, 07 (exercise 4 measures it on one seed and reports the gap) | same budget, learning rates chosen on validation, BatchNorm recalibrated: the pretrained start reaches the random start's best validation accuracy in fewer epochs (05, checked in both profiles); lower validation loss after k steps than He init (06, checked); sweep C vs scratch: {_c_vs_scratch(r)} | shown |
| The choice depends on dataset size and similarity to ImageNet | 07 | size: {size_part}; similarity: measured, and the natural-photo task {similar} than Fashion-MNIST (each at its best stage: {gains}) | size: {"partly measured" if r.unfinished else "measured"}; similarity: {"shown" if v["photos_gain_more"] else "not confirmed on the offline tasks"} |

"""
