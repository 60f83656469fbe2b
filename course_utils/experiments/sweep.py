"""Which scenario wins at which dataset size, and how deep to freeze: the measurements behind lessons 04 and 07.

    course sweep                                   # the scenario sweep of $COURSE_PROFILE (quick or full)
    course sweep --experiment freeze-depth         # accuracy against the number of frozen stages
    course sweep --profile full --threads 1 --out course_utils/experiments/results/sweep_full.json
    course sweep --status --out course_utils/experiments/results/sweep_full.json   # how far it has come
    course sweep --experiment large-data --profile full --threads 1 --out-dir DIR   # both, size by size

Two experiments on Fashion-MNIST with mobilenet_v2 (ImageNet weights IMAGENET1K_V1), one protocol
(course_utils.experiments.protocol: validation-chosen learning rates, early stopping, recalibrated BatchNorm,
the test set touched once):

    scenarios      raw pixels, A, B (from block5), C and scratch at 10 ... 6,000 images per class
    freeze-depth   the first trainable stage moved from the head (A) to the stem (C) at a few sizes
    similarity     ImageNet features on photos vs Fashion-MNIST, stage by stage (see experiments/similarity.py)
    flip           one extra C point at all data with horizontal-flip augmentation, the sweep's learning rate

Resumable: every finished point is written to the results file at once (atomically, with a CSV beside it), and a
point already there is skipped: stop the command any time and run it again. A point stopped part-way (C at 6,000
per class takes longer than a working stretch) resumes from the checkpoints its training saved as it went, with the
numbers of a run that never stopped (experiments/checkpoints.py); they are deleted once the point is in the file.
The configuration (numeric path
included) is stored in the file; resuming with a different one is refused (use another --out), so one file never
mixes two protocols. ``--sizes`` only chooses which of the configuration's sizes run now.

The freeze-depth experiment's ``head``, ``block5`` and ``stem`` are the sweep's A, B and C at the same size and seed
(same protocol, same numbers): they are copied from the sweep's file, never trained twice. ``large-data`` runs both
experiments size by size (the sweep's points at a size first, then the freeze depths there), then the flip point,
into ``--out-dir``.

Every point records the device it ran on (FP32; TF32 off on CUDA); one size of one file never mixes devices.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import torch

from ..backbones import load_backbone
from ..device import machine_record, pick_device, seed_everything
from ..measurements import FIRST_TRAINABLE, SHARED_DEPTHS, load_results, planned_points
from ..paths import cache_dir
from ..profiles import course_profile
from ..tools.cli import as_typed, doc_parser
from .checkpoints import read_saved
from .config import (
    EXPERIMENTS,
    NUM_CLASSES,
    SweepConfig,
    config_for,
    enable_fp32,
    point_key,
    shareable,
)
from .inputs import Fashion, Inputs, load_fashion, split_indices
from .protocol import Data, finetune_builder, linear_builder, scratch_builder, select_and_train
from .report import status_text
from .results_file import ResultsConflict, ResultsFile

CHECKPOINT_EVERY_S = 120.0  # a point's training is saved at most this often between epochs (and as each call ends)


def _make_model(pretrained: bool):
    return lambda: load_backbone("mobilenet_v2", pretrained=pretrained, fetch=False)


def _train_contender(
    scenario: str,
    first_trainable: str,
    train_idx,
    val_idx,
    seed: int,
    config: SweepConfig,
    inputs: Inputs,
    budget,
    fixed_lr: float | None,
    warm_lr: float | None,
    checkpoints: Path | None = None,
):
    """The protocol's run of one contender: (its RunResult, the seconds its warm-up head took). Its training (not
    the warm-up head's, which takes seconds) is saved as it goes into ``checkpoints``, and resumed from there."""
    warm_seconds = 0.0

    def train(build, grid: str, data: Data, recalibrate: bool, lr: float | None, saved: Path | None = checkpoints):
        return select_and_train(
            build,
            config.lr_grids[grid],
            data,
            budget,
            recalibrate=recalibrate,
            fixed_lr=lr,
            device=inputs.device,
            channels_last=config.channels_last,
            checkpoints=saved,
            checkpoint_every_s=CHECKPOINT_EVERY_S,
        )

    if scenario == "raw":
        data = inputs.data("raw", train_idx, val_idx, seed)
        result = train(linear_builder(28 * 28, NUM_CLASSES, seed), "linear", data, False, fixed_lr)
    elif scenario == "scratch":
        data = inputs.data("images", train_idx, val_idx, seed)
        result = train(scratch_builder(_make_model(False), NUM_CLASSES, seed), "scratch", data, True, fixed_lr)
    elif first_trainable == "head":
        data = inputs.data("head", train_idx, val_idx, seed)
        result = train(linear_builder(1280, NUM_CLASSES, seed), "linear", data, False, fixed_lr)
    else:
        start = time.perf_counter()
        head_data = inputs.data("head", train_idx, val_idx, seed)
        warm = train(linear_builder(1280, NUM_CLASSES, seed), "linear", head_data, False, warm_lr, None).model.cpu()
        warm_seconds = time.perf_counter() - start
        data = inputs.data(first_trainable, train_idx, val_idx, seed)
        build = finetune_builder(_make_model(True), first_trainable, warm, NUM_CLASSES, seed)
        result = train(build, "finetune", data, True, fixed_lr)
    return result, warm_seconds


def run_point(
    scenario: str,
    n_per_class: int,
    seed: int,
    config: SweepConfig,
    inputs: Inputs,
    fixed_lr: float | None = None,
    warm_lr: float | None = None,
) -> dict:
    """Train one contender at one size and seed with the shared protocol; return the measured point.

    ``scenario`` is raw, A, B, C or scratch, or (freeze-depth) the first trainable stage. ``fixed_lr`` skips the
    learning-rate search (the seed-0 choice is reused for later seeds); ``warm_lr`` is A's learning rate, used to
    train the warm-up head of B, C and the freeze depths.
    """
    seed_everything(seed)
    budget = config.budgets[n_per_class]
    train_idx, val_idx = split_indices(inputs.fashion.train_y, config, n_per_class, seed)
    first_trainable = FIRST_TRAINABLE.get(scenario, scenario)
    cache_before = inputs.cache_seconds

    result, warm_seconds = _train_contender(
        scenario,
        first_trainable,
        train_idx,
        val_idx,
        seed,
        config,
        inputs,
        budget,
        fixed_lr,
        warm_lr,
        checkpoint_dir(config, inputs, scenario, n_per_class, seed),
    )
    return {
        "scenario": scenario,
        "first_trainable": first_trainable if scenario not in ("raw", "scratch") else None,
        "n_per_class": n_per_class,
        "train_per_class": len(train_idx) // NUM_CLASSES,
        "seed": seed,
        "lr": result.lr,
        "lr_search": result.lr_search,
        "lr_grid": result.lr_grid,
        "lr_at_edge": result.lr_at_edge,
        "lr_chosen_here": fixed_lr is None,
        "val_acc": round(result.val_acc, 4),
        "test_acc": round(result.test_acc, 4),
        "n_test": len(inputs.fashion.test_idx),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "max_epochs": budget.max_epochs,
        "stopped_early": result.stopped_early,
        "train_seconds": round(result.train_seconds, 1),
        "train_cpu_seconds": round(result.train_cpu_seconds, 1),
        "search_seconds": round(result.search_seconds, 1),
        "warmup_seconds": round(warm_seconds, 1),
        "cache_seconds": round(inputs.cache_seconds - cache_before, 1),
        "trainable_params": result.trainable_params,
        "device": str(inputs.device),
        "torch_threads": torch.get_num_threads(),
        "resumed_cpu_seconds": round(result.resumed_cpu_seconds, 1),  # spent by a stopped run, read back
    }


def _checkpoints_of(config: dict, root: Path, device_type: str) -> Path:
    """The folder of one configuration's checkpoints on one kind of device (a folder per point inside)."""
    fingerprint = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    return root / "checkpoints" / f"{config['experiment']}-{fingerprint}-{device_type}"


def checkpoint_dir(config: SweepConfig, inputs: Inputs, scenario: str, n: int, seed: int) -> Path:
    """Where one point's training is saved as it goes: under the experiment's cache, per configuration and device."""
    return _checkpoints_of(config.as_json(), inputs.root, inputs.device.type) / f"{scenario}_{n}_{seed}"


def _epochs(k: int) -> str:
    return f"{k} epoch{'s' * (k != 1)}"


def part_trained(record: dict, root: Path) -> list[str]:
    """One line per point of ``record``'s configuration that a stopped run left part-trained in ``root``'s
    checkpoints (what it saved, when, and the CPU time in it): the next run resumes them. Similarity runs save none."""
    config, lines = record["meta"].get("config"), []
    if not config or "experiment" not in config:
        return lines
    pattern = _checkpoints_of(config, root, "*")  # on any device
    for folder in sorted(pattern.parent.glob(pattern.name)):
        for point in sorted(p for p in folder.iterdir() if p.is_dir()):
            saved = read_saved(point)
            if not saved:
                continue
            scenario, n, seed = point.name.rsplit("_", 2)
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(max(f.stat().st_mtime for f in saved)))
            rates = ", ".join(
                f"{f.stem.removeprefix('lr_')} ({_epochs(len(s['history'].train_loss))})" for f, s in saved.items()
            )
            cpu = sum(s["cpu"] for s in saved.values()) / 3600
            device = folder.name.rsplit("-", 1)[1]
            lines.append(
                f"part-trained {scenario} n={n} seed={seed} on {device}: learning rates {rates}, {cpu:.1f} CPU-h "
                f"saved (last {when}) in {point}; the same command resumes it"
            )
    return lines


def _other_protocol(sweep: dict, config: SweepConfig, name: str, ignore: tuple[str, ...] = ()) -> str | None:
    """Why the sweep's points cannot stand in for this configuration's (measured under another protocol, apart from
    the ``ignore``d settings), or None. Only the budgets of this configuration's sizes count: the sweep's budgets at
    sizes it alone plans decide none of the points taken from it."""
    theirs, ours = (
        {k: v for k, v in shareable(c).items() if k not in ignore}
        for c in (sweep["meta"].get("config", {}), config.as_json())
    )
    if "budgets" in theirs and "budgets" in ours:
        theirs["budgets"] = {n: b for n, b in theirs["budgets"].items() if n in ours["budgets"]}
    if sweep["points"] and theirs != ours:
        return f"{name} was measured under another protocol; pass --sweep-file with this one's sweep"
    return None


def _shared_point(scenario: str, n: int, seed: int, config: SweepConfig, sweep: dict, name: str) -> dict | str:
    """The sweep's own measurement of a freeze depth it shares (head = A, block5 = B, stem = C), renamed; or why
    there is none yet (not measured yet, or measured under another protocol). ``sweep`` is its record."""
    other = _other_protocol(sweep, config, name)
    if other:
        return other
    for point in sweep["points"]:
        if point_key(point) == (SHARED_DEPTHS[scenario], n, seed):
            return {**point, "scenario": scenario, "from_sweep": name}
    return f"the sweep's {SHARED_DEPTHS[scenario]} is not measured yet in {name}"


def _copy_shared(results: ResultsFile, key: tuple, config: SweepConfig, sweep: dict, name: str, log) -> None:
    """Add the sweep's point that is this freeze depth (or log that the sweep has not measured it yet)."""
    scenario, n, seed = key
    shared = _shared_point(scenario, n, seed, config, sweep, name)
    if isinstance(shared, str):
        log(f"wait {scenario:<9} n={n:<5} seed={seed}: {shared}")
        return
    results.add(shared)
    log(f"shared {scenario:<9} n={n:<5} seed={seed} test={shared['test_acc']:.3f} (from {shared['from_sweep']})")


def _borrowed_rates(scenario: str, n: int, seed: int, config: SweepConfig, sweep: dict, name: str) -> tuple | str:
    """The flip experiment's learning rates, from the sweep: its ``scenario`` at seed 0 (the rate chosen there) and
    its A at ``seed`` (the warm-up head's rate); or why not yet (not measured, or another protocol)."""
    other = _other_protocol(sweep, config, name, ignore=("augment",))
    if other:
        return other
    points = {point_key(p): p for p in sweep["points"]}
    first, warm = points.get((scenario, n, 0)), points.get(("A", n, seed))
    if not first or not warm:
        return f"the sweep's {scenario} seed 0 and A seed {seed} at {n}/class are not both in {name} yet"
    return first, warm


def _refuse_mixed_devices(results: ResultsFile, n: int, device: torch.device) -> None:
    """ResultsConflict when ``results`` holds points of size ``n`` measured on another device."""
    devices = {p.get("device", "cpu") for p in results.points if int(p["n_per_class"]) == n}
    if devices - {str(device)}:
        raise ResultsConflict(
            f"{results.path} holds {n}/class points measured on {', '.join(sorted(devices))}; one size never mixes "
            f"devices: resume with --device {sorted(devices)[0]} or pass another --out"
        )


def run_experiment(
    config: SweepConfig,
    out: str | Path,
    command: str = "",
    note: str = "",
    log=print,
    fashion: Fashion | None = None,
    root: Path | None = None,
    sizes: tuple[int, ...] | None = None,
    device: torch.device | str | None = None,
    sweep_file: Path | None = None,
) -> dict:
    """Run every point of ``config`` (at ``sizes``: default all) not yet in ``out``, saving each; return the record.

    ``fashion`` (default: all of Fashion-MNIST) and ``root`` (default: data/cache/experiments) let tests run on
    a small slice in a scratch folder. ``device`` defaults to the best available. For the freeze-depth experiment,
    ``sweep_file`` is the sweep's results, whose A, B and C points are the shared depths (copied, not retrained);
    for the flip experiment, the sweep whose seed-0 learning rates it reuses (required).
    """
    cached = [s for s in config.scenarios if s not in ("C", "scratch")]
    if config.augment and cached:
        raise ValueError(
            f"{', '.join(cached)} train from cached activations, which cannot be augmented: only C, scratch"
        )
    device = torch.device(device) if device is not None else pick_device()
    enable_fp32(device)
    results = ResultsFile(out, config.as_json(), point_key)
    results.start_run(command, machine_record(note, device))
    done = results.done
    sharing = config.experiment == "freeze-depth" and sweep_file is not None
    borrowing = config.experiment == "flip"
    if borrowing and sweep_file is None:
        raise ResultsConflict("the flip experiment reuses the sweep's learning rates: pass --sweep-file")
    sweep = load_results(sweep_file) if sharing or borrowing else None  # read once: the sweep does not run meanwhile
    inputs = Inputs(config, fashion or load_fashion(config), root or cache_dir() / "experiments", log, device)
    for scenario, n, seed in planned_points(config.as_json()):
        if sizes is not None and n not in sizes:
            continue
        if (scenario, n, seed) in done:
            log(f"skip {scenario:<9} n={n:<5} seed={seed} (already in {results.path.name})")
            continue
        _refuse_mixed_devices(results, n, device)
        if sweep is not None and scenario in SHARED_DEPTHS:
            _copy_shared(results, (scenario, n, seed), config, sweep, sweep_file.name, log)
            continue
        if borrowing:
            rates = _borrowed_rates(scenario, n, seed, config, sweep, sweep_file.name)
            if isinstance(rates, str):
                log(f"wait {scenario:<9} n={n:<5} seed={seed}: {rates}")
                continue
            first, warm = rates
        else:
            first = done.get((scenario, n, 0))
            warm = done.get(("A", n, seed)) or done.get(("head", n, seed))
        started, started_cpu = time.perf_counter(), time.process_time()
        point = run_point(
            scenario,
            n,
            seed,
            config,
            inputs,
            fixed_lr=first["lr"] if (seed or borrowing) and first else None,
            warm_lr=warm["lr"] if warm else None,
        )
        if borrowing:
            point |= {"augment": config.augment, "lr_from": f"{sweep_file.name}: {scenario} seed 0"}
        point["point_seconds"] = round(time.perf_counter() - started, 1)
        spent = time.process_time() - started_cpu + point["resumed_cpu_seconds"]  # a stopped run's share included
        point["point_cpu_seconds"] = round(spent, 1)  # search, warm-up, caches included
        results.add(point)
        shutil.rmtree(checkpoint_dir(config, inputs, scenario, n, seed), ignore_errors=True)  # in the file now
        log(
            f"done {scenario:<9} n={n:<5} seed={seed} lr={point['lr']:g} val={point['val_acc']:.3f} "
            f"test={point['test_acc']:.3f} epochs={point['epochs_run']} ({point['point_seconds']:.0f} s)"
        )
    return results.record


def run_large_data(profile: str, out_dir: Path, command: str = "", note: str = "", log=print, device=None) -> None:
    """The sweep and the freeze-depth experiment size by size (the sweep first at each size, whose A, B and C the
    freeze depths share), into ``out_dir``/sweep_<profile>.json and freeze_depth_<profile>.json; then the flip
    experiment's extra C point (sweep_flip_<profile>.json), which reuses the sweep's learning rates."""
    sweep_config, depth_config = config_for("scenarios", profile), config_for("freeze-depth", profile)
    sweep_out, depth_out = out_dir / results_name("scenarios", profile), out_dir / results_name("freeze-depth", profile)
    for n in sorted(set(sweep_config.sizes) | set(depth_config.sizes)):
        if n in sweep_config.sizes:
            log(f"== sweep, {n}/class -> {sweep_out}")
            run_experiment(sweep_config, sweep_out, command, note, log, sizes=(n,), device=device)
        if n in depth_config.sizes:
            log(f"== freeze depth, {n}/class -> {depth_out}")
            run_experiment(depth_config, depth_out, command, note, log, sizes=(n,), device=device, sweep_file=sweep_out)
    flip_out = out_dir / results_name("flip", profile)
    log(f"== C with flip augmentation, an extra point after the plan -> {flip_out}")
    run_experiment(config_for("flip", profile), flip_out, command, note, log, device=device, sweep_file=sweep_out)


FILE_STEMS = {"scenarios": "sweep", "freeze-depth": "freeze_depth", "similarity": "similarity", "flip": "sweep_flip"}
LARGE_DATA = ("scenarios", "freeze-depth", "flip")  # the files `--experiment large-data` writes


def results_name(experiment: str, profile: str) -> str:
    """The results file's name of an experiment in a profile: sweep_full.json, freeze_depth_full.json, ..."""
    return f"{FILE_STEMS[experiment]}_{profile}.json"


def _default_out(experiment: str, profile: str) -> Path:
    return cache_dir() / "experiments" / results_name(experiment, profile)


def print_status(experiment: str, out: Path) -> int:
    """`course sweep --status`: how far a (possibly interrupted) run has come, without running anything."""
    try:
        record = load_results(out)
    except ValueError as exc:
        print(f"course sweep: {exc}", file=sys.stderr)
        return 2
    if not record["points"]:
        print(f"{out}: no finished points yet")
        return 0
    print(f"{out}:")
    print(status_text(record, similarity=experiment == "similarity"))
    for line in part_trained(record, cache_dir() / "experiments"):
        print(line)
    return 0


def _parser() -> argparse.ArgumentParser:
    """The arguments of `course sweep`."""
    parser = doc_parser("course sweep", __doc__)
    parser.add_argument("--experiment", choices=EXPERIMENTS, default="scenarios")
    parser.add_argument("--profile", choices=["quick", "full"], default=None, help="default: $COURSE_PROFILE")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results JSON (default data/cache/experiments/sweep_<profile>.json, freeze_depth_..., similarity_...)",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="large-data: folder of both results files (default data/cache/experiments)",
    )
    parser.add_argument(
        "--sweep-file", type=Path, default=None, help="freeze-depth: the sweep's results, whose A, B, C it shares"
    )
    parser.add_argument("--note", default="", help="free text about the machine, stored with the results")
    parser.add_argument("--sizes", default=None, help="comma-separated images per class to run now (default: all)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (1 is much faster on a machine shared with other busy processes)",
    )
    parser.add_argument(
        "--status",
        action="store_true",
        help="print which points of --out are finished and what they measured; run nothing",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """`course sweep`: run (or resume) an experiment."""
    parser = _parser()
    args = parser.parse_args(argv)
    profile = args.profile or course_profile()
    out_dir = args.out_dir or cache_dir() / "experiments"
    if args.status:
        if args.experiment == "large-data":
            return max(print_status(e, out_dir / results_name(e, profile)) for e in LARGE_DATA)
        return print_status(args.experiment, args.out or _default_out(args.experiment, profile))
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or (out_dir if args.experiment == "large-data" else _default_out(args.experiment, profile))
    command = as_typed("sweep", argv)
    device = pick_device(args.device)

    def log(message: str) -> None:
        print(message, flush=True)

    try:
        if args.experiment == "similarity":
            from .similarity import PROFILES as SIMILARITY
            from .similarity import run_similarity

            print(f"similarity ({profile}) -> {out}", flush=True)
            run_similarity(SIMILARITY[profile], out, command=command, note=args.note, log=log)
        elif args.experiment == "large-data":
            print(f"sweep and freeze depth ({profile}), size by size, on {device} -> {out_dir}", flush=True)
            run_large_data(profile, out_dir, command, args.note, log, device)
        else:
            config = config_for(args.experiment, profile)
            sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else None
            unknown = [s for s in sizes or () if s not in config.sizes]
            if unknown:
                parser.error(f"size(s) {unknown} are not in this profile's plan: {list(config.sizes)}")
            plan = f"sizes {sizes or config.sizes}, {config.image_size} px, {device}"
            print(f"{args.experiment} ({profile}): {plan} -> {out}")
            sweep_file = args.sweep_file or (out.parent / results_name("scenarios", profile))
            run_experiment(config, out, command, args.note, log, sizes=sizes, device=device, sweep_file=sweep_file)
    except ResultsConflict as exc:
        print(f"course sweep: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
