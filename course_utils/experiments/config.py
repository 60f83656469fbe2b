"""The sweep's and freeze-depth experiment's configurations: everything that decides their numbers.

A configuration is stored in its results file (``SweepConfig.as_json``); resuming with another is refused, so one
file never mixes two protocols. ``shareable`` is the part that decides one point's numbers: the freeze depths head,
block5 and stem are the sweep's A, B and C whenever the two experiments agree on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch

from ..measurements import FREEZE_DEPTHS, SCENARIOS, seeds_for
from ..profiles import course_profile
from .protocol import Budget

EXPERIMENTS = ("scenarios", "freeze-depth", "similarity", "large-data", "flip")
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
    large_seeds: int = 2  # seeds of the expensive contenders above `seeds_up_to`: enough to measure the spread
    val_per_class: int = 100  # validation images per class, from the training set, disjoint from training
    test_per_class: int | None = None  # None: the whole 10,000-image test set
    all_size: int = 6000
    batch_size: int = 64
    # the numeric path (course bench measures it): same protocol, faster arithmetic, logits equal to ~1e-6
    channels_last: bool = True
    eval_batch_size: int = 64  # validation, test, recalibration and cache writing
    lr_grids: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {
            "linear": (1e-3, 3e-3, 1e-2),  # raw pixels and A's head
            "finetune": (1e-4, 3e-4, 1e-3),  # B, C, freeze depths: body lr (the head gets 10x)
            "scratch": (1e-3, 3e-3, 1e-2),
        }
    )  # starting grids: a winner at an edge extends its grid (protocol.select_and_train)
    # data augmentation of the training images: None (every experiment but one) or "hflip" (each training image
    # mirrored left-right with probability 1/2: the 'flip' experiment, an extra C point beside the sweep)
    augment: str | None = None

    def seeds_for(self, scenario: str, n_per_class: int) -> int:
        """How many seeds a contender gets at a size: many where cheap, fewer where a run costs an hour."""
        return seeds_for(self.as_json(), scenario, n_per_class)

    def as_json(self) -> dict:
        """The configuration as plain JSON (sizes as string keys)."""
        record = asdict(self)
        record["budgets"] = {str(k): asdict(v) for k, v in self.budgets.items()}
        record["lr_grids"] = {k: list(v) for k, v in self.lr_grids.items()}
        record["sizes"], record["scenarios"] = list(self.sizes), list(self.scenarios)
        if record["augment"] is None:
            del record["augment"]  # as stored before augmentation existed: the committed files stay resumable
        return record


# successive halving at the large sizes, with probe rungs of 4 epochs (2-epoch rungs favour the higher rate)
FULL_BUDGETS = {
    10: Budget(60, 10),
    30: Budget(40, 8),
    100: Budget(30, 6),
    300: Budget(20, 4),
    1000: Budget(15, 3, probe_epochs=4),
    6000: Budget(10, 3, probe_epochs=4),
}
PROFILES: dict[tuple[str, str], SweepConfig] = {
    ("scenarios", "full"): SweepConfig("scenarios", 64, (10, 30, 100, 300, 1000, 6000), FULL_BUDGETS, SCENARIOS),
    ("freeze-depth", "full"): SweepConfig(
        "freeze-depth", 64, (10, 100, 1000), FULL_BUDGETS, FREEZE_DEPTHS, seeds=3, seeds_up_to=1000, cheap_seeds=3
    ),
    # an extra C point at all data with horizontal flips (as Fashion-MNIST's published MobileNet 0.950 used), same
    # budget, the learning rate of the sweep's C seed 0 there (how every later seed reuses seed 0's choice)
    ("flip", "full"): SweepConfig(
        "flip", 64, (6000,), {6000: FULL_BUDGETS[6000]}, ("C",), large_seeds=1, augment="hflip"
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
        {10: Budget(4, 2), 30: Budget(2, 1)},
        ("head", "block6", "block5", "stem"),
        seeds=1,
        cheap_seeds=1,
        val_per_class=10,
        test_per_class=30,
        lr_grids={"linear": (3e-3,), "finetune": (3e-4,), "scratch": (1e-3,)},
    ),
}
PROFILES[("flip", "quick")] = replace(
    PROFILES[("scenarios", "quick")], experiment="flip", sizes=(10,), scenarios=("C",), augment="hflip"
)


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


def shareable(config: dict) -> dict:
    """The part of a configuration that decides one point's numbers: two experiments that agree on it measure a
    contender at a size and seed identically (the freeze depths head/block5/stem and the sweep's A/B/C)."""
    return {k: v for k, v in config.items() if k not in ("experiment", "sizes", "scenarios") and "seeds" not in k}


def enable_fp32(device: torch.device) -> None:
    """Plain FP32 arithmetic on CUDA (no TF32), so that a point measured on a GPU is comparable to a CPU point."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
