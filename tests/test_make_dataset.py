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


def _jpeg(name: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(getattr(skdata, name)()).resize((64, 64)).save(buffer, format="JPEG")
    return buffer.getvalue()


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
    assert report.counts == {"tigger": 4, "misty": 5, "neither": 4}
    assert sorted(p.name for p, _ in report.skipped) == [".DS_Store", "broken.jpg", "notes.txt"]
    reasons = dict((p.name, r) for p, r in report.skipped)
    assert reasons["broken.jpg"] == "file is truncated (incomplete download or copy?): copy or download it again"
    assert sorted(p.name for p in (dest / "misty").iterdir()) == ["0.png", "0_1.png", "1.png", "2.png", "3.png"]
    assert (dest / "tigger" / "IMG_2.jpg").read_bytes() == (source / "Tigger" / "IMG_2.jpg").read_bytes()
    assert snapshot(source) == before  # the source is only read
    assert [p.name for p in dest.parent.iterdir()] == ["my_pets"]  # no temporary folders left
    text = report.summary()
    assert "renamed misty/holiday/0.png -> misty/0_1.png (a photo named 0.png is already there; " in text
    assert "flattened from the sub-folder holiday/)" in text


def test_a_missing_source_is_reported_as_missing_even_when_the_destination_exists(tmp_path):
    dest = tmp_path / "my_pets"
    (dest / "tigger").mkdir(parents=True)
    with pytest.raises(make_dataset.DatasetError, match=r"the source folder .*/nope does not exist"):
        make_dataset.make_dataset(tmp_path / "nope", dest)


def test_adding_photos_needs_no_rebuild(source, tmp_path):
    dest = tmp_path / "my_pets"
    make_dataset.make_dataset(source, dest)
    (dest / "tigger" / "uploaded.jpg").write_bytes(_jpeg("coffee"))  # e.g. with the upload box
    extra = _crops(skdata.astronaut(), 2)
    extra[0].save(source / "Tigger" / "new.jpg")
    extra[1].save(source / "neither" / "IMG_0.jpg")  # same name as nothing there; a new photo
    before = snapshot(dest)
    report = make_dataset.make_dataset(source, dest)  # the same command again: only the new photos are copied
    copied = {k: [p.name for p in v] for k, v in report.copied.items()}
    assert copied == {"tigger": ["new.jpg"], "neither": ["IMG_0.jpg"]}
    assert report.already == {"tigger": 4, "misty": 5, "neither": 4}
    after = snapshot(dest)
    kept = [name for name, (digest, _) in before.items() if after[name][0] == digest]
    assert kept == [name for name in before if name != make_dataset.MANIFEST]  # nothing changed or lost
    assert report.counts == {"tigger": 6, "misty": 5, "neither": 5}  # the upload is counted too
    assert "2 new from" in report.summary() and "13 already there" in report.summary()


def test_the_same_photo_in_two_classes_is_not_copied_twice(source, tmp_path):
    (source / "misty" / "dup.jpg").write_bytes((source / "Tigger" / "IMG_1.jpg").read_bytes())
    report = make_dataset.make_dataset(source, tmp_path / "my_pets")
    assert [p.name for p, _ in report.duplicates] == ["dup.jpg"]
    why = report.duplicates[0][1]
    assert "the same photo as Tigger/IMG_1.jpg (labelled tigger there, misty here: which is it?)" in why
    assert not (tmp_path / "my_pets" / "misty" / "dup.jpg").exists()


def test_rebuild_after_an_upload_loses_nothing(source, tmp_path):
    """Lesson 02's upload box adds a photo to data/my_pets only; --replace must keep it (and say so). A photo
    deleted from the source since the last run is moved aside, never deleted."""
    from course_utils.widgets import save_uploads, uploaded_file

    dest = tmp_path / "data" / "my_pets"
    make_dataset.make_dataset(source, dest)
    upload = _jpeg("astronaut")
    saved = save_uploads([uploaded_file("IMG_2.jpg", upload)], dest / "tigger", dataset_root=dest)["saved"]
    assert [p.name for _, p in saved] == ["IMG_2_1.jpg"]  # IMG_2.jpg exists: never overwritten
    gone = (source / "neither" / "r3.jpg").read_bytes()
    (source / "neither" / "r3.jpg").unlink()  # the student removed a photo from the source
    old = snapshot(dest)
    report = make_dataset.make_dataset(source, dest, replace=True)
    assert (dest / "tigger" / "IMG_2_1.jpg").read_bytes() == upload  # the upload is kept
    assert [p.relative_to(dest) for p in report.kept] == [Path("tigger/IMG_2_1.jpg")]
    assert not (dest / "neither" / "r3.jpg").exists()
    [(rel, aside)] = report.moved_aside
    assert (
        rel == Path("neither/r3.jpg")
        and aside.read_bytes() == gone
        and aside.parent.parent.name.startswith("my_pets.removed-")
    )
    new_digests = {digest for digest, _ in snapshot(dest).values()}
    for name, (digest, _) in old.items():  # every file that was in DEST is in the new DEST or moved aside
        assert digest in new_digests or name == "neither/r3.jpg" or name == make_dataset.MANIFEST, name
    text = report.summary()
    assert "kept 1 file(s) that were only in" in text and "tigger/IMG_2_1.jpg" in text
    assert "moved aside 1 photo(s) that are no longer in" in text
    assert sorted(p.name for p in dest.parent.iterdir()) == ["my_pets", aside.parent.parent.name]


def test_rebuild_of_a_folder_made_by_hand_keeps_everything_it_does_not_know(source, tmp_path):
    dest = tmp_path / "my_pets"
    (dest / "tigger").mkdir(parents=True)
    (dest / "tigger" / "mine.jpg").write_bytes(_jpeg("coffee"))
    (dest / "notes.txt").write_text("my notes")
    report = make_dataset.make_dataset(source, dest, replace=True)
    assert (dest / "tigger" / "mine.jpg").read_bytes() == _jpeg("coffee")
    assert (dest / "notes.txt").read_text() == "my notes"
    assert sorted(str(p.relative_to(dest)) for p in report.kept) == ["notes.txt", "tigger/mine.jpg"]
    assert report.counts["tigger"] == 5 and report.moved_aside == []


@pytest.mark.slow  # decodes large photos
def test_large_heic_and_empty_photos_in_the_source(source, tmp_path):
    from photo_files import heic_photo, huge_jpeg, huge_png

    huge_jpeg(source / "Tigger" / "IMG_200MP.jpg")
    huge_png(source / "misty" / "scan.png")
    heic_photo(source / "misty" / "IMG_5.HEIC")
    (source / "neither" / "empty.jpg").write_bytes(b"")
    report = make_dataset.make_dataset(source, tmp_path / "my_pets")  # no DecompressionBombError traceback
    assert "IMG_200MP.jpg" in [p.name for p in report.copied["tigger"]]
    reasons = {p.name: r for p, r in report.skipped}
    assert reasons["scan.png"].startswith("too large to decode safely")
    assert reasons["IMG_5.HEIC"].startswith("HEIC/HEIF photo") and "heif-convert" in reasons["IMG_5.HEIC"]
    assert reasons["empty.jpg"] == "empty file (0 bytes)"


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
    assert "13 photos (13 new from" in out
    assert "skipped neither/.DS_Store" in out and "skipped neither/broken.jpg" in out
    assert make_dataset.main([str(source), "--dest", str(dest)]) == 0  # again: nothing new, nothing lost
    assert "13 photos (0 new from" in capsys.readouterr().out
    assert make_dataset.main([str(tmp_path / "missing"), "--dest", str(dest)]) == 1
    assert "does not exist" in capsys.readouterr().err


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


def test_upload_box_and_script_share_one_name_rule_and_one_duplicate_check(source, tmp_path):
    """Both go through course_utils.folders.add_photos: names compared without case (cat.jpg and Cat.JPG are one
    file on macOS and Windows), and a photo already in any class is never added again."""
    from course_utils.widgets import save_uploads, uploaded_file

    dest = tmp_path / "my_pets"
    upload = save_uploads([uploaded_file("img_1.JPG", _jpeg("astronaut"))], dest / "tigger", dataset_root=dest)
    assert [p.name for _, p in upload["saved"]] == ["img_1.JPG"]
    report = make_dataset.make_dataset(source, dest)
    assert sorted(p.name for p in (dest / "tigger").iterdir()) == [
        "IMG_0.jpg", "IMG_1_1.jpg", "IMG_2.jpg", "IMG_3.jpg", "img_1.JPG"
    ]  # fmt: skip
    assert "renamed Tigger/IMG_1.jpg -> tigger/IMG_1_1.jpg (a photo named IMG_1.jpg is already there)" in (
        report.summary()
    )
    again = save_uploads([uploaded_file("x.png", (source / "misty" / "1.png").read_bytes())], dest / "neither", dest)
    assert again["skipped"] == [("x.png", "the same photo is already saved as misty/1.png")]


@pytest.mark.slow  # a fresh interpreter that loads torch
def test_runs_as_a_plain_script_from_any_folder(source, tmp_path):
    """A thin front door: the installed package, no sys.path changes."""
    import subprocess

    script = ROOT / "data_scripts" / "make_dataset.py"
    assert "sys.path" not in script.read_text()
    dest = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(script), str(source), "--dest", str(dest)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{dest}: 13 photos (13 new from {source}")


def test_without_the_course_installed_it_says_which_python_to_use(tmp_path):
    import subprocess

    from course_utils.paths import DataError

    assert issubclass(make_dataset.DatasetError, DataError)  # the lessons catch the course's data errors
    result = subprocess.run(  # -S: no site-packages, as a Python without the course would be
        [sys.executable, "-S", str(ROOT / "data_scripts" / "make_dataset.py"), "photos"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "make_dataset.py needs the course's package" in result.stderr
    assert ".venv/bin/python data_scripts/make_dataset.py SOURCE" in result.stderr
