"""data_scripts/device_plan.sh: the large-data experiment in one call on a GPU machine that has no network.

The script is run as that machine runs it: in a copy of the course (no venv, no data, no weights in reach) with only
what `pack` carried; here on the CPU (`DEVICE=cpu PROFILE=quick`), with this interpreter in place of its python3.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course_utils.paths import data_dir
from course_utils.weights import hub_checkpoint_dir

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "data_scripts" / "device_plan.sh"


def copy_of_the_course(base: Path) -> Path:
    """The files a device call carries: the repository's tracked files, with this script (no .venv, no data/)."""
    course = base / "course"
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True, check=True).stdout
    course.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(course)], input=archive, check=True)
    shutil.copy(SCRIPT, course / "data_scripts")  # the working tree's script, committed or not
    return course


def plan(course: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(course / "data_scripts" / "device_plan.sh"), *args],
        env={**os.environ, "PYTHON": sys.executable, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_without_what_pack_carries_it_says_to_pack_first(tmp_path):
    course = copy_of_the_course(tmp_path)
    done = plan(course, "run")
    assert done.returncode == 1 and "pack" in done.stderr and "carry .device" in done.stderr
    assert plan(course).returncode == 2  # no verb: the usage


@pytest.mark.slow
def test_run_trains_from_the_carried_files_only_and_brings_the_results_back(tmp_path):
    raw = data_dir() / "FashionMNIST" / "raw"
    checkpoint = hub_checkpoint_dir() / "mobilenet_v2-b0353104.pth"
    assert checkpoint.is_file() and list(raw.glob("*-ubyte")), "weights or Fashion-MNIST missing: run `make setup`"
    course = copy_of_the_course(tmp_path)
    device = course / ".device"  # what `pack` writes
    (device / "resume").mkdir(parents=True)
    shutil.copy(checkpoint, device)
    for path in raw.glob("*-ubyte"):
        (device / f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes(), compresslevel=1))
    out = tmp_path / "out"
    env = {"DEVICE": "cpu", "PROFILE": "quick", "BUDGET_S": "25", "OUT": str(out), "OMP_NUM_THREADS": "1"}
    env.update(TORCH_HOME=str(tmp_path / "elsewhere"), COURSE_DATA_DIR="", COURSE_ROOT="", COURSE_CACHE_DIR="")
    done = plan(course, "run", **env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "planned points finished" in done.stdout  # the status, printed after the run
    record = json.loads((out / "cpu" / "sweep_quick.json").read_text(encoding="utf-8"))
    assert record["points"] and {p["device"] for p in record["points"]} == {"cpu"}
    assert (out / "cpu" / "sweep_quick.csv").is_file()
    assert (course / "data" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()  # unpacked there
