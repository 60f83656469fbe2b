"""Which scenario wins at which dataset size, and how deep to freeze: the measurements behind lessons 04 and 07.

    course sweep                                   # the scenario sweep of $COURSE_PROFILE (quick or full)
    course sweep --experiment freeze-depth         # accuracy against the number of frozen stages
    course sweep --profile full --threads 1 --out course_utils/experiments/results/sweep_full.json
    course sweep --status --out course_utils/experiments/results/sweep_full.json   # how far it has come

Two experiments on Fashion-MNIST with mobilenet_v2 (ImageNet weights IMAGENET1K_V1), one protocol
(course_utils.experiments.protocol: validation-chosen learning rates, early stopping, recalibrated BatchNorm,
the test set touched once):

    scenarios      raw pixels, A, B (from block5), C and scratch at 10 ... 6,000 images per class
    freeze-depth   the first trainable stage moved from the head (A) to the stem (C) at a few sizes
    similarity     ImageNet features on photos vs Fashion-MNIST, stage by stage (see experiments/similarity.py)

Resumable: every finished point is written to the results file at once (atomically, with a CSV beside it), and a
point already there is skipped: stop the command any time and run it again. The configuration is stored in the
file; resuming with a different one is refused (use another --out), so one file never mixes two protocols.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..backbones import load_backbone
from ..cache import cache_boundary, cache_features
from ..device import machine_record, seed_everything
from ..fashion import FASHION_CLASSES, TensorImages, balanced_indices, load_fashion_mnist
from ..measurements import (
    FREEZE_DEPTHS,
    SCENARIOS,
    load_results,
    planned_points,
    progress_report,
    seeds_for,
    similarity_report,
)
from ..paths import atomic_write_text, cache_dir
from ..preprocess import to_backbone_input
from ..profiles import course_profile
from .protocol import (
    ArrayBatches,
    Budget,
    Data,
    finetune_builder,
    linear_builder,
    scratch_builder,
    select_and_train,
)

EXPERIMENTS = ("scenarios", "freeze-depth", "similarity")
FIRST_TRAINABLE = {"A": "head", "B": "block5", "C": "stem"}  # the freeze depth each scenario uses
NUM_CLASSES = 10
RECALIBRATION_IMAGES = 2048


@dataclass(frozen=True)
class SweepConfig:
    """Everything that decides an experiment's numbers; stored in the results file."""

    experiment: str
    image_size: int
    sizes: tuple[int, ...]  # training images per class; `all_size` or more means every training image
    budgets: dict[int, Budget]  # per size: max epochs, patience, successive-halving probe
    scenarios: tuple[str, ...]  # 'scenarios': raw, A, B, C, scratch; 'freeze-depth': first trainable stages
    seeds: int = 3  # seeds of the expensive contenders (B, C, scratch, freeze depths) up to `seeds_up_to`
    seeds_up_to: int = 1000
    cheap_seeds: int = 5  # seeds of raw and A at every size
    val_per_class: int = 100  # validation images per class, from the training set, disjoint from training
    test_per_class: int | None = None  # None: the whole 10,000-image test set
    all_size: int = 6000
    batch_size: int = 64
    lr_grids: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {
            "linear": (1e-3, 3e-3, 1e-2),  # raw pixels and A's head
            "finetune": (1e-4, 3e-4),  # B, C, freeze depths: body lr (the head gets 10x)
            "scratch": (1e-3, 3e-3),
        }
    )

    def seeds_for(self, scenario: str, n_per_class: int) -> int:
        """How many seeds a contender gets at a size: many where cheap, fewer where a run costs an hour."""
        return seeds_for(self.as_json(), scenario, n_per_class)

    def as_json(self) -> dict:
        """The configuration as plain JSON (sizes as string keys)."""
        record = asdict(self)
        record["budgets"] = {str(k): asdict(v) for k, v in self.budgets.items()}
        record["lr_grids"] = {k: list(v) for k, v in self.lr_grids.items()}
        record["sizes"], record["scenarios"] = list(self.sizes), list(self.scenarios)
        return record


FULL_BUDGETS = {
    10: Budget(60, 10),
    30: Budget(40, 8),
    100: Budget(30, 6),
    300: Budget(20, 4),
    1000: Budget(15, 3),
    6000: Budget(10, 3, probe_epochs=2),
}
PROFILES: dict[tuple[str, str], SweepConfig] = {
    ("scenarios", "full"): SweepConfig("scenarios", 64, (10, 30, 100, 300, 1000, 6000), FULL_BUDGETS, SCENARIOS),
    ("freeze-depth", "full"): SweepConfig(
        "freeze-depth", 64, (10, 100, 1000), FULL_BUDGETS, FREEZE_DEPTHS, seeds=3, seeds_up_to=100, cheap_seeds=3
    ),
    # quick: a smoke run that shows the machinery works in under a minute; its numbers carry no claim
    ("scenarios", "quick"): SweepConfig(
        "scenarios",
        32,
        (10, 30),
        {10: Budget(4, 2), 30: Budget(2, 1)},
        SCENARIOS,
        seeds=1,
        cheap_seeds=1,
        val_per_class=10,
        test_per_class=30,
        lr_grids={"linear": (3e-3,), "finetune": (3e-4,), "scratch": (1e-3,)},
    ),
    ("freeze-depth", "quick"): SweepConfig(
        "freeze-depth",
        32,
        (10,),
        {10: Budget(2, 1)},
        ("head", "block5", "stem"),
        seeds=1,
        cheap_seeds=1,
        val_per_class=10,
        test_per_class=30,
        lr_grids={"linear": (3e-3,), "finetune": (3e-4,), "scratch": (1e-3,)},
    ),
}


def config_for(experiment: str = "scenarios", profile: str | None = None) -> SweepConfig:
    """The configuration of an experiment in a profile (quick: a smoke run; full: the committed measurement)."""
    key = (experiment, profile or course_profile())
    if key not in PROFILES:
        raise ValueError(
            f"no configuration for experiment {experiment!r} in profile {key[1]!r}; "
            f"experiments: {', '.join(EXPERIMENTS)}; profiles: quick, full"
        )
    return PROFILES[key]


def point_key(point: dict) -> tuple:
    """What makes two points the same measurement (within one configuration)."""
    return point["scenario"], int(point["n_per_class"]), int(point["seed"])


def save_results(path: Path, record: dict) -> None:
    """The record as JSON and its points as CSV beside it (nested fields left out), each written atomically."""
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    points = record["points"]
    columns = [k for k, v in points[0].items() if not isinstance(v, (dict, list))] if points else []
    lines = [",".join(columns)] + [",".join(str(p.get(c, "")) for c in columns) for p in points]
    atomic_write_text(path.with_suffix(".csv"), "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------- data
@dataclass
class Fashion:
    """Fashion-MNIST in memory: uint8 images and labels of both splits."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    test_idx: np.ndarray


def load_fashion(config: SweepConfig) -> Fashion:
    """Both splits, and the test images every point is measured on (all 10,000 unless the profile says fewer)."""
    train_x, train_y = load_fashion_mnist(True)
    test_x, test_y = load_fashion_mnist(False)
    if config.test_per_class is None:
        test_idx = np.arange(len(test_y))
    else:
        test_idx = np.sort(balanced_indices(test_y, config.test_per_class, seed=12345).numpy())
    return Fashion(train_x, train_y, test_x, test_y, test_idx)


def split_indices(
    labels: torch.Tensor, config: SweepConfig, n_per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices into the training set: disjoint, balanced, seeded; 'all' keeps every other image."""
    val = balanced_indices(labels, config.val_per_class, seed + 1000)
    if n_per_class >= config.all_size:
        train = torch.from_numpy(np.setdiff1d(np.arange(len(labels)), val.numpy()))
        train = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))]
    else:
        train = balanced_indices(labels, n_per_class, seed, exclude=val)
    return train.numpy(), val.numpy()


class Inputs:
    """Where each contender reads its inputs: images, raw pixels, cached features or boundary activations."""

    def __init__(self, config: SweepConfig, fashion: Fashion, root: Path, log):
        self.config, self.fashion, self.root, self.log = config, fashion, root, log
        self._full_caches: dict[tuple[str, str], np.ndarray] = {}
        self.cache_seconds = 0.0

    def _images(self, split: str) -> TensorImages:
        f = self.fashion
        x, y = (f.train_x, f.train_y) if split == "train" else (f.test_x, f.test_y)
        return TensorImages(x, y, list(FASHION_CLASSES), size=self.config.image_size)

    def _cached(self, stage: str, split: str) -> np.ndarray:
        """Activations of a whole split just before ``stage`` (f(x) at 'head'), from the cache or computed once."""
        key = (stage, split)
        if key not in self._full_caches:
            start = time.perf_counter()
            model = load_backbone("mobilenet_v2", fetch=False)
            name = f"{self.config.experiment}_{stage}_{self.config.image_size}px_{split}"
            kwargs = {"root": self.root, "batch_size": 256, "progress": False, "verbose": False}
            if stage == "head":
                result = cache_features(model, self._images(split), name, **kwargs)
            else:
                result = cache_boundary(model, self._images(split), stage, name, **kwargs)
            self.cache_seconds += time.perf_counter() - start
            self.log(f"  cache {name}: {result.reason} ({' x '.join(map(str, result.features.shape))})")
            self._full_caches[key] = result.features
        return self._full_caches[key]

    def data(self, stage_or_kind: str, train_idx: np.ndarray, val_idx: np.ndarray, seed: int) -> Data:
        """Loaders for one contender: 'raw', 'images' (through the whole network) or a stage's boundary."""
        f, size, bs = self.fashion, self.config.image_size, self.config.batch_size
        recal_idx = train_idx[:RECALIBRATION_IMAGES]
        if stage_or_kind == "raw":
            pixels = f.train_x[torch.from_numpy(train_idx)].float().flatten(1) / 255
            mean, std = pixels.mean(0), pixels.std(0).clamp_min(1e-3)

            def convert(x):
                return (x.float().flatten(1) / 255 - mean) / std

            train_in, test_in = f.train_x, f.test_x
        elif stage_or_kind in ("images", "stem"):

            def convert(x):
                return to_backbone_input(x, size)

            train_in, test_in = f.train_x, f.test_x
        else:
            convert = None
            train_in, test_in = self._cached(stage_or_kind, "train"), self._cached(stage_or_kind, "test")
        return Data(
            train=ArrayBatches(train_in, f.train_y, train_idx, bs, shuffle=True, seed=seed, convert=convert),
            val=ArrayBatches(train_in, f.train_y, val_idx, 256, convert=convert),
            test=ArrayBatches(test_in, f.test_y, f.test_idx, 256, convert=convert),
            recalibrate=ArrayBatches(train_in, f.train_y, recal_idx, bs, convert=convert),
        )


# -------------------------------------------------------------------------------------------- points
def _make_model(pretrained: bool):
    return lambda: load_backbone("mobilenet_v2", pretrained=pretrained, fetch=False)


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
    warm_seconds = 0.0
    if scenario == "raw":
        data = inputs.data("raw", train_idx, val_idx, seed)
        result = select_and_train(
            linear_builder(28 * 28, NUM_CLASSES, seed),
            config.lr_grids["linear"],
            data,
            budget,
            recalibrate=False,
            fixed_lr=fixed_lr,
        )
    elif scenario == "scratch":
        data = inputs.data("images", train_idx, val_idx, seed)
        result = select_and_train(
            scratch_builder(_make_model(False), NUM_CLASSES, seed),
            config.lr_grids["scratch"],
            data,
            budget,
            recalibrate=True,
            fixed_lr=fixed_lr,
        )
    elif first_trainable == "head":
        data = inputs.data("head", train_idx, val_idx, seed)
        result = select_and_train(
            linear_builder(1280, NUM_CLASSES, seed),
            config.lr_grids["linear"],
            data,
            budget,
            recalibrate=False,
            fixed_lr=fixed_lr,
        )
    else:
        start = time.perf_counter()
        head_data = inputs.data("head", train_idx, val_idx, seed)
        warm = select_and_train(
            linear_builder(1280, NUM_CLASSES, seed),
            config.lr_grids["linear"],
            head_data,
            budget,
            recalibrate=False,
            fixed_lr=warm_lr,
        ).model
        warm_seconds = time.perf_counter() - start
        data = inputs.data(first_trainable, train_idx, val_idx, seed)
        build = finetune_builder(_make_model(True), first_trainable, warm, NUM_CLASSES, seed)
        result = select_and_train(build, config.lr_grids["finetune"], data, budget, recalibrate=True, fixed_lr=fixed_lr)
    return {
        "scenario": scenario,
        "first_trainable": first_trainable if scenario not in ("raw", "scratch") else None,
        "n_per_class": n_per_class,
        "train_per_class": len(train_idx) // NUM_CLASSES,
        "seed": seed,
        "lr": result.lr,
        "lr_search": result.lr_search,
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
    }


def run_experiment(
    config: SweepConfig,
    out: str | Path,
    command: str = "",
    note: str = "",
    log=print,
    fashion: Fashion | None = None,
    root: Path | None = None,
) -> dict:
    """Run every point of ``config`` not yet in ``out``, saving after each; return the record.

    ``fashion`` (default: all of Fashion-MNIST) and ``root`` (default: data/cache/experiments) let tests run on
    a small slice in a scratch folder.
    """
    out = Path(out)
    record = load_results(out)
    meta = record.setdefault("meta", {})
    if record["points"] and meta.get("config") != config.as_json():
        raise ValueError(
            f"{out} holds points of another configuration; resume with the same profile and options, "
            "or pass another --out"
        )
    meta["config"] = config.as_json()
    meta.setdefault("started", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    meta.setdefault("runs", []).append(
        {
            "command": command,
            "machine": machine_record(note),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )
    done = {point_key(p): p for p in record["points"]}
    inputs = Inputs(config, fashion or load_fashion(config), root or cache_dir() / "experiments", log)
    for scenario, n, seed in planned_points(config.as_json()):
        if (scenario, n, seed) in done:
            log(f"skip {scenario:<9} n={n:<5} seed={seed} (already in {out.name})")
            continue
        first = done.get((scenario, n, 0))
        warm = done.get(("A", n, seed)) or done.get(("head", n, seed))
        started = time.perf_counter()
        point = run_point(
            scenario,
            n,
            seed,
            config,
            inputs,
            fixed_lr=first["lr"] if seed and first else None,
            warm_lr=warm["lr"] if warm else None,
        )
        point["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        point["point_seconds"] = round(time.perf_counter() - started, 1)
        record["points"].append(point)
        done[point_key(point)] = point
        meta["finished"] = point["finished"]
        meta["runs"][-1]["finished"] = point["finished"]
        save_results(out, record)
        log(
            f"done {scenario:<9} n={n:<5} seed={seed} lr={point['lr']:g} val={point['val_acc']:.3f} "
            f"test={point['test_acc']:.3f} epochs={point['epochs_run']} ({point['point_seconds']:.0f} s)"
        )
    return record


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
    print(similarity_report(record) if experiment == "similarity" else progress_report(record))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`course sweep`: run (or resume) an experiment."""
    parser = argparse.ArgumentParser(
        prog="course sweep",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--experiment", choices=EXPERIMENTS, default="scenarios")
    parser.add_argument("--profile", choices=["quick", "full"], default=None, help="default: $COURSE_PROFILE")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results JSON (default data/cache/experiments/<experiment>_<profile>.json)",
    )
    parser.add_argument("--note", default="", help="free text about the machine, stored with the results")
    parser.add_argument("--sizes", default=None, help="comma-separated images per class (default: the profile's)")
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
    args = parser.parse_args(argv)
    if args.status:
        profile = args.profile or course_profile()
        out = args.out or cache_dir() / "experiments" / f"{args.experiment.replace('-', '_')}_{profile}.json"
        return print_status(args.experiment, out)
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = args.profile or course_profile()
    out = args.out or cache_dir() / "experiments" / f"{args.experiment.replace('-', '_')}_{profile}.json"
    command = "course sweep " + shlex.join(argv if argv is not None else sys.argv[1:])

    def log(message: str) -> None:
        print(message, flush=True)

    if args.experiment == "similarity":
        from .similarity import PROFILES as SIMILARITY
        from .similarity import run_similarity

        print(f"similarity ({profile}) -> {out}", flush=True)
        run, run_config = run_similarity, SIMILARITY[profile]
    else:
        config = config_for(args.experiment, profile)
        if args.sizes:
            sizes = tuple(int(s) for s in args.sizes.split(","))
            unknown = [s for s in sizes if s not in config.budgets]
            if unknown:
                parser.error(f"no budget for size(s) {unknown}; sizes of this profile: {sorted(config.budgets)}")
            config = replace(config, sizes=sizes)
        print(f"{args.experiment} ({profile}): sizes {config.sizes}, {config.image_size} px -> {out}", flush=True)
        run, run_config = run_experiment, config
    try:
        run(run_config, out, command=command, note=args.note, log=log)
    except ValueError as exc:
        print(f"course sweep: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} and {out.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
