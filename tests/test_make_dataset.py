"""data_scripts/make_dataset.py and the 'bring your own photos' path of lesson 02, on real photos."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import sys
from pathlib import Path

import pytest
from PIL import Image
from skimage import data as skdata

from course_utils.pets import pets_data

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_dataset", ROOT / "data_scripts" / "make_dataset.py")
make_dataset = importlib.util.module_from_spec(_spec)
sys.modules["make_dataset"] = make_dataset  # dataclasses look their module up there
_spec.loader.exec_module(make_dataset)


def _crops(array, n: int) -> list[Image.Image]:
    img = Image.fromarray(array)
    w, h = img.size
    return [
        img.crop((k * w // 8, k * h // 8, w // 2 + k * w // 8, h // 2 + k * h // 8)).resize((64, 64)) for k in range(n)
    ]


@pytest.fixture
def source(tmp_path) -> Path:
    """tigger: crops of the cat photo (JPEG); misty: coffee (PNG, one grey, one in a sub-folder); neither: rocket,
    plus a truncated JPEG, a .DS_Store and a text file."""
    src = tmp_path / "my photos"
    for name in ("Tigger", "misty", "neither"):
        (src / name).mkdir(parents=True)
    for k, img in enumerate(_crops(skdata.chelsea(), 4)):
        img.save(src / "Tigger" / f"IMG_{k}.jpg", quality=90)
    for k, img in enumerate(_crops(skdata.coffee(), 4)):
        (img.convert("L") if k == 0 else img).save(src / "misty" / f"{k}.png")
    (src / "misty" / "holiday").mkdir()
    _crops(skdata.coffee(), 1)[0].save(src / "misty" / "holiday" / "0.png")  # same name as misty/0.png
    for k, img in enumerate(_crops(skdata.rocket(), 4)):
        img.save(src / "neither" / f"r{k}.jpg")
    good = io.BytesIO()
    _crops(skdata.rocket(), 1)[0].save(good, format="JPEG")
    (src / "neither" / "broken.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 3])
    (src / "neither" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(100))
    (src / "neither" / "notes.txt").write_text("not a photo")
    return src


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_copies_readable_photos_and_reports_the_rest(source, tmp_path):
    before = snapshot(source)
    dest = tmp_path / "data" / "my_pets"
    report = make_dataset.make_dataset(source, dest)
    assert {name: len(files) for name, files in report.copied.items()} == {"tigger": 4, "misty": 5, "neither": 4}
    assert sorted(p.name for p, _ in report.skipped) == [".DS_Store", "broken.jpg", "notes.txt"]
    reasons = dict((p.name, r) for p, r in report.skipped)
    assert "cannot be read" in reasons["broken.jpg"]
    assert sorted(p.name for p in (dest / "misty").iterdir()) == ["0.png", "0_1.png", "1.png", "2.png", "3.png"]
    assert (dest / "tigger" / "IMG_2.jpg").read_bytes() == (source / "Tigger" / "IMG_2.jpg").read_bytes()
    assert snapshot(source) == before  # the source is only read
    assert [p.name for p in dest.parent.iterdir()] == ["my_pets"]  # no temporary folders left


def test_existing_destination_is_kept_unless_replace(source, tmp_path):
    dest = tmp_path / "my_pets"
    make_dataset.make_dataset(source, dest)
    (dest / "tigger" / "mine.jpg").write_bytes(b"keep me")
    with pytest.raises(make_dataset.DatasetError, match="--replace"):
        make_dataset.make_dataset(source, dest)
    assert (dest / "tigger" / "mine.jpg").read_bytes() == b"keep me"
    make_dataset.make_dataset(source, dest, replace=True)
    assert not (dest / "tigger" / "mine.jpg").exists() and len(list((dest / "tigger").iterdir())) == 4


def test_missing_class_folder_is_explained_and_nothing_written(source, tmp_path):
    dest = tmp_path / "my_pets"
    with pytest.raises(make_dataset.DatasetError, match=r"no folder for dog \(found: misty, neither, tigger\)"):
        make_dataset.make_dataset(source, dest, classes=("tigger", "misty", "dog"))
    assert not dest.exists() and [p.name for p in tmp_path.iterdir()] == ["my photos"]


def test_class_with_only_broken_files_is_an_error_and_nothing_written(source, tmp_path):
    for path in (source / "Tigger").iterdir():
        path.write_bytes(b"not really a jpeg")
    dest = tmp_path / "my_pets"
    with pytest.raises(make_dataset.DatasetError, match="no readable photos for tigger"):
        make_dataset.make_dataset(source, dest)
    assert not dest.exists() and [p.name for p in tmp_path.iterdir()] == ["my photos"]


def test_destination_inside_source_is_refused(source):
    with pytest.raises(make_dataset.DatasetError, match="overlap"):
        make_dataset.make_dataset(source, source / "out")


def test_command_line(source, tmp_path, capsys):
    dest = tmp_path / "out"
    assert make_dataset.main([str(source), "--dest", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "13 photos" in out and "skipped neither/.DS_Store" in out and "skipped neither/broken.jpg" in out
    assert make_dataset.main([str(source), "--dest", str(dest)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_lesson_02_uses_your_photos_when_present(source, tmp_path, capsys):
    """What lesson 02 does with MY_PHOTOS (or data/my_pets): the raw folder, corrupt file and .DS_Store included."""
    outputs = []
    for root in (source, make_dataset.make_dataset(source, tmp_path / "my_pets").copied["tigger"][0].parents[1]):
        pets = pets_data(size=32, root=root, allow_download=False)
        outputs.append(capsys.readouterr().out)
        assert pets.source.startswith("your photos")
        assert sorted(c.lower() for c in pets.classes) == ["misty", "neither", "tigger"]
        assert len(pets.train) + len(pets.val) == 13
        image, label = pets.train[0]
        assert tuple(image.shape) == (3, 32, 32) and 0 <= label < 3
    assert "skipped neither/broken.jpg" in outputs[0] and "skipped neither/.DS_Store" in outputs[0]
    assert "skipped" not in outputs[1]  # make_dataset left only readable photos
