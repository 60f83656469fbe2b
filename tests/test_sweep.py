"""The experiments' machinery: the cut between frozen and trainable stages, the boundary cache, the fair protocol
and the resumable runner. (The committed results themselves are checked in tests/test_measurements.py.)"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from course_utils import backbones as bb
from course_utils import lr_search, measurements
from course_utils.cache import cache_boundary
from course_utils.device import seed_everything
from course_utils.experiments import config as sweep_config
from course_utils.experiments import inputs as sweep_inputs
from course_utils.experiments import protocol, sweep
from course_utils.fashion import FASHION_CLASSES, TensorImages, load_fashion_mnist
from course_utils.training import fit


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18"])
def test_split_at_every_stage_recomposes_the_model(name):
    model = bb.load_backbone(name, pretrained=False).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        for stage in bb.stage_names(model):
            trunk, rest = bb.split_at(model, stage)
            assert torch.allclose(rest(trunk(x)), expected, atol=1e-5), stage
        trunk, _ = bb.split_at(model, "head")
        assert torch.allclose(trunk(x), bb.body_features(model, x), atol=1e-6)
    # the pieces are the model's own layers: training `rest` trains the model
    _, rest = bb.split_at(model, "last_conv" if name == "mobilenet_v2" else "layer4")
    assert any(p is bb.head_of(model).weight for p in rest.parameters())
    with pytest.raises(ValueError, match="unknown stage 'block9'"):
        bb.split_at(model, "block9")


def small_fashion(n_train=300, n_test=60) -> sweep_inputs.Fashion:
    train_x, train_y = load_fashion_mnist(True)
    test_x, test_y = load_fashion_mnist(False)
    return sweep_inputs.Fashion(
        train_x[:n_train], train_y[:n_train], test_x[:n_test], test_y[:n_test], np.arange(n_test)
    )


def test_training_from_the_boundary_cache_equals_training_through_the_frozen_stages(tmp_path):
    """Scenario B's shortcut changes only the time: same start, same batches -> same weights."""
    fashion = small_fashion(96)
    images = TensorImages(fashion.train_x, fashion.train_y, list(FASHION_CLASSES), size=32)
    seed_everything(0)
    through = bb.load_backbone("mobilenet_v2")
    bb.replace_head(through, 10, dropout=0.0)
    shortcut = bb.load_backbone("mobilenet_v2")
    bb.replace_head(shortcut, 10, dropout=0.0)
    shortcut.load_state_dict(through.state_dict())
    for model in (through, shortcut):
        bb.freeze_all(model)
        bb.unfreeze_from(model, "block6")
    cached = cache_boundary(shortcut, images, "block6", "b", root=tmp_path, progress=False, verbose=False)
    assert cached.features.shape == (96, 96, 2, 2)  # block5 ends with 96 channels, 2 x 2 at 32 px
    _, rest = bb.split_at(shortcut, "block6")

    def train(model, data):
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
        loader = DataLoader(data, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
        fit(model, loader, optimizer, 2, frozen_bn_eval=True, progress=False)

    all_images = torch.stack([images[i][0] for i in range(len(images))])
    train(through, TensorDataset(all_images, fashion.train_y))
    train(rest, TensorDataset(*cached.tensors()))
    a, b = through.state_dict(), shortcut.state_dict()
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-4
    assert not torch.equal(
        a["features.14.conv.0.0.weight"], bb.load_backbone("mobilenet_v2").state_dict()["features.14.conv.0.0.weight"]
    )  # block6 really trained


def test_boundary_cache_depends_on_the_frozen_weights_only(tmp_path):
    images = TensorImages(*load_fashion_mnist(False), list(FASHION_CLASSES), size=32)
    images = TensorImages(images.images[:16], images.targets[:16], images.classes, size=32)
    model = bb.load_backbone("mobilenet_v2")
    first = cache_boundary(model, images, "block5", "b", root=tmp_path, progress=False, verbose=False)
    with torch.no_grad():
        model.features[15].conv[0][0].weight.add_(1.0)  # block6: after the boundary
    assert cache_boundary(model, images, "block5", "b", root=tmp_path, verbose=False).reason == "loaded from cache"
    with torch.no_grad():
        model.features[2].conv[0][0].weight.add_(1.0)  # block2: before it
    again = cache_boundary(model, images, "block5", "b", root=tmp_path, progress=False, verbose=False)
    assert again.reason == "rebuilt: weights changed" and not np.array_equal(again.features, first.features)


def toy_data(n=240, seed=0) -> protocol.Data:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=generator)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    idx = np.arange(n)

    def batches(part, shuffle=False):
        return protocol.ArrayBatches(x, y, part, 16, shuffle=shuffle, seed=seed)

    return protocol.Data(batches(idx[:120], True), batches(idx[120:180]), batches(idx[180:]), batches(idx[:64]))


def test_array_batches_cover_every_example_once_per_epoch_in_a_new_order():
    x = np.arange(50, dtype=np.float32).reshape(50, 1)
    batches = protocol.ArrayBatches(x, np.arange(50), np.arange(50)[::2], 8, shuffle=True, seed=1)
    first = [b for b, _ in batches]
    second = [b for b, _ in batches]
    assert len(batches) == len(first) == 4
    assert sorted(torch.cat(first).flatten().tolist()) == list(range(0, 50, 2))
    assert torch.cat(first).flatten().tolist() != torch.cat(second).flatten().tolist()
    for inputs, labels in protocol.ArrayBatches(x, np.arange(50), np.arange(50), 7):
        assert torch.equal(inputs.flatten().long(), labels)  # rows and labels stay paired


def test_flipped_batches_mirror_about_half_the_images_and_keep_the_order_of_unflipped_ones():
    images = torch.arange(64 * 2 * 3, dtype=torch.uint8).reshape(64, 1, 2, 3)  # every row reads left to right
    plain = protocol.ArrayBatches(images, np.arange(64), np.arange(64), 16, shuffle=True, seed=3)
    flipped = protocol.ArrayBatches(images, np.arange(64), np.arange(64), 16, shuffle=True, seed=3, flip=True)
    for epoch in range(2):
        mirrored = 0
        for (x, y), (fx, fy) in zip(plain, flipped, strict=True):
            assert torch.equal(y, fy)  # the same images in the same order: only the flips differ
            same = (fx == x).flatten(1).all(1)
            mirror = (fx == x.flip(-1)).flatten(1).all(1)
            assert bool((same | mirror).all())  # each image either untouched or mirrored left-right
            mirrored += int(mirror.sum())
        assert 16 <= mirrored <= 48, (epoch, mirrored)  # about half, drawn anew every epoch
    assert not any(torch.equal(x, x.flip(-1)) for x, _ in plain)


def test_the_learning_rate_is_chosen_on_validation_and_test_is_measured_once():
    data = toy_data()
    tested = []
    original = protocol.evaluate

    def counting_evaluate(model, loader, device, *args, **kwargs):
        tested.append(loader is data.test)
        return original(model, loader, device, *args, **kwargs)

    protocol.evaluate = counting_evaluate
    try:
        result = protocol.select_and_train(
            protocol.linear_builder(8, 2, 0), (1e-6, 0.05), data, protocol.Budget(12, 3), recalibrate=False
        )
    finally:
        protocol.evaluate = original
    assert {"1e-06", "0.05"} <= set(result.lr_search) and result.lr >= 0.05
    assert result.lr_search["0.05"] > result.lr_search["1e-06"] + 0.2  # a learning rate too small to learn
    assert result.val_acc == result.lr_search[f"{result.lr:g}"] and result.test_acc > 0.85
    assert sum(tested) == 1  # the test set is evaluated once; validation choices never look at it


def test_a_winner_at_the_edge_of_the_grid_extends_it_until_it_is_bracketed():
    assert [lr_search.next_rate(lr, up=True) for lr in (1e-4, 3e-4, 1e-3)] == [3e-4, 1e-3, 3e-3]
    assert [lr_search.next_rate(lr, up=False) for lr in (1e-4, 3e-4, 1e-2)] == [3e-5, 1e-4, 3e-3]
    data = toy_data()
    budget = protocol.Budget(12, 3)
    # a grid below the useful rates: its top wins, so the grid grows upwards, one half-decade at a time
    low = protocol.select_and_train(protocol.linear_builder(8, 2, 0), (1e-3, 3e-3), data, budget, recalibrate=False)
    assert low.lr_grid[:2] == [1e-3, 3e-3] and len(low.lr_grid) > 2
    assert low.lr_grid[2:] == [1e-2, 3e-2, 1e-1][: len(low.lr_grid) - 2]
    assert low.lr_at_edge == (low.lr in (low.lr_grid[0], low.lr_grid[-1]))  # only when the extensions ran out
    assert set(low.lr_search) == {f"{lr:g}" for lr in low.lr_grid}  # every candidate's validation score is kept
    # a tie never pushes the grid outwards: equals go to the rate nearest the middle
    flat = protocol.select_and_train(protocol.linear_builder(8, 2, 0), (1e-9, 2e-9, 4e-9), data, budget, False)
    assert flat.lr == 2e-9 and flat.lr_grid == [1e-9, 2e-9, 4e-9] and not flat.lr_at_edge
    # a reused choice is not a search: no extension
    fixed = protocol.select_and_train(protocol.linear_builder(8, 2, 0), (1e-6,), data, budget, False, fixed_lr=1e-6)
    assert fixed.lr_grid == [1e-6] and not fixed.lr_at_edge


def test_channels_last_changes_the_layout_not_the_numbers():
    x = torch.rand(6, 3, 32, 32)
    batches = protocol.ArrayBatches(x, torch.zeros(6, dtype=torch.long), np.arange(6), 3, channels_last=True)
    first, _ = next(iter(batches))
    assert first.is_contiguous(memory_format=torch.channels_last) and torch.equal(first, x[:3])
    model = bb.load_backbone("mobilenet_v2").eval()
    with torch.no_grad():
        expected = model(x)
        fast = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert (expected - fast).abs().max().item() < 1e-4


def test_successive_halving_trains_only_the_winner_to_the_end():
    data = toy_data()
    budget = protocol.Budget(10, 10, probe_epochs=2)
    result = protocol.select_and_train(
        protocol.linear_builder(8, 2, 0), (1e-6, 0.05, 50.0), data, budget, recalibrate=False
    )
    assert result.epochs_run == 10  # probe 2 epochs + 8 more for the winner only
    assert result.lr_search[f"{result.lr:g}"] == max(result.lr_search.values())
    fixed = protocol.select_and_train(
        protocol.linear_builder(8, 2, 0), (1e-6, 0.05), data, budget, recalibrate=False, fixed_lr=1e-6
    )
    assert fixed.lr == 1e-6 and list(fixed.lr_search) == ["1e-06"]  # a reused choice: no search


def test_the_kept_model_is_the_best_validation_epoch():
    data = toy_data()
    result = protocol.select_and_train(
        protocol.linear_builder(8, 2, 0), (3.0,), data, protocol.Budget(25, 4), recalibrate=False
    )
    _, val_acc = protocol.evaluate(result.model, data.val, "cpu")
    assert val_acc == pytest.approx(result.val_acc) and result.best_epoch <= result.epochs_run


def test_split_indices_are_disjoint_balanced_and_all_means_all():
    labels = load_fashion_mnist(True)[1]
    config = sweep_config.config_for("scenarios", "full")
    train, val = sweep_inputs.split_indices(labels, config, 30, seed=2)
    assert not set(train) & set(val) and len(train) == 300 and len(val) == 1000
    assert np.bincount(labels[train].numpy()).tolist() == [30] * 10
    train_all, val_all = sweep_inputs.split_indices(labels, config, 6000, seed=0)
    assert len(train_all) + len(val_all) == 60000 and not set(train_all) & set(val_all)


TINY = sweep_config.SweepConfig(
    "scenarios",
    32,
    (2,),
    {2: protocol.Budget(2, 1)},
    ("raw", "A", "B"),
    seeds=2,
    cheap_seeds=2,
    val_per_class=2,
    test_per_class=None,
    lr_grids={"linear": (3e-3, 1e-2), "finetune": (3e-4,), "scratch": (1e-3,)},
)


@pytest.mark.slow  # a tiny sweep, trained for real
def test_the_runner_resumes_reuses_the_seed_0_choice_and_refuses_another_configuration(tmp_path):
    fashion, out, log = small_fashion(200, 20), tmp_path / "sweep.json", []
    record = sweep.run_experiment(TINY, out, command="test", log=log.append, fashion=fashion, root=tmp_path / "c")
    keys = [(p["scenario"], p["seed"]) for p in record["points"]]
    assert keys == [("raw", 0), ("A", 0), ("B", 0), ("raw", 1), ("A", 1), ("B", 1)]
    on_disk = json.loads(out.read_text())
    assert on_disk["points"] == record["points"] and on_disk["meta"]["config"] == TINY.as_json()
    assert out.with_suffix(".csv").read_text().count("\n") == 7
    seed1 = {p["scenario"]: p for p in record["points"] if p["seed"] == 1}
    seed0 = {p["scenario"]: p for p in record["points"] if p["seed"] == 0}
    assert all(seed1[s]["lr"] == seed0[s]["lr"] and not seed1[s]["lr_chosen_here"] for s in seed1)
    assert all(p["n_test"] == 20 and p["train_per_class"] >= 1 for p in record["points"])
    log.clear()
    again = sweep.run_experiment(TINY, out, log=log.append, fashion=fashion, root=tmp_path / "c")
    assert again["points"] == record["points"] and sum(line.startswith("skip") for line in log) == 6
    assert len(again["meta"]["runs"]) == 2  # each invocation is recorded with its command and machine
    with pytest.raises(ValueError, match="another configuration"):
        sweep.run_experiment(replace(TINY, image_size=48), out, fashion=fashion, root=tmp_path / "c")
    assert all(p["device"] == "cpu" for p in record["points"])  # the device each point really used
    with pytest.raises(ValueError, match="one size never mixes devices"):
        on_disk["points"] = on_disk["points"][:-1]
        on_disk["points"][0]["device"] = "cuda"
        out.write_text(json.dumps(on_disk))
        sweep.run_experiment(TINY, out, log=log.append, fashion=fashion, root=tmp_path / "c", device="cpu")


@pytest.mark.slow  # a tiny sweep, trained for real
def test_the_freeze_depths_the_sweep_measured_are_taken_from_it_not_trained_again(tmp_path):
    fashion, log = small_fashion(200, 20), []
    sweep_out, depth_out = tmp_path / "sweep.json", tmp_path / "depth.json"
    tiny = replace(TINY, seeds=1, cheap_seeds=1)
    sweep_record = sweep.run_experiment(tiny, sweep_out, log=log.append, fashion=fashion, root=tmp_path / "c")
    depths = replace(tiny, experiment="freeze-depth", scenarios=("head", "block6", "block5"))
    record = sweep.run_experiment(
        depths, depth_out, log=log.append, fashion=fashion, root=tmp_path / "c", sweep_file=sweep_out
    )
    by = {p["scenario"]: p for p in record["points"]}
    sweep_by = {p["scenario"]: p for p in sweep_record["points"]}
    assert by["head"]["from_sweep"] == by["block5"]["from_sweep"] == "sweep.json"
    assert by["head"]["test_acc"] == sweep_by["A"]["test_acc"] and by["block5"]["lr"] == sweep_by["B"]["lr"]
    assert "from_sweep" not in by["block6"] and by["block6"]["first_trainable"] == "block6"  # trained here
    assert sum(line.startswith("done") for line in log) == 3 + 1  # the sweep's three points, then block6 only
    # a sweep run under another protocol is never borrowed from
    other = replace(tiny, image_size=48)
    sweep.run_experiment(other, tmp_path / "other.json", log=log.append, fashion=fashion, root=tmp_path / "c")
    log.clear()
    sweep.run_experiment(
        replace(depths, image_size=48),
        tmp_path / "d2.json",
        log=log.append,
        fashion=fashion,
        root=tmp_path / "c",
        sweep_file=sweep_out,
    )
    assert any("another protocol" in line for line in log)


@pytest.mark.slow  # a tiny sweep and its flip point, trained for real
def test_the_flip_point_reuses_the_sweeps_rates_and_waits_for_them(tmp_path):
    fashion, log = small_fashion(200, 20), []
    sweep_out, flip_out = tmp_path / "sweep.json", tmp_path / "flip.json"
    # the sweep plans more sizes than the flip point's one (as in the full profiles): only that size's budget counts
    budgets = {**TINY.budgets, 3: protocol.Budget(3, 1)}
    tiny = replace(TINY, seeds=1, cheap_seeds=1, scenarios=("raw", "A", "C"), budgets=budgets)
    flip = replace(tiny, experiment="flip", scenarios=("C",), augment="hflip", budgets=TINY.budgets)
    assert "augment" not in tiny.as_json() and flip.as_json()["augment"] == "hflip"  # older files stay resumable
    kwargs = {"log": log.append, "fashion": fashion, "root": tmp_path / "c"}
    assert sweep.run_experiment(flip, flip_out, sweep_file=sweep_out, **kwargs)["points"] == []
    assert any(line.startswith("wait C") and "not both in sweep.json yet" in line for line in log)
    swept = {p["scenario"]: p for p in sweep.run_experiment(tiny, sweep_out, **kwargs)["points"]}
    [point] = sweep.run_experiment(flip, flip_out, sweep_file=sweep_out, **kwargs)["points"]
    assert point["augment"] == "hflip" and point["lr_from"] == "sweep.json: C seed 0"
    assert (
        point["lr"] == swept["C"]["lr"]
        and not point["lr_chosen_here"]
        and point["lr_search"].keys() == {f"{swept['C']['lr']:g}"}
    )
    inputs = sweep_inputs.Inputs(flip, fashion, tmp_path / "c", log.append)
    data = inputs.data("images", np.arange(20), np.arange(20, 40), seed=0)
    assert data.train.flips is not None and data.val.flips is data.test.flips is data.recalibrate.flips is None
    assert inputs.data("head", np.arange(20), np.arange(20, 40), seed=0).train.flips is None  # the warm-up's cache
    with pytest.raises(ValueError, match="cannot be augmented"):
        sweep.run_experiment(replace(flip, scenarios=("B",)), tmp_path / "b.json", sweep_file=sweep_out, **kwargs)
    with pytest.raises(ValueError, match="pass --sweep-file"):
        sweep.run_experiment(flip, tmp_path / "f2.json", **kwargs)


def test_the_results_file_writes_a_real_csv_and_refuses_a_changed_configuration(tmp_path):
    import csv

    from course_utils.experiments.results_file import ResultsConflict, ResultsFile

    path = tmp_path / "r.json"
    results = ResultsFile(path, {"a": 1}, lambda p: p["k"])
    results.start_run("course sweep --note 'x, y'", {"device": "cpu"})
    results.add({"k": 1, "note": "has, a comma", "nested": {"x": 1}}, {"k": 2, "extra": 3})
    rows = list(csv.DictReader(path.with_suffix(".csv").open()))
    assert rows[0]["note"] == "has, a comma" and "nested" not in rows[0] and rows[1]["extra"] == "3"
    with pytest.raises(ValueError, match="already holds"):
        results.add({"k": 1})
    assert len(ResultsFile(path, {"a": 1}, lambda p: p["k"]).points) == 2
    with pytest.raises(ResultsConflict, match="differs in: a"):
        ResultsFile(path, {"a": 2}, lambda p: p["k"])


@pytest.mark.slow  # a tiny sweep, trained for real
def test_status_says_which_planned_points_are_still_missing(tmp_path, capsys):
    fashion, out = small_fashion(200, 20), tmp_path / "sweep.json"
    record = sweep.run_experiment(TINY, out, log=lambda _: None, fashion=fashion, root=tmp_path / "c")
    assert measurements.planned_points(record["meta"]["config"]) == [
        (p["scenario"], p["n_per_class"], p["seed"]) for p in record["points"]
    ]
    assert measurements.missing_points(record) == []
    interrupted = {**record, "points": record["points"][:4]}  # as if stopped after four points
    out.write_text(json.dumps(interrupted))
    assert measurements.missing_points(interrupted) == [
        (p["scenario"], p["n_per_class"], p["seed"]) for p in record["points"][4:]
    ]
    assert sweep.main(["--status", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        "4 of 6 planned points finished" in printed and "[4/6]" in printed and "2 points to train, estimated" in printed
    )
    assert sweep.main(["--status", "--out", str(tmp_path / "none.json")]) == 0
    assert "no finished points yet" in capsys.readouterr().out


def test_config_has_the_large_data_end_and_a_fair_budget_for_everyone():
    config = sweep_config.config_for("scenarios", "full")
    assert config.sizes[-1] == 6000 and config.image_size >= 64 and config.test_per_class is None
    assert set(config.scenarios) == {"raw", "A", "B", "C", "scratch"}
    assert all(config.seeds_for(s, 1000) >= 3 for s in config.scenarios)
    assert all(config.seeds_for(s, 6000) >= 2 for s in config.scenarios)  # the spread at 6,000 is measured too
    assert config.channels_last and config.eval_batch_size == 64  # one numeric path for every contender
    for grid in config.lr_grids.values():
        assert len(grid) >= 3  # a starting grid with a middle; edges extend (select_and_train)
    for n in (1000, 6000):
        assert config.budgets[n].probe_epochs >= 4  # 2-epoch rungs favour the higher rate
    depth = sweep_config.config_for("freeze-depth", "full")
    assert depth.scenarios[0] == "head" and depth.scenarios[-1] == "stem" and len(depth.sizes) >= 2
    assert all(depth.seeds_for(s, 1000) >= 3 for s in depth.scenarios)
    assert sweep_config.shareable(depth.as_json()) == sweep_config.shareable(
        config.as_json()
    )  # head/block5/stem = A/B/C
    with pytest.raises(ValueError, match="no configuration"):
        sweep_config.config_for("nope", "full")


def test_the_plan_measures_every_seed_of_the_scenarios_before_the_random_start_and_after_the_rates_it_reuses():
    plan = measurements.planned_points(sweep_config.config_for("scenarios", "full").as_json())
    assert len(plan) == len(set(plan))
    at = {key: i for i, key in enumerate(plan)}
    for scenario, n, seed in plan:
        if seed:  # a later seed reuses seed 0's rate, and B and C start from A's head at the same seed
            assert at[(scenario, n, 0)] < at[(scenario, n, seed)]
        if scenario in ("B", "C"):
            assert at[("A", n, seed)] < at[(scenario, n, seed)]
        if scenario == "scratch":  # the costliest point, on which no scenario choice rests: after A, B, C there
            assert max(at[key] for key in plan if key[1] == n and key[0] != "scratch") < at[(scenario, n, seed)]
    assert [key[1] for key in plan] == sorted(key[1] for key in plan)  # size by size


def test_status_reads_every_committed_results_file(capsys):
    for experiment, path in (
        ("large-data", measurements.COMMITTED_SWEEP),
        ("similarity", measurements.COMMITTED_SIMILARITY),
    ):
        args = ["--experiment", experiment, "--profile", "full", "--status"]
        out = ["--out-dir", str(path.parent)] if experiment == "large-data" else ["--out", str(path)]
        assert sweep.main(args + out) == 0, experiment
        assert "planned p" in capsys.readouterr().out  # "planned points finished", "planned probe results"


def test_a_non_sweep_file_is_refused_clearly(tmp_path):
    out = tmp_path / "sweep.json"
    out.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        sweep.run_experiment(TINY, out, fashion=small_fashion(50, 10), root=tmp_path / "c")


def test_the_numeric_path_section_measures_both_layouts_and_their_difference():
    from course_utils.experiments.numeric_path import numeric_path

    out = numeric_path(size=32, batch_size=4, steps=1, rounds=1, eval_n=16, boundaries=("block7", "stem"))
    assert set(out["train_step_by_first_trainable_stage"]) == {"block7", "stem"}
    for row in out["train_step_by_first_trainable_stage"].values():
        assert row["ms_per_image_nchw"] > 0 and row["ms_per_image_channels_last"] > 0 and row["speedup"] > 0
    assert set(out["evaluate_ms_per_image"]) == {"nchw_256", "nchw_64", "channels_last_64"}
    assert 0 <= out["logits_max_abs_difference"] < 1e-3  # the same function, laid out differently


def _tiny_conv_net(seed: int):
    """build(lr) for a small net with BatchNorm and dropout (dropout draws from torch's global generator)."""

    def build(lr: float):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1),
            torch.nn.BatchNorm2d(4),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Dropout(0.3),
            torch.nn.Linear(16, 3),
        )
        return model, torch.optim.Adam(model.parameters(), lr=lr)

    return build


def _tiny_images() -> protocol.Data:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (96, 1, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 3, (96,), generator=g)

    def batches(rows, shuffle=False):
        return protocol.ArrayBatches(
            x, y, rows, 16, shuffle=shuffle, seed=0, convert=lambda b: b.float() / 255, flip=shuffle
        )

    return protocol.Data(
        batches(np.arange(64), True), batches(np.arange(64, 80)), batches(np.arange(80, 96)), batches(np.arange(64))
    )


@pytest.mark.parametrize("every_s", [0.0, 1e9])  # saved after every epoch, or only as each candidate's call ends
def test_a_point_stopped_part_way_resumes_from_its_checkpoints_with_the_same_numbers(tmp_path, monkeypatch, every_s):
    budget, real_fit = protocol.Budget(6, 2, probe_epochs=2), protocol.fit

    def run(losses: dict, stop_after: int | None = None, folder=None):
        """select_and_train, recording every epoch's training loss per (learning rate, epoch); stopped if asked."""

        def fit(model, loader, optimizer, *args, **kwargs):
            if stop_after is not None and len(losses) >= stop_after:
                raise KeyboardInterrupt  # the machine is taken away mid-point
            history = real_fit(model, loader, optimizer, *args, **kwargs)
            losses[(optimizer.param_groups[0]["lr"], len(history.train_loss))] = history.train_loss[-1]
            return history

        monkeypatch.setattr(protocol, "fit", fit)
        return protocol.select_and_train(
            _tiny_conv_net(0),
            (1e-3, 1e-2, 1e-1),
            _tiny_images(),
            budget,
            recalibrate=True,
            checkpoints=folder,
            checkpoint_every_s=every_s,
        )

    whole_losses = {}
    whole = run(whole_losses)
    assert len(whole_losses) >= 8 and len(whole.lr_search) >= 3  # a search, then the winner's continuation
    for stop_after in (1, 3, len(whole_losses) - 1):
        folder, losses = tmp_path / f"every{every_s}_stop{stop_after}", {}
        with pytest.raises(KeyboardInterrupt):
            run(losses, stop_after, folder)
        resumed = run(losses, None, folder)
        # every epoch trained, before the stop or after it (again, if it was not saved), as in the run that never
        # stopped: same shuffles, flips and dropout masks
        assert losses == whole_losses, stop_after
        assert (resumed.lr, resumed.lr_search, resumed.lr_grid) == (whole.lr, whole.lr_search, whole.lr_grid)
        assert (resumed.test_acc, resumed.val_acc, resumed.best_epoch, resumed.epochs_run) == (
            whole.test_acc,
            whole.val_acc,
            whole.best_epoch,
            whole.epochs_run,
        )
        for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
            assert torch.equal(a, b), (stop_after, name)
        if every_s == 0 or stop_after > budget.probe_epochs:  # something was saved before the stop
            assert resumed.resumed_cpu_seconds > 0  # the stopped run's CPU time is counted, not lost


@pytest.mark.slow  # a tiny sweep, trained for real, stopped mid-point and resumed
def test_the_runner_resumes_a_stopped_point_from_its_checkpoints_and_then_removes_them(tmp_path, monkeypatch):
    fashion, root = small_fashion(200, 20), tmp_path / "c"
    tiny = replace(TINY, seeds=1, cheap_seeds=1, scenarios=("A", "B"))
    whole = sweep.run_experiment(tiny, tmp_path / "whole.json", log=lambda _: None, fashion=fashion, root=root)
    real_fit, calls = protocol.fit, []

    def fit_then_stop(model, *args, **kwargs):
        if isinstance(model, torch.nn.Sequential):  # B's stages (A and the warm-up train a Linear head)
            if calls:
                raise KeyboardInterrupt  # B's second epoch: the machine goes away
            calls.append(model)
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(protocol, "fit", fit_then_stop)
    monkeypatch.setattr(sweep, "CHECKPOINT_EVERY_S", 0.0)  # save after every epoch (the real runs: every 2 minutes)
    out = tmp_path / "stopped.json"
    with pytest.raises(KeyboardInterrupt):
        sweep.run_experiment(tiny, out, log=lambda _: None, fashion=fashion, root=root)
    [folder] = (root / "checkpoints").glob("scenarios-*-cpu/B_2_0")
    assert list(folder.glob("lr_*.pt"))  # B's first epoch is on disk
    stopped = json.loads(out.read_text())
    [line] = sweep.part_trained(stopped, root)  # what `course sweep --status` adds: the point and what it holds
    assert line.startswith("part-trained B n=2 seed=0 on cpu: learning rates ") and "(1 epoch)" in line
    assert str(folder) in line and sweep.part_trained(whole, tmp_path / "elsewhere") == []
    [(checkpoint, state)] = sweep.read_saved(folder).items()
    assert state["cpu"] > 0  # the stopped run's CPU time is on disk (a tiny epoch: often under 0.05 s) ...
    torch.save({**state, "cpu": 12.34}, checkpoint)  # ... made large enough to show in the file's 0.1 s
    monkeypatch.setattr(protocol, "fit", real_fit)
    resumed = {
        p["scenario"]: p
        for p in sweep.run_experiment(tiny, out, log=lambda _: None, fashion=fashion, root=root)["points"]
    }
    expected = {p["scenario"]: p for p in whole["points"]}
    assert resumed["B"]["test_acc"] == expected["B"]["test_acc"] and resumed["B"]["lr"] == expected["B"]["lr"]
    assert resumed["B"]["resumed_cpu_seconds"] == 12.3 and expected["B"]["resumed_cpu_seconds"] == 0  # counted
    assert resumed["B"]["point_cpu_seconds"] >= 12.3  # in the point's CPU time too, not lost
    assert not folder.exists()  # the point is in the results file: its checkpoints are gone
    assert sweep.part_trained(stopped, root) == []


def test_training_one_epoch_per_call_is_the_same_as_one_fit_call():
    """select_and_train calls fit once per epoch (to save as it goes): the numbers of one multi-epoch call."""
    data = _tiny_images()
    result = protocol.select_and_train(_tiny_conv_net(1), (1e-2,), data, protocol.Budget(8, 2), recalibrate=True)
    model, optimizer = _tiny_conv_net(1)(1e-2)
    again = _tiny_images()  # the same shuffles and flips from the start
    history = fit(
        model,
        again.train,
        optimizer,
        8,
        "cpu",
        frozen_bn_eval=True,
        val_loader=again.val,
        patience=2,
        recalibrate_with=again.recalibrate,
        restore_best=True,
        progress=False,
    )
    assert (result.epochs_run, result.best_epoch, result.stopped_early) == (
        len(history.val_acc),
        history.best_epoch,
        history.stopped_early,
    )
    for a, b in zip(result.model.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
