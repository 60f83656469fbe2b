"""Which scenario wins at which dataset size? Accuracy and training time per (examples per class, scenario).

    python -m course_utils.experiments.sweep                    # the active profile ($COURSE_PROFILE, quick or full)
    python -m course_utils.experiments.sweep --profile full --out course_utils/results/sweep_full.json --note "..."

Scenarios, all on mobilenet_v2 and Fashion-MNIST upsampled to ``image_size`` pixels:

    A        ImageNet body frozen; features extracted once, a linear head trained on them
    B        ImageNet weights; stages from ``b_from`` on and the head trained, earlier stages frozen
    C        ImageNet weights as initialization; everything trained (body at a lower learning rate)
    scratch  the same architecture from random initialization; everything trained

Resumable: results are written atomically after every point, and a point already in the file (same
scenario, size, seed, image size and epochs) is skipped. Stop it any time and run the same command again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ..backbones import freeze_all, load_backbone, replace_head, unfreeze_from
from ..device import seed_everything
from ..fashion import fashion_mnist_splits
from ..features import extract_features
from ..measurements import SCENARIOS, accuracy_table, best_by_size, crossover, load_results  # noqa: F401
from ..paths import atomic_write_text, cache_dir
from ..preprocess import to_backbone_input
from ..profiles import course_profile
from ..training import evaluate, fit


@dataclass
class SweepConfig:
    """Everything that decides a sweep's numbers (stored beside the results)."""

    sizes: tuple[int, ...]
    epochs: dict[int, int]  # epochs of B, C and scratch at each size (fewer at larger sizes)
    image_size: int = 32
    n_test: int = 100  # test images per class (Fashion-MNIST test split, same for every point)
    head_steps: int = 300  # full-batch Adam steps of A's linear head on the extracted features
    batch_size: int = 64
    lr_head: float = 3e-3
    lr_body: float = 3e-4  # B and C: the pretrained body learns 10x slower than the new head
    lr_scratch: float = 3e-3
    b_from: str = "block5"  # B trains this stage and every later one
    seed: int = 0
    scenarios: tuple[str, ...] = SCENARIOS

    def epochs_for(self, n_per_class: int) -> int:
        """Epochs at ``n_per_class`` (the nearest listed size below it, else the smallest)."""
        listed = sorted(self.epochs)
        below = [s for s in listed if s <= n_per_class]
        return self.epochs[below[-1] if below else listed[0]]


PROFILES = {
    "quick": SweepConfig(sizes=(10, 30), epochs={10: 2, 30: 1}, n_test=20, head_steps=150),
    "full": SweepConfig(sizes=(10, 30, 100, 300, 1000), epochs={10: 30, 30: 20, 100: 10, 300: 6, 1000: 4}),
}


def config_for(profile: str | None = None) -> SweepConfig:
    """The sweep configuration of a profile (quick: two sizes, tiny budget; full: five sizes)."""
    name = profile or course_profile()
    if name not in PROFILES:
        raise ValueError(f"unknown sweep profile {name!r}; use one of {', '.join(PROFILES)}")
    return PROFILES[name]


def point_key(point: dict) -> tuple:
    """What makes two points the same measurement."""
    return (
        point["scenario"],
        int(point["n_per_class"]),
        int(point["seed"]),
        int(point["image_size"]),
        int(point["epochs"]),
    )


def machine_description(note: str = "") -> dict:
    """Where a sweep ran: OS, CPU count, torch threads, versions, GPU if any, and a free-text note."""
    import torchvision

    info = {
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "processor": platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    if note:
        info["note"] = note
    return info


def save_results(path: str | Path, record: dict) -> None:
    """Write the record atomically (a reader sees the old file or the new one, never half)."""
    atomic_write_text(Path(path), json.dumps(record, indent=1, sort_keys=False) + "\n")


def _tensors(dataset) -> TensorDataset:
    """All images of a TensorImages converted once (resize + normalize in one batch), not per item."""
    return TensorDataset(to_backbone_input(dataset.images, dataset.size), dataset.targets.clone())


def _loader(data: TensorDataset, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator if shuffle else None)


def train_linear_head(
    feats: torch.Tensor, labels: torch.Tensor, num_classes: int, steps: int, lr: float, seed: int = 0
) -> nn.Linear:
    """A Linear(feature_dim, num_classes) fitted by full-batch Adam on fixed features (Scenario A's head)."""
    torch.manual_seed(seed)
    head = nn.Linear(feats.shape[1], num_classes)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(head(feats), labels).backward()
        optimizer.step()
    return head


def build_model(
    scenario: str, config: SweepConfig, num_classes: int = 10
) -> tuple[nn.Module, torch.optim.Optimizer | None]:
    """The model and optimizer of B, C or scratch (for A: the frozen pretrained model and None)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; use one of {', '.join(SCENARIOS)}")
    model = load_backbone("mobilenet_v2", pretrained=scenario != "scratch", fetch=False)
    head = replace_head(model, num_classes)
    if scenario == "A":
        freeze_all(model)
        return model, None
    if scenario == "scratch":
        return model, torch.optim.Adam(model.parameters(), lr=config.lr_scratch)
    if scenario == "B":
        freeze_all(model)
        unfreeze_from(model, config.b_from)
    head_ids = {id(p) for p in head.parameters()}
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    optimizer = torch.optim.Adam(
        [
            {"params": body, "lr": config.lr_body},
            {"params": list(head.parameters()), "lr": config.lr_head},
        ]
    )
    return model, optimizer


def run_point(
    scenario: str, n_per_class: int, config: SweepConfig, test: TensorDataset, test_features: dict | None = None
) -> dict:
    """Train one scenario at one size; return the measured point (test accuracy, training seconds, ...)."""
    seed_everything(config.seed)
    splits = fashion_mnist_splits(n_per_class, 0, 1, size=config.image_size, seed=config.seed)
    train = _tensors(splits["train"])
    epochs = config.epochs_for(n_per_class)
    model, optimizer = build_model(scenario, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if scenario == "A":
        start = time.perf_counter()
        feats, _ = extract_features(model, train, batch_size=256, progress=False)
        head = train_linear_head(feats, train.tensors[1], 10, config.head_steps, config.lr_head, config.seed)
        seconds = time.perf_counter() - start
        if test_features is not None and "A" in test_features:
            test_feats = test_features["A"]
        else:
            test_feats, _ = extract_features(model, test, batch_size=256, progress=False)
            if test_features is not None:
                test_features["A"] = test_feats
        with torch.no_grad():
            test_acc = (head(test_feats).argmax(1) == test.tensors[1]).float().mean().item()
        trainable = sum(p.numel() for p in head.parameters())
    else:
        loader = _loader(train, config.batch_size, True, config.seed)
        history = fit(model, loader, optimizer, epochs, "cpu", frozen_bn_eval=True, progress=False)
        seconds = sum(history.seconds)
        _, test_acc = evaluate(model, _loader(test, 256, False, 0), "cpu")
    return {
        "scenario": scenario,
        "n_per_class": n_per_class,
        "test_acc": round(float(test_acc), 4),
        "train_seconds": round(seconds, 2),
        "epochs": epochs if scenario != "A" else 0,
        "head_steps": config.head_steps if scenario == "A" else 0,
        "image_size": config.image_size,
        "n_test_per_class": config.n_test,
        "trainable_params": trainable,
        "seed": config.seed,
    }


def _key_for(scenario: str, n: int, config: SweepConfig) -> tuple:
    return (scenario, n, config.seed, config.image_size, config.epochs_for(n) if scenario != "A" else 0)


def run_sweep(config: SweepConfig, out: str | Path, note: str = "", command: str = "", log=print) -> dict:
    """Run every (size, scenario) point not yet in ``out``; save after each one; return the record."""
    out = Path(out)
    record = load_results(out)
    meta = record.setdefault("meta", {})
    meta["config"] = {**asdict(config), "epochs": {str(k): v for k, v in config.epochs.items()}}
    # The first run's command and machine are kept; a resume on another machine is recorded beside them.
    meta.setdefault("command", command)
    meta.setdefault("machine", machine_description(note))
    meta.setdefault("started", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if record["points"] and machine_description(note) != meta["machine"]:
        meta.setdefault("resumed_on", []).append(machine_description(note))
    done = {point_key(p) for p in record["points"]}
    test = _tensors(fashion_mnist_splits(1, 0, config.n_test, size=config.image_size, seed=config.seed)["test"])
    test_features: dict = {}
    for n in config.sizes:
        for scenario in config.scenarios:
            if _key_for(scenario, n, config) in done:
                log(f"skip {scenario:<8} n={n:<5} (already in {out.name})")
                continue
            point = run_point(scenario, n, config, test, test_features)
            point["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            record["points"].append(point)
            record["meta"]["finished"] = point["finished"]
            save_results(out, record)
            log(f"done {scenario:<8} n={n:<5} test_acc={point['test_acc']:.3f} train_s={point['train_seconds']:.1f}")
    return record


def write_csv(record: dict, path: str | Path) -> None:
    """The points as a CSV beside the JSON (for spreadsheets)."""
    columns = [
        "scenario",
        "n_per_class",
        "test_acc",
        "train_seconds",
        "epochs",
        "head_steps",
        "image_size",
        "n_test_per_class",
        "trainable_params",
        "seed",
    ]
    lines = [",".join(columns)] + [",".join(str(p.get(c, "")) for c in columns) for p in record["points"]]
    atomic_write_text(Path(path), "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Command line: run (or resume) the sweep of a profile."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default=None, help="default: $COURSE_PROFILE")
    parser.add_argument("--out", default=None, help="results JSON (default: data/cache/sweep_<profile>.json)")
    parser.add_argument("--note", default="", help="free text about the machine, stored with the results")
    parser.add_argument("--sizes", default=None, help="comma-separated examples per class (default: the profile's)")
    parser.add_argument("--scenarios", default=None, help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (1 is much faster on a machine shared with other busy processes)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = args.profile or course_profile()
    config = config_for(profile)
    if args.sizes:
        sizes = tuple(int(s) for s in args.sizes.split(","))
        config = SweepConfig(**{**asdict(config), "sizes": sizes})
    if args.scenarios:
        wanted = tuple(s.strip() for s in args.scenarios.split(","))
        unknown = [s for s in wanted if s not in SCENARIOS]
        if unknown:
            parser.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
        config = SweepConfig(**{**asdict(config), "scenarios": wanted})
    out = Path(args.out) if args.out else cache_dir() / f"sweep_{profile}.json"
    command = "python -m course_utils.experiments.sweep " + shlex.join(argv if argv is not None else sys.argv[1:])
    if not args.profile:
        command = f"COURSE_PROFILE={profile} " + command
    print(f"sweep ({profile}): sizes {config.sizes}, scenarios {config.scenarios}, {config.image_size} px -> {out}")
    record = run_sweep(config, out, note=args.note, command=command.strip())
    write_csv(record, out.with_suffix(".csv"))
    print(
        f"best scenario per size: {best_by_size(record['points'])}; crossover (B or C beats A from): "
        f"{crossover(record['points'])}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
