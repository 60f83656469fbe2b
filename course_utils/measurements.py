"""The committed measurements and what they say: means over seeds with their spread, the crossover, freeze depth,
similarity.

Reading only: no training code is imported, so lesson 07's plots and the advisor load in a blink. The experiments
that write these files live in course_utils.experiments (``course sweep``, ``course bench``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "experiments" / "results"
COMMITTED_SWEEP = RESULTS_DIR / "sweep_full.json"
COMMITTED_FREEZE_DEPTH = RESULTS_DIR / "freeze_depth_full.json"
COMMITTED_SIMILARITY = RESULTS_DIR / "similarity_full.json"
COMMITTED_FLIP = RESULTS_DIR / "sweep_flip_full.json"  # an extra C point with flip augmentation
COMMITTED_BENCH = RESULTS_DIR / "bench_cache.json"

SCENARIOS = ("raw", "A", "B", "C", "scratch")
SCENARIO_LABELS = {
    "raw": "raw pixels (logistic regression, no network)",
    "A": "A: head on frozen features",
    "B": "B: later stages unfrozen (from block5)",
    "C": "C: full fine-tune",
    "scratch": "from scratch (random init)",
}
# MobileNetV2's stages from the input on (the similarity experiment probes each one).
STAGES = ("stem", "block1", "block2", "block3", "block4", "block5", "block6", "block7", "last_conv")
# Freeze depths of lesson 04's experiment: the first trainable stage, from the head alone (A) to everything (C).
FREEZE_DEPTHS = ("head", "last_conv", "block7", "block6", "block5", "block4", "block3", "block2", "stem")
FIRST_TRAINABLE = {"A": "head", "B": "block5", "C": "stem"}  # the freeze depth each scenario uses
SHARED_DEPTHS = {stage: scenario for scenario, stage in FIRST_TRAINABLE.items()}  # freeze depth -> sweep scenario


def load_results(path: str | Path) -> dict:
    """{'meta': ..., 'points': [...]} from ``path``; an empty record if the file does not exist yet."""
    path = Path(path)
    if not path.exists():
        return {"meta": {}, "points": []}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); delete it to start the experiment again") from exc
    if not isinstance(record, dict) or not isinstance(record.get("points"), list):
        raise ValueError(f"{path} is not an experiment's results (no 'points' list); delete it to start again")
    return record


@dataclass
class Stat:
    """A measurement repeated over seeds: mean, standard deviation, standard error of the mean, the values."""

    mean: float
    sd: float
    se: float
    values: list[float]

    @property
    def seeds(self) -> int:
        """How many seeds were measured."""
        return len(self.values)


def stat(values: list[float]) -> Stat:
    """Mean and spread over seeds. One seed has no standard error (nan): the test set's binomial error is not the
    run-to-run noise (here the seed-to-seed spread is 3-4x larger), so a single run supports no verdict."""
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else float("nan")
    se = sd / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return Stat(mean, sd, se, list(values))


MIN_SE = 2.0  # a lead must exceed this many standard errors to be a verdict; a smaller one is a tie
VERDICTS = ("ahead", "tie", "behind", "not decided")


def decide(lead: float, se: float, seeds: int, min_se: float = MIN_SE) -> str:
    """THE verdict of the course: 'ahead' / 'behind' when ``lead`` exceeds ``min_se`` standard errors, else 'tie';
    'not decided' with fewer than two seeds (no spread measured). README, lessons, advisor and exercises call this."""
    if seeds < 2 or math.isnan(se):
        return "not decided"
    if lead > min_se * se:
        return "ahead"
    if lead < -min_se * se:
        return "behind"
    return "tie"


@dataclass
class Comparison:
    """A challenger against a baseline at one size, paired on matched seeds (the same training images)."""

    challenger: str
    baseline: str
    n_per_class: int
    difference: Stat  # challenger minus baseline, one value per matched seed
    verdict: str

    @property
    def z(self) -> float:
        """The mean difference in standard errors (nan with one seed)."""
        d = self.difference
        if math.isnan(d.se):
            return float("nan")
        return d.mean / d.se if d.se > 0 else math.copysign(math.inf, d.mean)

    def sentence(self) -> str:
        """E.g. 'C vs A at 10/class: -0.010 ± 0.003 over 3 matched seeds (-3.3 SE): behind'."""
        d = self.difference
        head = f"{self.challenger} vs {self.baseline} at {self.n_per_class}/class: {d.mean:+.3f}"
        if d.seeds < 2:
            return f"{head} (1 seed: not decided)"
        spread = "the same lead on every seed" if d.se == 0 else f"{self.z:+.1f} SE"
        return f"{head} ± {d.se:.3f} over {d.seeds} matched seeds ({spread}): {self.verdict}"


def compare(
    points: list[dict], challenger: str, baseline: str, n_per_class: int, min_se: float = MIN_SE
) -> Comparison | None:
    """``challenger`` minus ``baseline`` at a size, paired seed by seed; None when no seed has both."""
    acc = {(p["scenario"], int(p["n_per_class"]), int(p["seed"])): p["test_acc"] for p in points}
    seeds = sorted(seed for (s, n, seed) in acc if s == baseline and n == n_per_class and (challenger, n, seed) in acc)
    if not seeds:
        return None
    diff = stat([acc[(challenger, n_per_class, k)] - acc[(baseline, n_per_class, k)] for k in seeds])
    return Comparison(challenger, baseline, n_per_class, diff, decide(diff.mean, diff.se, diff.seeds, min_se))


def summarize(points: list[dict], keys: tuple[str, ...], value: str = "test_acc") -> dict[tuple, Stat]:
    """Group points by ``keys`` (e.g. ('scenario', 'n_per_class')) and summarise ``value`` over the seeds of each."""
    groups: dict[tuple, list[dict]] = {}
    for point in points:
        groups.setdefault(tuple(point[k] for k in keys), []).append(point)
    return {key: stat([p[value] for p in group]) for key, group in groups.items()}


def sizes(points: list[dict]) -> list[int]:
    """The measured sizes (images per class asked for), ascending."""
    return sorted({int(p["n_per_class"]) for p in points})


def train_per_class(points: list[dict]) -> dict[int, int]:
    """Size asked for -> training images per class actually used ('all' keeps some for validation)."""
    return {int(p["n_per_class"]): int(p.get("train_per_class", p["n_per_class"])) for p in points}


def accuracy_table(points: list[dict]) -> dict[str, dict[int, float]]:
    """scenario -> {images per class: mean test accuracy over the seeds}."""
    table: dict[str, dict[int, float]] = {}
    for (scenario, n), s in summarize(points, ("scenario", "n_per_class")).items():
        table.setdefault(scenario, {})[int(n)] = s.mean
    return table


def margins(
    points: list[dict], baseline: str = "A", challengers: tuple[str, ...] = ("B", "C")
) -> dict[int, Comparison]:
    """Per size: the best challenger (highest mean lead over ``baseline`` on matched seeds), compared with it."""
    out = {}
    for n in sizes(points):
        compared = [c for c in (compare(points, ch, baseline, n) for ch in challengers) if c is not None]
        if compared:
            out[n] = max(compared, key=lambda c: c.difference.mean)
    return out


def crossover(points: list[dict], baseline: str = "A", challengers: tuple[str, ...] = ("B", "C")) -> int | None:
    """Smallest size from which a challenger is 'ahead' of ``baseline`` (decide(): paired seeds, two standard
    errors) there and at every larger decided size (None: never). A tie is not a crossover; a size with one seed
    is 'not decided' and neither makes nor breaks one."""
    leads = {n: c for n, c in margins(points, baseline, challengers).items() if c.verdict != "not decided"}
    for n in sorted(leads):
        if all(leads[k].verdict == "ahead" for k in leads if k >= n):
            return n
    return None


def freeze_depth_table(points: list[dict]) -> dict[int, dict[str, Stat]]:
    """Images per class -> {first trainable stage: test accuracy over seeds}, from the head (A) to the stem (C)."""
    stats = summarize(points, ("n_per_class", "scenario"))
    return {n: {stage: stats[(n, stage)] for stage in FREEZE_DEPTHS if (n, stage) in stats} for n in sizes(points)}


def depth_against_head(points: list[dict]) -> dict[int, Comparison]:
    """Per size: the best partly or wholly unfrozen depth (highest mean) against the head alone, on matched seeds."""
    out = {}
    for n, row in freeze_depth_table(points).items():
        others = [s for s in row if s != "head"]
        if "head" in row and others:
            best = max(others, key=lambda s: row[s].mean)
            comparison = compare(points, best, "head", n)
            if comparison is not None:
                out[n] = comparison
    return out


def best_depth(points: list[dict]) -> dict[int, str]:
    """Images per class -> the first trainable stage with the highest mean test accuracy."""
    return {n: max(row, key=lambda s: row[s].mean) for n, row in freeze_depth_table(points).items() if row}


def similarity_table(points: list[dict]) -> dict[tuple[str, str, int], dict[str, Stat]]:
    """(task, init, images per class) -> {stage: probe test accuracy over seeds}."""
    stats = summarize(points, ("task", "init", "n_per_class", "stage"))
    table: dict[tuple[str, str, int], dict[str, Stat]] = {}
    for (task, init, n, stage), s in stats.items():
        table.setdefault((task, init, int(n)), {})[stage] = s
    return table


def transfer_gain(points: list[dict], stage: str = "last_conv") -> dict[tuple[str, int], Stat]:
    """(task, images per class) -> pretrained minus random probe accuracy at ``stage``, paired by seed."""
    by_key = {(p["task"], int(p["n_per_class"]), p["seed"], p["init"]): p for p in points if p["stage"] == stage}
    gains: dict[tuple[str, int], list[float]] = {}
    for (task, n, seed, init), p in by_key.items():
        if init == "pretrained" and (task, n, seed, "random") in by_key:
            gains.setdefault((task, n), []).append(p["test_acc"] - by_key[(task, n, seed, "random")]["test_acc"])
    return {key: stat(values) for key, values in sorted(gains.items())}


def gain_at_best_stage(points: list[dict]) -> dict[tuple[str, int], Stat]:
    """(task, images per class) -> ImageNet minus random probe accuracy, each read at the stage where its mean is
    best, paired by seed. Random weights scramble their input more with depth, so a gain read at the last stage
    mostly measures the random network; at each one's best stage it measures what ImageNet training adds."""
    table = similarity_table(points)
    by_key = {(p["task"], int(p["n_per_class"]), p["seed"], p["init"], p["stage"]): p["test_acc"] for p in points}
    gains = {}
    for (task, init, n), row in sorted(table.items()):
        if init != "pretrained" or (task, "random", n) not in table:
            continue
        random_row = table[(task, "random", n)]
        best, best_random = max(row, key=lambda s: row[s].mean), max(random_row, key=lambda s: random_row[s].mean)
        seeds = sorted({p["seed"] for p in points if p["task"] == task and int(p["n_per_class"]) == n})
        values = [
            by_key[(task, n, seed, "pretrained", best)] - by_key[(task, n, seed, "random", best_random)]
            for seed in seeds
            if (task, n, seed, "pretrained", best) in by_key and (task, n, seed, "random", best_random) in by_key
        ]
        if values:
            gains[(task, n)] = stat(values)
    return gains


def compare_gains(points: list[dict], min_se: float = MIN_SE) -> dict[int, tuple[Stat, Stat, str]]:
    """Images per class -> (photos' gain, Fashion-MNIST's gain, which is larger): 'photos', 'fashion', 'tie' or
    'not decided', by decide(). Gains are read at each one's best stage."""
    gains = gain_at_best_stage(points)
    out = {}
    for n in sorted({n for (_, n) in gains}):
        if ("photos", n) in gains and ("fashion", n) in gains:
            photos, fashion = gains[("photos", n)], gains[("fashion", n)]
            # two tasks, not matched training images: the error of the difference combines the two spreads
            word = decide(
                photos.mean - fashion.mean, math.hypot(photos.se, fashion.se), min(photos.seeds, fashion.seeds), min_se
            )
            out[n] = (photos, fashion, {"ahead": "photos", "behind": "fashion"}.get(word, word))
    return out


def best_probe_stage(points: list[dict], init: str = "pretrained") -> dict[tuple[str, int], str]:
    """(task, images per class) -> the stage whose features probe best (mean over seeds) for ``init``."""
    return {
        (task, n): max(row, key=lambda s: row[s].mean)
        for (task, i, n), row in similarity_table(points).items()
        if i == init
    }


def seeds_for(config: dict, scenario: str, n_per_class: int) -> int:
    """How many seeds an experiment's configuration gives a contender at a size (cheap ones get more)."""
    if scenario in ("raw", "A", "head"):
        return int(config["cheap_seeds"])
    return int(config["seeds"]) if n_per_class <= int(config["seeds_up_to"]) else int(config.get("large_seeds", 1))


RUNS_LAST = ("scratch",)  # the random start: the costliest point at a size, and no scenario choice rests on it


def planned_points(config: dict) -> list[tuple[str, int, int]]:
    """Every (contender, images per class, seed) a sweep configuration asks for, in the order it runs them.

    Size by size, seed by seed; the random start after every seed of the pretrained contenders, so that a run
    stopped part-way through a size has measured the scenarios' comparison (A, B, C over seeds) first.
    """
    plan = []
    for n in config["sizes"]:
        for group in (
            [s for s in config["scenarios"] if s not in RUNS_LAST],
            [s for s in config["scenarios"] if s in RUNS_LAST],
        ):
            for seed in range(max((seeds_for(config, s, n) for s in group), default=0)):
                plan += [(s, int(n), seed) for s in group if seed < seeds_for(config, s, n)]
    return plan


def missing_points(record: dict) -> list[tuple[str, int, int]]:
    """The planned points of a results record that are not in it yet (empty: the experiment is complete)."""
    config = record.get("meta", {}).get("config")
    if not config:
        return []
    done = {(p["scenario"], int(p["n_per_class"]), p["seed"]) for p in record["points"]}
    return [key for key in planned_points(config) if key not in done]


def progress_report(record: dict) -> str:
    """Per size: how many of the planned points are finished, and what each finished contender measured."""
    config = record.get("meta", {}).get("config")
    if not config:
        return "no points yet"
    plan, missing = planned_points(config), set(missing_points(record))
    stats = summarize(record["points"], ("scenario", "n_per_class"))
    lines = [f"{len(plan) - len(missing)} of {len(plan)} planned points finished"]
    for n in config["sizes"]:
        planned_here = [key for key in plan if key[1] == n]
        done_here = [key for key in planned_here if key not in missing]
        cells = []
        for s in config["scenarios"]:
            if (s, n) in stats:
                st = stats[(s, n)]
                spread = f"±{st.sd:.3f}" if st.seeds > 1 else ""
                cells.append(f"{s} {st.mean:.3f}{spread} ({st.seeds}/{seeds_for(config, s, n)})")
        status = "complete" if len(done_here) == len(planned_here) else f"{len(done_here)}/{len(planned_here)}"
        lines.append(f"{n:>5}/class [{status}]: " + (", ".join(cells) or "not started"))
    return "\n".join(lines)


def similarity_report(record: dict) -> str:
    """The similarity experiment's transfer gains so far, one line per task and size."""
    config = record.get("meta", {}).get("config", {})
    planned = len(config.get("sizes", [])) * int(config.get("seeds", 0)) * 2 * 2 * len(STAGES)  # tasks x inits
    done = len(record["points"])
    lines = [f"{done} of {planned} planned probe results" + (" (complete)" if done >= planned else "")]
    for (task, n), gain in transfer_gain(record["points"]).items():
        lines.append(f"{task:<8} {n:>4}/class: transfer gain {gain.mean:+.3f} ± {gain.sd:.3f} ({gain.seeds} seeds)")
    return "\n".join(lines)
