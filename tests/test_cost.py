"""The CPU-time estimate of a long experiment run: exact on points that follow its model, free for shared points,
and within reach of the committed run's own measurements one size up."""

from __future__ import annotations

import pytest

from course_utils import measurements
from course_utils.experiments import cost
from course_utils.experiments.config import config_for

PER_IMAGE, PER_EPOCH, OVERHEAD = 0.004, 2.0, 1.25  # the synthetic contender's true costs


def _point(scenario: str, n: int, seed: int, epochs: int, max_epochs: int, **extra) -> dict:
    train = (PER_IMAGE * n * 10 + PER_EPOCH) * epochs
    return {
        "scenario": scenario,
        "n_per_class": n,
        "seed": seed,
        "lr_chosen_here": seed == 0,
        "epochs_run": epochs,
        "max_epochs": max_epochs,
        "train_cpu_seconds": train,
        "point_cpu_seconds": train * OVERHEAD,
        "device": "cpu",
        **extra,
    }


def _record(experiment: str = "scenarios") -> dict:
    config = config_for("scenarios", "full").as_json()
    config.update(experiment=experiment, sizes=[100, 300, 1000], scenarios=["B"])
    points = [
        _point("B", n, seed, config["budgets"][str(n)]["max_epochs"] // 2, config["budgets"][str(n)]["max_epochs"])
        for n in (100, 300)
        for seed in (1, 2)
    ]
    return {"meta": {"config": config}, "points": points}


def test_the_estimate_is_exact_for_a_contender_whose_costs_follow_the_model():
    record = _record()
    budget = record["meta"]["config"]["budgets"]["1000"]
    fixed = (PER_IMAGE * 10_000 + PER_EPOCH) * budget["max_epochs"] / 2 * OVERHEAD  # half the epoch limit, as at 300
    # seed 0 searches: three candidates for the probe epochs, the best goes on to the same early stop
    searched = (PER_IMAGE * 10_000 + PER_EPOCH) * (3 * 4 + budget["max_epochs"] / 2 - 4) * OVERHEAD
    rest = (PER_IMAGE * 1000 + PER_EPOCH) * 15 * 3 * OVERHEAD + (PER_IMAGE * 3000 + PER_EPOCH) * 10 * 3 * OVERHEAD
    result = cost.estimate(record)
    assert result.missing == 5  # seed 0 at 100 and 300, seeds 0-2 at 1000
    assert result.left_hours == pytest.approx((2 * fixed + searched + rest) / 3600)
    assert result.left_hours_max > result.left_hours
    assert result.spent_hours == pytest.approx(sum(p["point_cpu_seconds"] for p in record["points"]) / 3600)


def test_points_copied_from_the_sweep_cost_nothing_and_gpu_points_are_not_fitted():
    record = _record("freeze-depth")
    record["meta"]["config"]["scenarios"] = ["block5", "block4"]
    record["points"] = [{**p, "scenario": "block4"} for p in record["points"]]
    record["points"].append({**_point("block5", 100, 1, 5, 30), "from_sweep": "sweep_full.json"})
    planned_block5 = [k for k in measurements.missing_points(record) if k[0] == "block5"]
    result = cost.estimate(record)
    assert planned_block5 and result.missing == len(measurements.missing_points(record)) - len(planned_block5)
    assert result.spent_hours == pytest.approx(sum(p["point_cpu_seconds"] for p in record["points"][:-1]) / 3600)
    gpu = _record()
    gpu["points"] = [{**p, "device": "cuda", "train_cpu_seconds": 1e6} for p in gpu["points"]]
    assert cost.estimate(gpu).unestimated == ["B"]  # nothing measured on the CPU to estimate from
    assert "not estimated (no finished point): B" in cost.cost_line(gpu)


def test_the_committed_run_is_estimated_within_a_third_one_size_up():
    record = measurements.load_results(measurements.COMMITTED_SWEEP)
    for n in (300, 1000):
        estimated, measured = cost.holdout_check(record, n)
        assert measured > 0 and abs(estimated / measured - 1) < 1 / 3, (n, estimated, measured)
    line = cost.cost_line(record)
    assert line.startswith("CPU time: ") and "h in the finished points" in line
