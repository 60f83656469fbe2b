"""The scenario advisor of lesson 07: follows the sweep's measured crossover, explains itself, rejects bad input."""

import pytest

from course_utils import advisor


def _points(table):
    return [{"scenario": s, "n_per_class": n, "test_acc": acc} for s, row in table.items() for n, acc in row.items()]


# Fine-tuning (C) overtakes frozen features (A) from 100 per class on; scratch never wins.
SWEEP = _points(
    {
        "A": {10: 0.70, 30: 0.74, 100: 0.78, 300: 0.80, 1000: 0.82},
        "B": {10: 0.62, 30: 0.72, 100: 0.79, 300: 0.83, 1000: 0.86},
        "C": {10: 0.55, 30: 0.70, 100: 0.80, 300: 0.85, 1000: 0.89},
        "scratch": {10: 0.20, 30: 0.60, 100: 0.75, 300: 0.82, 1000: 0.87},
    }
)


def test_small_data_gets_frozen_features():
    rec = advisor.recommend(10, "different", SWEEP)
    assert rec.scenario == "A" and rec.nearest_size == 10
    assert "0.700" in rec.reason  # the measured number behind the advice


def test_large_dissimilar_data_gets_the_best_fine_tuning_measured():
    rec = advisor.recommend(2000, "different", SWEEP)
    assert rec.scenario == "C" and rec.nearest_size == 1000 and rec.threshold == 100


def test_similar_data_moves_the_threshold_up():
    assert advisor.recommend(150, "different", SWEEP).scenario in ("B", "C")
    similar = advisor.recommend(150, "similar", SWEEP)
    assert similar.scenario == "A" and similar.threshold == pytest.approx(300)


def test_scratch_only_where_it_was_measured_to_win():
    assert all(advisor.recommend(n, "different", SWEEP).scenario != "scratch" for n in (10, 100, 1000, 10**6))
    winning = _points({"A": {10: 0.7, 1000: 0.8}, "C": {10: 0.5, 1000: 0.85}, "scratch": {10: 0.1, 1000: 0.9}})
    assert advisor.recommend(1000, "different", winning).scenario == "scratch"


def test_no_crossover_means_frozen_features_everywhere():
    never = _points({"A": {10: 0.7, 1000: 0.9}, "C": {10: 0.5, 1000: 0.85}})
    rec = advisor.recommend(5000, "different", never)
    assert rec.scenario == "A" and "never" in rec.reason


@pytest.mark.parametrize("n, similarity", [(0, "different"), (10, "purple")])
def test_bad_input_says_what_is_wrong(n, similarity):
    with pytest.raises(ValueError, match="images per class|similarity"):
        advisor.recommend(n, similarity, SWEEP)


def test_widget_follows_the_controls():
    box = advisor.advisor_widget(SWEEP, n_per_class=10, similarity="different")
    assert box.result.scenario == "A" and "Recommended" in box.html.value
    box.n.value = 1000
    assert box.result.scenario == "C" and "full fine-tune" in box.html.value
    box.similarity.value = "similar"
    box.n.value = 200
    assert box.result.scenario == "A"
