"""The course's measured sections, rebuilt from the committed result files, so that no quoted figure drifts from them.

    course results            rewrite README.md's "Claims and evidence" and docs/experiments.md's "Measured:
                              choosing a scenario"
    course results --check    exit 1 if either differs from what the committed results say (a test runs this)

Run it after committing new experiment points. Every number in these two sections comes from
course_utils/experiments/results/*.json; every verdict ("tied", "ahead", "not shown") is computed from them, so a
sentence that the data stops supporting changes with it instead of staying behind as a false claim.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import measurements as m
from ..tools.cli import doc_parser
from .cost import cost_line, estimate, holdout_check
from .report_claims import (
    CLAIMS_HEADING,
    claims_section,
    gains_text,
    large_data_reading,
    short_verdict,
    similarity_verdicts,
)

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXPERIMENTS_DOC = ROOT / "docs" / "experiments.md"
MEASURED_HEADING = "## Measured: choosing a scenario"


class Results:
    """The committed experiments and the figures derived from them."""

    def __init__(self, results_dir: Path = m.RESULTS_DIR):
        self.sweep = m.load_results(results_dir / m.COMMITTED_SWEEP.name)
        self.depth = m.load_results(results_dir / m.COMMITTED_FREEZE_DEPTH.name)
        self.similarity = m.load_results(results_dir / m.COMMITTED_SIMILARITY.name)
        self.flip = m.load_results(results_dir / m.COMMITTED_FLIP.name)  # no points until the plan is finished
        self.bench = json.loads((results_dir / m.COMMITTED_BENCH.name).read_text(encoding="utf-8"))
        points = self.sweep["points"]
        self.config = self.sweep["meta"]["config"]
        self.stats = m.summarize(points, ("scenario", "n_per_class"))
        self.cross = m.crossover(points)
        self.sizes = m.sizes(points)
        missing = m.missing_points(self.sweep)
        self.complete = [n for n in self.config["sizes"] if not [k for k in missing if k[1] == n]]
        self.unfinished = [n for n in self.config["sizes"] if n not in self.complete]  # a point or more to run
        self.depth_unfinished = sorted({n for _, n, _ in m.missing_points(self.depth)})
        self.table = m.similarity_table(self.similarity["points"])

    def acc(self, scenario: str, n: int) -> str:
        """Mean test accuracy of a scenario at a size, or a dash."""
        stat = self.stats.get((scenario, n))
        return f"{stat.mean:.3f}" if stat else "—"

    def best_stage(self, task: str, init: str, n: int) -> tuple[str, float, float]:
        """(best-probing stage, its accuracy, the last stage's accuracy) for a task, weights and size."""
        row = self.table[(task, init, n)]
        best = max(row, key=lambda s: row[s].mean)
        return best, row[best].mean, row["last_conv"].mean

    def status(self, name: str, record: dict, similarity: bool = False) -> str:
        """What `course sweep --status` prints for a committed file."""
        return f"course_utils/experiments/results/{name}:\n{status_text(record, similarity)}"


def status_text(record: dict, similarity: bool = False) -> str:
    """`course sweep --status`'s report of a results record: progress per size, then (not similarity) CPU time."""
    if similarity:
        return m.similarity_report(record)
    return f"{m.progress_report(record)}\n{cost_line(record)}"


def _size_line(r: Results, n: int) -> str:
    """One size of the sweep: every contender against A, paired on matched seeds, with measurements.decide's verdict."""
    comparisons = [m.compare(r.sweep["points"], s, "A", n) for s in ("raw", "B", "C", "scratch")]
    said = "; ".join(f"{c.challenger} {short_verdict(c)}" for c in comparisons if c)
    if not said:
        return ""
    done = "" if n in r.complete else " (not all seeds finished yet)"
    means = ", ".join(f"{s} {r.acc(s, n)}" for s in m.SCENARIOS if (s, n) in r.stats)
    return f"- **{n} per class{done}**, against A on matched seeds: {said}. Means: {means}.\n"


def _depth_sentence(r: Results) -> str:
    """Per size: the best unfrozen depth against the head alone, paired on matched seeds (measurements.decide)."""
    lines = []
    table = m.freeze_depth_table(r.depth["points"])
    for n, c in m.depth_against_head(r.depth["points"]).items():
        row = table[n]
        stem = f"; training everything (stem): {row['stem'].mean:.3f}" if "stem" in row else ""
        lines.append(
            f"- **{n} per class**: the best depth, trainable from {c.challenger} ({row[c.challenger].mean:.3f}), "
            f"against the head alone ({row['head'].mean:.3f}): {short_verdict(c)}{stem}.\n"
        )
    todo = [n for n in r.depth["meta"]["config"]["sizes"] if n not in m.sizes(r.depth["points"])]
    if todo:
        lines.append(f"- not started yet: {', '.join(f'{n:,}' for n in todo)} per class.\n")
    return "".join(lines)


def _grids(r: Results) -> str:
    grids = r.config["lr_grids"]
    return "; ".join(f"{name} {', '.join(f'{lr:g}' for lr in grid)}" for name, grid in grids.items())


def _numeric(r: Results) -> str:
    path = r.bench.get("numeric_path")
    if not path:
        return "`course bench` measures what it saves"
    whole = path["train_step_by_first_trainable_stage"]["stem"]["speedup"]
    evaluate = path["evaluate_speedup_channels_last_64_vs_nchw_256"]
    return (
        f"`course bench`: a whole-network training step {whole:.2f}× faster, evaluation {evaluate:.2f}×, logits within "
        f"{path['logits_max_abs_difference']:.0e}"
    )


def _cpu_so_far(r: Results) -> str:
    """CPU time spent and left, both experiments together, with how well the estimate did one size up."""
    costs = [estimate(r.sweep), estimate(r.depth)]
    spent, left, left_max = (sum(getattr(c, f) for c in costs) for f in ("spent_hours", "left_hours", "left_hours_max"))
    text = f"the finished points of the sweep and the freeze depths took {spent:.1f} CPU-hours of one core"
    if left_max:
        largest = max(r.complete or m.sizes(r.sweep["points"]))  # a size whose every point is in
        guess, took = holdout_check(r.sweep, largest)
        text += (
            f", and the rest is estimated at {left:.1f} h ({left_max:.1f} h if every run uses its epoch limit; "
            f"`course_utils/experiments/cost.py`: each contender's CPU seconds per training image and epoch, read "
            f"off its finished points). The estimate's check: from the sizes below {largest:,} per class it gives "
            f"{guess:.1f} h for the finished {largest:,}-per-class points, which took {took:.1f} h"
        )
    return text + "."


def measured_section(r: Results) -> str:
    """README's section on the sweep, freeze-depth and similarity experiments, with their status."""
    parts = (_how_it_runs(r), _where_the_run_stands(r), _freeze_depth_status(r), _similarity_status(r))
    return f"{MEASURED_HEADING} (lessons 04 and 07)\n\n" + "".join(parts)


def _how_it_runs(r: Results) -> str:
    """The commands and the one protocol every contender follows."""
    sizes = ", ".join(str(n) for n in r.config["sizes"])
    return f"""```bash
course sweep --experiment large-data --profile full --threads 1 --out-dir course_utils/experiments/results --note "..."
course sweep --experiment large-data --profile full --status --out-dir course_utils/experiments/results  # how far, CPU time, estimate, part-trained points
course sweep --experiment similarity --profile full --threads 1 --out course_utils/experiments/results/similarity_full.json
course sweep --experiment large-data --profile quick                              # a smoke run of the machinery
course results                                                                    # rebuild this section from the files
```

Stop it any time and run the same command again: finished points are in the file, and a point stopped part-way
resumes from the checkpoints its training saved as it went (after any epoch that ends two minutes or more after the
last save, and at the end of every candidate's run; under `data/cache/experiments/checkpoints/`),
with the numbers of a run that never stopped; the CPU time the stopped run spent is counted in the point.
Run it in the background on one core (`--threads 1`, `OMP_NUM_THREADS=1`). On Linux, `nice` alone may not keep
other work off it: the kernel shares the CPU between terminal sessions first (autogroups) and applies nice only
within one, so a run beside a busy test session in another terminal got a third of a core until its session's
weight was raised (as root: `echo -15 > /proc/$(pgrep -f "course sweep")/autogroup`).

`large-data` runs the sweep and the freeze-depth experiment size by size (the sweep first at each size: the freeze
depths head, block5 and stem *are* its A, B and C and are copied from its file, not trained again), then one extra
point: C at all data with horizontal-flip augmentation (`sweep_flip_full.json`; the published MobileNet figure used
flips), on the same images, start and budget as the sweep's C seed 0, with its learning rate. `--device cuda`
runs it on a GPU (FP32, TF32 off); every point records its device, and one size of one file never mixes devices.
On a GPU machine without network or the course's venv, `data_scripts/device_plan.sh` runs it in one call: `pack`
here puts the weights and the data into `.device/` (about 45 MB, git-ignored), `run` there unpacks them, runs for
at most `BUDGET_S` seconds and copies the results files to `$OUT/cuda/` (commit them beside the CPU files, as
`results/cuda/`). Its plumbing was tried on this CPU (`DEVICE=cpu PROFILE=quick`); no GPU has run it yet.

**One protocol for every contender** (`course_utils/experiments/protocol.py`): Fashion-MNIST at {r.config["image_size"]} px
(MobileNetV2's last feature maps are 2×2, not 1×1 as at 32 px); {sizes} training images per class (the last means
all: 5,900 after validation); {r.config["val_per_class"]} validation images per class taken from the training set;
the **whole 10,000-image test set**, touched once per point; contenders **raw pixels** (logistic regression, no
network), **A** (head on frozen features, from the feature cache), **B** (trainable from block5, from the boundary
cache, A's head as warm-up), **C** (head warm-up, then everything with the body at a tenth of the head's learning
rate, BatchNorm training), **scratch** (random init); each learning rate chosen on validation (seed 0; later seeds
reuse it) from a grid of three ({_grids(r)}) that **extends half a decade beyond an edge whenever the winner sits
there**, so every chosen rate is bracketed (ties go to the middle; successive halving with 4-epoch probe rungs at
1,000 and 6,000 per class); at most 60 … 10 epochs depending on size, stopping on validation (patience), the best
epoch's weights kept and the epochs used recorded; BatchNorm recalibrated on training images before every
evaluation; {r.config["cheap_seeds"]} seeds for raw and A at every size, {r.config["seeds"]} for the others up to
{r.config["seeds_up_to"]:,} per class and {r.config.get("large_seeds", 1)} above. One numeric path for every
contender: channels-last memory format, evaluation at batch {r.config.get("eval_batch_size", 256)} ({_numeric(r)}).
Each finished point is written at once (atomically, JSON and CSV) with the command, machine, device, duration and
CPU time; a point already there is skipped, so the same command resumes; a different configuration is refused.

"""


def _where_the_run_stands(r: Results) -> str:
    """How far the sweep is, and what its finished points say."""
    unfinished = ", ".join(f"{n:,}" for n in r.unfinished)
    open_part = (
        f"""- **Not finished yet: {unfinished} per class.** Until then "C suits large data", the full-data result against
  the published Fashion-MNIST figures (2-conv CNN 0.916 without augmentation; MobileNet 0.950 with flip augmentation
  and many epochs) and the goal of ≥ 0.93 for the full-data fine-tune on a CPU are **open**: lessons 05 and 07 read
  only finished points and say what is missing, and the advisor says when a size lies beyond the measured ones.
  Resume the command above to fill them in.
"""
        if r.unfinished
        else '- **The large-data end** ("C suits large data"): {}; verdict: {}.\n'.format(*large_data_reading(r))
    )
    return f"""**Where the run stands.** The whole plan is {len(m.planned_points(r.config))} points, committed point by point
while it runs; {_cpu_so_far(r)}
Commands and machines of the runs so far are in the file's `meta` ({len(r.sweep["meta"]["runs"])} invocations;
devices: {", ".join(sorted({p.get("device", "cpu") for p in r.sweep["points"]})) or "none yet"}). Status of the
committed file (`course sweep --status`, mean ± sd (seeds done/planned)):

```text
{r.status("sweep_full.json", r.sweep)}
```

What the finished points say (lesson 07 computes the same from the file):

{"".join(_size_line(r, n) for n in r.sizes)}- **Crossover** (fine-tuning *ahead* of A — paired on matched seeds, by more than two standard errors of the paired
  differences — at a size and at every larger size where the seeds decide; one seed decides nothing): {f"{r.cross} per class" if r.cross else "none among the finished sizes yet"}. Raw-pixel logistic
  regression at 10 per class: {r.acc("raw", 10)} (A {r.acc("A", 10)}); training from scratch on the same budget:
  {r.acc("scratch", 10)}.
{open_part}
"""


def _freeze_depth_status(r: Results) -> str:
    """How far the freeze-depth experiment is, and what it says."""
    return f"""**Freeze depth** (lesson 04): the first trainable stage moved from the head (A) to the stem (C), at
{", ".join(str(n) for n in r.depth["meta"]["config"]["sizes"])} per class, same protocol. Status of the committed file:

```text
{r.status("freeze_depth_full.json", r.depth)}
```

What the finished points say:

{_depth_sentence(r)}
"""


def _similarity_status(r: Results) -> str:
    """What the similarity probe says about early and late stages."""
    v = similarity_verdicts(r)
    pp, fp = r.best_stage("photos", "pretrained", 10), r.best_stage("fashion", "pretrained", 10)
    pr, fr = r.best_stage("photos", "random", 10), r.best_stage("fashion", "random", 10)
    return f"""**Similarity** (lesson 07): the same linear probe (standardised features, logistic regression, regularisation
chosen on validation) on the averaged output of every stage of MobileNetV2, with ImageNet weights and with random
weights (BatchNorm recalibrated), on two ten-class tasks prepared alike at 64 px: **natural photos** (ten bundled
photographs, crops from one half of each for training and from the other half for testing) and **Fashion-MNIST**;
{" and ".join(str(n) for n in r.similarity["meta"]["config"]["sizes"])} images per class,
{r.similarity["meta"]["config"]["seeds"]} seeds. Status:

```text
{r.status("similarity_full.json", r.similarity, similarity=True)}
```

- **Later stages are {"specific" if v["later_specific"] else "not shown to be specific"}**: at 10 per class ImageNet
  features probe best at {pp[0]} on photos ({pp[1]:.3f}, last stage {pp[2]:.3f}) and at {fp[0]} on Fashion-MNIST
  ({fp[1]:.3f}, last stage {fp[2]:.3f}){", an intermediate stage, not the last, at every measured size" if v["later_specific"] else ""}.
- **Early stages are {"generic" if v["early_generic"] else "not shown to be generic"}**: random weights probe best at
  {pr[0]} on photos ({pr[1]:.3f}) and at {fr[0]} on Fashion-MNIST ({fr[1]:.3f}); at block1 they probe
  {"within 0.05 of ImageNet's weights, or better, on both tasks" if v["early_generic"] else "more than 0.05 below ImageNet's weights on some task"}; the ImageNet advantage grows with depth.
- **"Similar data gains more" is {"shown" if v["photos_gain_more"] else "not shown"}**: the transfer gain, each at its
  best stage (mean ± standard error over seeds; a difference under two standard errors is a tie): {gains_text(r)}.
  Fashion-MNIST's best stage is {"earlier" if v["fashion_earlier"] else "not earlier"} than the photos' at every
  measured size, so CS231n's "small and different: use earlier features" is
  {"confirmed" if v["fashion_earlier"] else "not confirmed"}.
  Limit: the offline photo task (ten photographs cut into crops) is easy for any features, so the rule of thumb
  may hold for real object categories; the experiment cannot confirm it, and the advisor reports the measured
  gains instead of assuming it.

"""


def _replace(text: str, heading: str, section: str) -> str:
    """``text`` with the section that starts at ``heading`` (up to the next '## ' heading) replaced by ``section``."""
    if heading not in text:
        raise ValueError(f"no section {heading!r} to rebuild; add the heading where the section belongs")
    start = text.index(heading)
    following = text.find("\n## ", start + len(heading))
    return text[:start] + section + (text[following + 1 :] if following >= 0 else "")


def render(readme: str, results: Results | None = None) -> str:
    """README text with its claims-and-evidence table rebuilt from the results."""
    return _replace(readme, CLAIMS_HEADING, claims_section(results or Results()))


def render_experiments(doc: str, results: Results | None = None) -> str:
    """docs/experiments.md with its section on the sweep, freeze depth and similarity rebuilt from the results."""
    return _replace(doc, MEASURED_HEADING, measured_section(results or Results()))


def main(argv: list[str] | None = None) -> int:
    """`course results`: rebuild the measured sections (or check that they are current)."""
    parser = doc_parser("course results", __doc__)
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--experiments-doc", type=Path, default=EXPERIMENTS_DOC)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a section is not current")
    args = parser.parse_args(argv)
    results, stale = Results(), 0
    for path, rebuild in ((args.readme, render), (args.experiments_doc, render_experiments)):
        text = path.read_text(encoding="utf-8")
        new = rebuild(text, results)
        if new == text:
            print(f"{path}: measured section matches the committed results")
        elif args.check:
            print(f"{path}: its measured section differs from the committed results; run `course results`")
            stale = 1
        else:
            path.write_text(new, encoding="utf-8")
            print(f"rewrote the measured section of {path}")
    return stale


if __name__ == "__main__":
    sys.exit(main())
