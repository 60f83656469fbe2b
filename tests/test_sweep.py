"""The scenario sweep: resumable, atomic, and its committed full-profile results are complete and traceable."""

import json
from dataclasses import replace

import pytest

from course_utils import measurements
from course_utils.experiments import sweep

TINY = sweep.SweepConfig(sizes=(2,), epochs={2: 1}, n_test=2, head_steps=3, scenarios=("A", "B"))


def test_resume_skips_finished_points(tmp_path):
    out = tmp_path / "sweep.json"
    first_log = []
    record = sweep.run_sweep(TINY, out, command="test", log=first_log.append)
    assert [p["scenario"] for p in record["points"]] == ["A", "B"]
    assert all(line.startswith("done") for line in first_log)
    on_disk = json.loads(out.read_text())
    assert len(on_disk["points"]) == 2 and on_disk["meta"]["command"] == "test"
    for point in on_disk["points"]:
        assert 0.0 <= point["test_acc"] <= 1.0 and point["train_seconds"] >= 0 and point["image_size"] == 32

    second_log = []
    again = sweep.run_sweep(TINY, out, log=second_log.append)
    assert len(second_log) == 2 and all(line.startswith("skip") for line in second_log)
    assert again["points"] == on_disk["points"]  # nothing re-run, timestamps unchanged


def test_resume_runs_only_missing_points(tmp_path):
    out = tmp_path / "sweep.json"
    sweep.run_sweep(replace(TINY, scenarios=("A",)), out, log=lambda _: None)
    log = []
    record = sweep.run_sweep(TINY, out, log=log.append)
    assert [line.split()[0] + " " + line.split()[1] for line in log] == ["skip A", "done B"]
    assert [p["scenario"] for p in record["points"]] == ["A", "B"]


def test_changed_budget_is_a_new_point(tmp_path):
    out = tmp_path / "sweep.json"
    sweep.run_sweep(replace(TINY, scenarios=("B",)), out, log=lambda _: None)
    log = []
    sweep.run_sweep(replace(TINY, scenarios=("B",), epochs={2: 2}), out, log=log.append)
    assert log[0].startswith("done")
    assert sorted(p["epochs"] for p in sweep.load_results(out)["points"]) == [1, 2]


def test_broken_results_file_says_what_to_do(tmp_path):
    out = tmp_path / "sweep.json"
    out.write_text('{"points": [')
    with pytest.raises(ValueError, match="delete it"):
        sweep.load_results(out)
    assert out.read_text() == '{"points": ['  # the user's file is left as it was


def test_crossover_and_best_by_size():
    points = [
        {"scenario": "A", "n_per_class": 10, "test_acc": 0.70},
        {"scenario": "C", "n_per_class": 10, "test_acc": 0.50},
        {"scenario": "A", "n_per_class": 100, "test_acc": 0.80},
        {"scenario": "C", "n_per_class": 100, "test_acc": 0.85},
        {"scenario": "A", "n_per_class": 1000, "test_acc": 0.83},
        {"scenario": "C", "n_per_class": 1000, "test_acc": 0.90},
    ]
    assert sweep.best_by_size(points) == {10: "A", 100: "C", 1000: "C"}
    assert sweep.crossover(points) == 100
    assert sweep.crossover(points[:2]) is None


def test_epochs_for_uses_nearest_listed_size_below():
    config = sweep.SweepConfig(sizes=(10, 100), epochs={10: 5, 100: 2})
    assert [config.epochs_for(n) for n in (5, 10, 50, 100, 500)] == [5, 5, 5, 2, 2]


def test_committed_full_results_are_complete_and_traceable():
    record = sweep.load_results(measurements.COMMITTED_FULL)
    meta = record["meta"]
    assert "python -m course_utils.sweep" in meta["command"] and "--profile full" in meta["command"]
    assert meta["machine"]["cpu_count"] >= 1 and meta["machine"]["torch"]
    config = sweep.config_for("full")
    have = {(p["scenario"], p["n_per_class"]) for p in record["points"]}
    want = {(s, n) for s in sweep.SCENARIOS for n in config.sizes}
    assert want <= have, f"missing points: {sorted(want - have)}"
    assert {10, 30, 100, 300, 1000} <= set(config.sizes)
    for point in record["points"]:
        assert 0.0 <= point["test_acc"] <= 1.0 and point["train_seconds"] > 0
