"""Lesson 07's advisor: follows the measured crossover and similarity, explains itself, refuses bad input."""

from pathlib import Path

import pytest

from course_utils import advisor, measurements


def _points(table, seeds=(0, 1)):
    """Sweep points with two seeds a little apart (+-0.005) around each mean."""
    return [
        {"scenario": s, "n_per_class": n, "seed": k, "test_acc": acc + (0.005 if k else -0.005), "n_test": 10000}
        for s, row in table.items()
        for n, acc in row.items()
        for k in seeds
    ]


# Fine-tuning (C) overtakes frozen features (A) from 100 per class on; scratch never wins.
SWEEP = _points(
    {
        "A": {10: 0.70, 30: 0.74, 100: 0.78, 300: 0.80, 1000: 0.82},
        "B": {10: 0.62, 30: 0.72, 100: 0.79, 300: 0.83, 1000: 0.86},
        "C": {10: 0.55, 30: 0.70, 100: 0.80, 300: 0.85, 1000: 0.89},
        "scratch": {10: 0.20, 30: 0.60, 100: 0.75, 300: 0.82, 1000: 0.87},
    }
)
SIMILARITY = [
    {"task": task, "init": init, "stage": stage, "n_per_class": 10, "seed": seed, "test_acc": acc, "n_test": 1000}
    for seed in (0, 1)
    for task, init, stage, acc in [
        ("photos", "pretrained", "last_conv", 0.90),
        ("photos", "random", "last_conv", 0.30),
        ("photos", "pretrained", "block4", 0.80),
        ("photos", "random", "block4", 0.50),
        ("fashion", "pretrained", "last_conv", 0.60),
        ("fashion", "random", "last_conv", 0.40),
        ("fashion", "pretrained", "block4", 0.70),
        ("fashion", "random", "block4", 0.45),
    ]
]


def test_measurements_summarise_seeds_and_find_the_crossover():
    stats = measurements.summarize(SWEEP, ("scenario", "n_per_class"))
    assert stats[("A", 10)].mean == pytest.approx(0.70) and stats[("A", 10)].seeds == 2
    assert stats[("A", 10)].sd == pytest.approx(0.00707, abs=1e-4)  # sd of 0.695 and 0.705
    assert measurements.crossover(SWEEP) == 100
    lead = measurements.margins(SWEEP)[1000]
    assert lead.challenger == "C" and lead.difference.mean == pytest.approx(0.07) and lead.verdict == "ahead"
    gains = measurements.transfer_gain(SIMILARITY)
    assert gains[("photos", 10)].mean == pytest.approx(0.60) and gains[("fashion", 10)].mean == pytest.approx(0.20)
    assert measurements.best_probe_stage(SIMILARITY) == {("photos", 10): "last_conv", ("fashion", 10): "block4"}
    at_best = measurements.gain_at_best_stage(SIMILARITY)  # each init read at its own best stage
    assert at_best[("photos", 10)].mean == pytest.approx(0.40) and at_best[("fashion", 10)].mean == pytest.approx(0.25)


def _paired(values: dict[str, list[float]], n: int = 10) -> list[dict]:
    return [
        {"scenario": s, "n_per_class": n, "seed": k, "test_acc": acc, "n_test": 10000}
        for s, accs in values.items()
        for k, acc in enumerate(accs)
    ]


def test_one_verdict_paired_on_matched_seeds():
    # seeds differ a lot (the training images), C is 0.010 below A in every seed: unpaired means overlap, paired
    # differences do not -- the verdict is 'behind' (negative transfer), as the course must say
    points = _paired({"A": [0.70, 0.73, 0.68, 0.74, 0.71], "C": [0.689, 0.721, 0.669]})
    c = measurements.compare(points, "C", "A", 10)
    assert c.difference.seeds == 3 and c.difference.values == pytest.approx([-0.011, -0.009, -0.011])
    assert c.verdict == "behind" and "3 matched seeds" in c.sentence() and c.sentence().endswith("behind")
    unpaired = measurements.summarize(points, ("scenario", "n_per_class"))
    assert abs(unpaired[("C", 10)].mean - unpaired[("A", 10)].mean) < 2 * unpaired[("A", 10)].se  # looks tied
    # one seed: no standard error (never the test set's binomial one) and no verdict
    single = measurements.compare(_paired({"A": [0.70], "B": [0.80]}), "B", "A", 10)
    assert single.verdict == "not decided" and "1 seed: not decided" in single.sentence()
    assert measurements.summarize(_paired({"A": [0.70]}), ("scenario", "n_per_class"))[("A", 10)].se != 0.0
    # noise-sized paired differences are a tie
    tie = measurements.compare(_paired({"A": [0.70, 0.71, 0.72], "B": [0.705, 0.705, 0.727]}), "B", "A", 10)
    assert tie.verdict == "tie"
    assert [measurements.decide(x, 0.01, 3) for x in (0.03, 0.01, -0.03)] == ["ahead", "tie", "behind"]
    assert measurements.decide(0.5, 0.01, 1) == "not decided"
    # leads equal to the last digit (10,000 test images: steps of 0.0001) have no spread: said so, not "+inf SE"
    same = measurements.compare(_paired({"A": [0.8674, 0.8692], "B": [0.9305, 0.9323]}), "B", "A", 10)
    assert same.verdict == "ahead" and "(the same lead on every seed): ahead" in same.sentence(), same.sentence()


def test_the_crossover_needs_decided_sizes_and_one_seed_neither_makes_nor_breaks_it():
    points = (
        _paired({"A": [0.70, 0.72, 0.71], "B": [0.70, 0.73, 0.70]}, 10)  # tie
        + _paired({"A": [0.75, 0.77, 0.76], "B": [0.78, 0.80, 0.79]}, 30)  # ahead
        + _paired({"A": [0.80], "B": [0.79]}, 100)  # one seed: not decided
        + _paired({"A": [0.82, 0.84], "B": [0.86, 0.88]}, 300)  # ahead
    )
    assert [measurements.margins(points)[n].verdict for n in (10, 30, 100, 300)] == [
        "tie",
        "ahead",
        "not decided",
        "ahead",
    ]
    assert measurements.crossover(points) == 30
    behind_later = points + _paired({"A": [0.85, 0.86], "B": [0.80, 0.81]}, 1000)
    assert measurements.crossover(behind_later) is None  # behind at the largest decided size: no crossover


def test_the_readme_the_advisor_and_exercise_5_give_the_same_verdicts():
    """The same numbers, read in every place that prints a verdict, say the same thing."""
    import json
    import re

    from course_utils.experiments import report

    points = _paired({"A": [0.70, 0.73, 0.68], "B": [0.69, 0.72, 0.68], "C": [0.689, 0.721, 0.669]}, 10) + _paired(
        {"A": [0.75, 0.77, 0.76], "B": [0.78, 0.80, 0.79], "C": [0.78, 0.80, 0.785]}, 100
    )
    expected = {n: measurements.margins(points)[n].verdict for n in (10, 100)}
    cross = measurements.crossover(points)
    assert expected == {10: "tie", 100: "ahead"} and cross == 100
    rec = advisor.recommend(10, "different", points)
    assert rec.scenario == "A" == advisor.choose_scenario(points, 10)[0] and f"crossover: {cross}" in rec.reason
    assert advisor.recommend(100, "different", points).scenario == advisor.choose_scenario(points, 100)[0] == "B"
    assert advisor.choose_scenario(points, 5000) == (advisor.NOT_MEASURED, None)  # beyond 3x the measured sizes

    class Fake(report.Results):
        def __init__(self):  # the report's reading of these points, without the committed files
            self.sweep = {"meta": {"config": {"sizes": [10, 100]}}, "points": points}
            self.stats = measurements.summarize(points, ("scenario", "n_per_class"))
            self.complete, self.sizes = [10, 100], [10, 100]

    lines = {n: report._size_line(Fake(), n) for n in (10, 100)}
    for n, line in lines.items():
        said = dict(re.findall(r"(B|C) [-+][0-9.]+ ± [0-9.]+, \d seeds: ([a-z ]+)", line))
        assert said["C"] == measurements.compare(points, "C", "A", n).verdict
        assert said["B"] == measurements.compare(points, "B", "A", n).verdict
    source = json.loads(Path("notebooks/exercises/source/ex5_use_your_model.ipynb").read_text(encoding="utf-8"))
    code = "".join("".join(c["source"]) for c in source["cells"] if c["cell_type"] == "code")
    assert "advisor.choose_scenario(POINTS, n)" in code  # exercise 5 is graded by the advisor's own rule


def test_small_data_gets_frozen_features_with_the_numbers_behind_it():
    rec = advisor.recommend(10, "different", SWEEP, SIMILARITY)
    assert rec.scenario == "A" and rec.nearest_size == 10
    assert "0.700" in rec.reason  # the measured mean behind the advice
    assert any("+0.20" in line and "fashion" in line for line in rec.evidence)
    assert any("best-probing stage on fashion at 10/class: block4" in line for line in rec.evidence)


def test_large_dissimilar_data_gets_the_best_fine_tuning_measured():
    rec = advisor.recommend(2000, "different", SWEEP)
    assert rec.scenario == "C" and rec.nearest_size == 1000 and "crossover (100" in rec.reason


def test_similar_data_says_what_was_not_measured():
    small = advisor.recommend(50, "similar", SWEEP, SIMILARITY)
    assert small.scenario == "A" and "measured on Fashion-MNIST only" in small.reason
    # each at its best stage: photos 0.90 (last_conv) - 0.50 (block4), Fashion-MNIST 0.70 - 0.45 (both block4)
    assert "helped more on natural photos (transfer gain at each one's best stage +0.40 vs +0.25)" in small.reason

    # the sentence follows the measurement: equal gains are said to be equal, not "better on photos"
    def photos_lowered(p):  # photos' gain brought down to Fashion-MNIST's, with a little seed-to-seed spread
        return {**p, "test_acc": p["test_acc"] - 0.15 + (0.01 if p["seed"] else -0.01)}

    equal = [photos_lowered(p) if p["init"] == "pretrained" and p["task"] == "photos" else p for p in SIMILARITY]
    assert "about as much on natural photos" in advisor.recommend(50, "similar", SWEEP, equal).reason
    large = advisor.recommend(1000, "similar", SWEEP, SIMILARITY)
    assert large.scenario == "C" and "compare it with A on your validation set" in large.reason


def test_scratch_only_where_it_was_measured_to_win():
    assert all(advisor.recommend(n, "different", SWEEP).scenario != "scratch" for n in (10, 100, 1000, 10**6))
    winning = _points({"A": {10: 0.7, 1000: 0.8}, "C": {10: 0.5, 1000: 0.85}, "scratch": {10: 0.1, 1000: 0.9}})
    assert advisor.recommend(1000, "different", winning).scenario == "scratch"


def test_no_crossover_means_frozen_features_everywhere():
    never = _points({"A": {10: 0.7, 1000: 0.9}, "C": {10: 0.5, 1000: 0.85}})
    rec = advisor.recommend(5000, "different", never)
    assert rec.scenario == "A" and "no fine-tuning is ahead of frozen features" in rec.reason
    assert "your size was not measured" in rec.reason  # 5,000 is beyond 3x the largest measured size


@pytest.mark.parametrize("n, similarity", [(0, "different"), (10, "purple")])
def test_bad_input_says_what_is_wrong(n, similarity):
    with pytest.raises(ValueError, match="images per class|similarity"):
        advisor.recommend(n, similarity, SWEEP)


def test_widget_follows_the_controls():
    box = advisor.advisor_widget(SWEEP, SIMILARITY, n_per_class=10, similarity="different")
    assert box.result.scenario == "A" and "Recommended" in box.html.value and "transfer gain" in box.html.value
    box.n.value = 1000
    assert box.result.scenario == "C" and "full fine-tune" in box.html.value
    box.similarity.value = "similar"
    assert box.result.scenario == "C" and "measured on Fashion-MNIST only" in box.html.value
    box.n.value = 20
    assert box.result.scenario == "A"


def test_a_size_where_fine_tuning_was_not_measured_is_not_used():
    partial = SWEEP + _points({"A": {3000: 0.85}, "raw": {3000: 0.80}})  # a sweep still running: no B or C at 3000
    rec = advisor.recommend(3000, "different", partial)
    assert rec.nearest_size == 1000 and rec.scenario == "C"


def test_a_size_beyond_the_measured_ones_is_said_to_be_a_guess():
    measured_small = [p for p in SWEEP if p["n_per_class"] <= 30]
    assert "your size was not measured" in advisor.recommend(3000, "different", measured_small).reason
    assert "your size was not measured" not in advisor.recommend(30, "different", measured_small).reason


def test_beyond_the_measured_sizes_a_one_seed_lead_is_not_called_ahead():
    one_seed = _points({"A": {10: 0.70, 100: 0.80}, "B": {10: 0.69, 100: 0.85}}, seeds=(0,))  # like the sweep today
    rec = advisor.recommend(3000, "different", one_seed)
    assert rec.scenario == "B" and "is ahead of" not in rec.reason
    assert "highest mean" in rec.reason and "verdict: not decided" in rec.reason


def test_a_size_with_one_seed_so_far_does_not_decide_the_advice_until_its_seeds_are_in():
    # the committed sweep while it runs: 6,000 per class has A's five seeds but one seed of B, far below A there
    decided = _points({"A": {100: 0.80, 1000: 0.85}, "B": {100: 0.84, 1000: 0.90}})
    partial = decided + _points({"A": {6000: 0.87}}, seeds=(0, 1, 2, 3, 4)) + _points({"B": {6000: 0.80}}, seeds=(0,))
    assert measurements.compare(partial, "B", "A", 6000).verdict == "not decided"
    assert advisor.comparable_sizes(partial, measurements.accuracy_table(partial)) == [100, 1000]
    assert advisor.choose_scenario(partial, 3000) == ("B", 1000)  # not "A" from the one seed at 6,000
    rec = advisor.recommend(3000, "different", partial)
    assert rec.scenario == "B" and rec.nearest_size == 1000 and "at 1000 per class" in rec.reason
    finished = partial + _points({"B": {6000: 0.80}}, seeds=(1,))  # its second seed in: 6,000 has a verdict
    assert advisor.choose_scenario(finished, 3000) == ("A", 6000)


def test_a_tie_between_b_and_c_goes_to_b_which_trains_fewer_layers():
    # both ahead of A; C's mean is higher, but inside the seeds' noise against B: a tie, so the cheaper B
    tie = _paired({"A": [0.80, 0.82, 0.81], "B": [0.85, 0.86, 0.86], "C": [0.858, 0.857, 0.866]}, 1000)
    assert measurements.compare(tie, "C", "B", 1000).verdict == "tie"
    assert advisor.choose_scenario(tie, 1000) == ("B", 1000)
    rec = advisor.recommend(1000, "different", tie)
    assert rec.scenario == "B" and "C ties B there, and B trains fewer layers" in rec.reason
    assert any(line.startswith("C vs B at 1000/class") for line in rec.evidence)
    assert advisor.recommend(20000, "different", tie).scenario == "B"  # beyond the sizes: the same reading
    ahead = _paired({"A": [0.80, 0.82, 0.81], "B": [0.85, 0.86, 0.86], "C": [0.88, 0.89, 0.885]}, 1000)
    assert advisor.choose_scenario(ahead, 1000) == ("C", 1000)  # C ahead of B by the verdict: C
