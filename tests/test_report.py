"""README's measured sections are rebuilt from the committed results: they match them, and follow them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from course_utils import measurements
from course_utils.experiments import report

ROOT = Path(__file__).resolve().parents[1]


def test_readme_and_the_experiments_doc_quote_exactly_what_the_committed_results_say():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert report.render(text) == text, "README's claims table is stale: run `course results`"
    doc = (ROOT / "docs" / "experiments.md").read_text(encoding="utf-8")
    assert report.render_experiments(doc) == doc, "docs/experiments.md is stale: run `course results`"
    assert report.main(["--check"]) == 0


def test_the_verdicts_follow_the_data_not_the_prose(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(measurements.RESULTS_DIR, results, ignore=shutil.ignore_patterns("*.csv"))
    text = (ROOT / "docs" / "experiments.md").read_text(encoding="utf-8")
    assert '"Similar data gains more" is not shown' in report.render_experiments(text, report.Results(results))
    # photos' ImageNet features made 0.3 better at every stage: now the natural-photo task gains more
    record = json.loads((results / "similarity_full.json").read_text())
    for p in record["points"]:
        if p["task"] == "photos" and p["init"] == "pretrained":
            p["test_acc"] = min(1.0, p["test_acc"] + 0.3)
    (results / "similarity_full.json").write_text(json.dumps(record))
    changed = report.render_experiments(text, report.Results(results))
    assert '"Similar data gains more" is shown' in changed and changed != text


def test_check_fails_on_a_stale_section_and_the_command_rebuilds_it(tmp_path, capsys):
    readme, doc = tmp_path / "README.md", tmp_path / "experiments.md"
    readme.write_text((ROOT / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    text = (ROOT / "docs" / "experiments.md").read_text(encoding="utf-8")
    doc.write_text(text.replace("planned points finished", "planned points done", 1), encoding="utf-8")
    paths = ["--readme", str(readme), "--experiments-doc", str(doc)]
    assert report.main(["--check", *paths]) == 1
    assert "run `course results`" in capsys.readouterr().out
    assert report.main(paths) == 0 and doc.read_text(encoding="utf-8") == text


def test_a_size_with_some_points_is_unfinished_until_every_planned_point_is_in(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(measurements.RESULTS_DIR, results, ignore=shutil.ignore_patterns("*.csv"))
    sweep = json.loads((results / "sweep_full.json").read_text())
    largest = max(sweep["meta"]["config"]["sizes"])
    seed0 = [p for p in sweep["points"] if int(p["n_per_class"]) != largest or p["seed"] == 0]
    sweep["points"] = [p for p in seed0 if int(p["n_per_class"]) != largest or p["scenario"] in ("raw", "A")]
    (results / "sweep_full.json").write_text(json.dumps(sweep))
    partial = report.Results(results)
    assert largest in partial.sizes and partial.unfinished == [largest]  # measured in part: still unfinished
    readme = report.render((ROOT / "README.md").read_text(encoding="utf-8"), partial)
    assert f"partly measured ({largest:,} per class still to run)" in readme
    doc = report.render_experiments((ROOT / "docs" / "experiments.md").read_text(encoding="utf-8"), partial)
    assert f"**Not finished yet: {largest:,} per class.**" in doc

    # every planned point in (the missing ones copied from a finished point of the same contender): all measured
    planned = measurements.planned_points(sweep["meta"]["config"])
    have = {(p["scenario"], int(p["n_per_class"]), p["seed"]) for p in sweep["points"]}
    template = {
        (p["scenario"], int(p["n_per_class"])): p
        for p in json.loads((measurements.RESULTS_DIR / "sweep_full.json").read_text())["points"]
    }
    for scenario, n, seed in planned:
        if (scenario, n, seed) not in have:
            model = template.get((scenario, n)) or template[(scenario, 1000)]
            sweep["points"].append({**model, "n_per_class": n, "seed": seed})
    (results / "sweep_full.json").write_text(json.dumps(sweep))
    whole = report.Results(results)
    assert whole.unfinished == [] and not measurements.missing_points(whole.depth)
    readme = report.render((ROOT / "README.md").read_text(encoding="utf-8"), whole)
    row = [line for line in readme.splitlines() if line.startswith("| B suits medium data")]
    assert len(row) == 1 and "partly measured" not in row[0] and "shown" in row[0].rsplit("|", 2)[1], row
    assert "**open**" not in readme and "size: measured;" in readme  # no open row for data size once all is in
    doc = report.render_experiments((ROOT / "docs" / "experiments.md").read_text(encoding="utf-8"), whole)
    assert "Not finished yet" not in doc and '**The large-data end** ("C suits large data")' in doc

    # the claim's status is the verdict at the largest size: C ahead of B and A there, or what ties or beats it
    for lead, said in ((0.1, "shown at"), (0.0, "**not shown**"), (-0.1, "B is ahead of C")):
        for p in sweep["points"]:
            if p["scenario"] == "C" and int(p["n_per_class"]) == largest:
                p["test_acc"] = template[("B", largest)]["test_acc"] + lead + 0.001 * p["seed"]
        (results / "sweep_full.json").write_text(json.dumps(sweep))
        row = [line for line in report.render(readme, report.Results(results)).splitlines() if "| C suits" in line]
        assert len(row) == 1 and said in row[0].rsplit("|", 2)[1], (lead, row)


def _b_status(results: Path, sweep: dict) -> str:
    (results / "sweep_full.json").write_text(json.dumps(sweep))
    readme = report.render((ROOT / "README.md").read_text(encoding="utf-8"), report.Results(results))
    [row] = [line for line in readme.splitlines() if line.startswith("| B suits medium data")]
    return row.rsplit("|", 2)[1].strip()


def test_b_suits_the_sizes_from_which_it_leads_a_and_c_does_not_lead_it(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(measurements.RESULTS_DIR, results, ignore=shutil.ignore_patterns("*.csv"))
    sweep = json.loads((results / "sweep_full.json").read_text())
    assert _b_status(results, sweep) == (
        "shown from 100 per class up: B ahead of A and C not ahead of B there "
        "(at 10 per class B ties A; at 30 per class C is ahead of B)"
    )
    by = {(p["scenario"], int(p["n_per_class"]), p["seed"]): p for p in sweep["points"]}
    for (scenario, n, seed), p in by.items():  # C made ahead of B at 1,000 per class: B suits only the largest size
        if (scenario, n) == ("C", 1000):
            p["test_acc"] = by[("B", n, seed)]["test_acc"] + 0.05 + 0.001 * seed
    assert _b_status(results, sweep).startswith("shown from 6,000 per class up")
    assert "at 1,000 per class C is ahead of B" in _b_status(results, sweep)
    for (scenario, n, seed), p in by.items():  # B made behind A at the largest size: not shown at any size
        if (scenario, n) == ("B", 6000):
            p["test_acc"] = by[("A", n, seed)]["test_acc"] - 0.05 - 0.001 * seed
    assert _b_status(results, sweep).startswith("**not shown**")
