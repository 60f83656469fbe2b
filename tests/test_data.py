"""Datasets: Fashion-MNIST (checked, balanced, seeded) and photo folders with every kind of bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import course
from PIL import Image

from course_utils import fashion, fashion_files, folders, images, paths, pets
from course_utils.photos import bundled_photo

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = paths.data_dir()  # where Fashion-MNIST is (read before any test points COURSE_DATA_DIR elsewhere)


def write_photo(path: Path, mode: str = "RGB", size: int = 64, source: str = "chelsea") -> Path:
    """A real photo (scikit-image's), resized and saved in the given mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = bundled_photo(source).resize((size, size))
    if mode == "I;16":
        array = np.asarray(img.convert("L"), dtype=np.uint16) * 257
        Image.fromarray(array).save(path.with_suffix(".png"))
        return path.with_suffix(".png")
    img.convert(mode).save(path)
    return path


@pytest.fixture
def messy_folder(tmp_path) -> Path:
    root = tmp_path / "my_pets"
    write_photo(root / "tigger" / "a.jpg")
    write_photo(root / "tigger" / "gray.png", mode="L", source="coffee")
    write_photo(root / "tigger" / "tiny.png", size=8)
    write_photo(root / "misty" / "rgba.png", mode="RGBA", source="astronaut")
    write_photo(root / "misty" / "deep", mode="I;16", source="rocket")
    write_photo(root / "neither" / "b.jpg", source="coffee")
    (root / "misty" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "tigger" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "neither" / "notes.txt").write_text("not an image")
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_messy_folder_loads_usable_images_and_reports_the_rest(messy_folder, capsys):
    before = snapshot(messy_folder)
    dataset = folders.image_folder_dataset(messy_folder, size=48)
    out = capsys.readouterr().out
    assert dataset.classes == ["misty", "neither", "tigger"]
    assert dataset.scan.counts() == {"misty": 2, "neither": 1, "tigger": 3}
    assert "broken.jpg: file is truncated (incomplete download or copy?)" in out
    assert ".DS_Store: not an image file" in out
    assert "smaller than 32 px" in out
    for i in range(len(dataset)):
        x, _ = dataset[i]
        assert x.shape == (3, 48, 48) and torch.isfinite(x).all()
    assert snapshot(messy_folder) == before  # nothing changed or lost


def test_sixteen_bit_and_rgba_images_become_sensible_rgb(messy_folder):
    deep = images.load_rgb(messy_folder / "misty" / "deep.png")
    assert deep.mode == "RGB" and np.asarray(deep).max() > 128  # not clipped to white or black
    rgba = images.load_rgb(messy_folder / "misty" / "rgba.png")
    assert rgba.mode == "RGB" and rgba.size == (64, 64)


def test_empty_class_folders_are_ignored_with_a_one_line_note(tmp_path, capsys):
    """A folder with nothing you put in it (made by a file manager or an earlier upload box) is not a class."""
    root = tmp_path / "p"
    for name in ("tigger/a.jpg", "tigger/b.jpg", "neither/c.jpg", "neither/d.jpg"):
        write_photo(root / name)
    (root / "misty").mkdir()
    (root / "misty" / ".DS_Store").write_bytes(b"junk")  # Finder's, not yours
    (root / ".ipynb_checkpoints").mkdir()  # JupyterLab's
    dataset = folders.image_folder_dataset(root, size=32)
    notes = [line for line in capsys.readouterr().out.splitlines() if "misty" in line]
    assert notes == ["  note: empty folder(s) ignored, not classes: misty"]
    assert dataset.classes == ["neither", "tigger"] and len(dataset) == 4
    assert sorted(p.name for p in root.iterdir()) == [".ipynb_checkpoints", "misty", "neither", "tigger"]  # kept


def test_class_of_unreadable_files_is_an_error_naming_it(tmp_path):
    write_photo(tmp_path / "p" / "tigger" / "a.jpg")
    write_photo(tmp_path / "p" / "neither" / "a.jpg")
    (tmp_path / "p" / "misty").mkdir()
    (tmp_path / "p" / "misty" / "cat.jpg").write_bytes(b"junk")  # you put it there: it is named
    with pytest.raises(paths.DataError, match="misty .*hold no readable images"):
        folders.scan_image_folder(tmp_path / "p")


def test_single_class_is_an_error(tmp_path):
    write_photo(tmp_path / "p" / "tigger" / "a.jpg")
    with pytest.raises(paths.DataError, match="only one class folder \\(tigger\\)"):
        folders.scan_image_folder(tmp_path / "p")
    (tmp_path / "p" / "misty").mkdir()
    with pytest.raises(paths.DataError, match="only one class folder \\(tigger\\) \\(misty: empty\\)"):
        folders.scan_image_folder(tmp_path / "p")


def test_a_class_with_one_example_cannot_be_split():
    assert folders.stratified_split([0, 0, 1, 1, 1, 1], 0.25, seed=0)[1] != []
    with pytest.raises(paths.DataError, match="class\\(es\\) 1 have a single example: a split needs at least 2"):
        folders.stratified_split([0, 0, 0, 1], 0.25, seed=0)


def test_images_directly_under_root_explain_the_layout(tmp_path):
    write_photo(tmp_path / "p" / "a.jpg")
    write_photo(tmp_path / "p" / "b.jpg")
    with pytest.raises(paths.DataError, match="2 images lie directly in it.*<class name>/<image>"):
        folders.scan_image_folder(tmp_path / "p")


def test_missing_folder_says_how_to_make_it(tmp_path):
    with pytest.raises(paths.DataError, match="does not exist. Make it"):
        folders.scan_image_folder(tmp_path / "nope")


def test_fashion_mnist_is_real_and_checked():
    assert fashion_files.check_fashion_mnist() == []
    images, labels = fashion.load_fashion_mnist(train=False)
    assert images.shape == (10000, 28, 28) and images.dtype == torch.uint8
    assert torch.bincount(labels).tolist() == [1000] * 10


def test_fashion_splits_are_balanced_seeded_disjoint_and_normalized():
    a = fashion.fashion_mnist_splits(n_train=5, n_val=3, n_test=2, size=40, seed=7)
    b = fashion.fashion_mnist_splits(n_train=5, n_val=3, n_test=2, size=40, seed=7)
    assert torch.equal(a["train"].images, b["train"].images)  # seeded
    assert a["train"].class_counts() == {name: 5 for name in fashion.FASHION_CLASSES}
    assert len(a["val"]) == 30 and len(a["test"]) == 20
    train_rows = {row.numpy().tobytes() for row in a["train"].images}
    assert not any(row.numpy().tobytes() in train_rows for row in a["val"].images)  # disjoint
    x, y = a["train"][0]
    assert x.shape == (3, 40, 40) and -2.2 < x.min() < x.max() < 2.7 and 0 <= y < 10
    c = fashion.fashion_mnist_splits(n_train=5, n_test=2, size=40, seed=8)
    assert not torch.equal(a["train"].images, c["train"].images)


def test_fashion_subset_of_classes_is_relabelled():
    split = fashion.fashion_mnist_splits(n_train=4, n_test=2, size=32, classes=[7, 9])
    assert split["train"].classes == ["Sneaker", "Ankle boot"]
    assert sorted(set(split["train"].targets.tolist())) == [0, 1]


def test_pets_stand_in_says_its_source(capsys, isolated_data):
    # isolated_data: no my_pets folder there, so the offline stand-in is used.
    (isolated_data / "FashionMNIST").symlink_to(REAL_DATA / "FashionMNIST")
    data = pets.pets_data(size=32, n_per_class=6, allow_download=False)
    out = capsys.readouterr().out
    assert "Source: offline stand-in from Fashion-MNIST: tigger = Shirt, misty = Pullover" in out
    assert data.classes == ["misty", "neither", "tigger"]
    assert torch.bincount(data.train.targets).tolist() == [6, 6, 6]


def test_pets_uses_your_photos_when_present(messy_folder, capsys):
    write_photo(messy_folder / "neither" / "c.jpg", source="rocket")
    data = pets.pets_data(size=32, root=messy_folder)
    assert "Source: your photos" in capsys.readouterr().out
    assert data.classes == ["misty", "neither", "tigger"]
    assert len(data.train) + len(data.val) == 7
    every_class = {0, 1, 2}
    assert set(pets.dataset_targets(data.train)) == set(pets.dataset_targets(data.val)) == every_class


def test_too_few_photos_say_the_minimum_per_class_before_any_training(messy_folder):
    """Lesson 08 once reported 1.000 accuracy on one validation photo; now it says what to add instead."""
    with pytest.raises(paths.DataError) as caught:
        pets.pets_data(size=32, root=messy_folder, verbose=False)  # neither: 1 readable photo
    lines = str(caught.value).splitlines()
    assert lines[0] == (
        f"Too few photos in {messy_folder}: this needs at least 2 readable photos per class (one to train on and one "
        "to validate on); you have misty 2, neither 1, tigger 3."
    )
    assert lines[1].startswith("Add at least 1 more to neither (a few dozen per class")
    assert lines[1].endswith("then run this cell and every cell below it again.") and len(lines) == 2
    lesson_08 = "(?s)at least 3 .*training, validation and test.*1 more to misty, 2 more to neither"
    with pytest.raises(paths.DataError, match=lesson_08):
        pets.pets_data(size=32, root=messy_folder, verbose=False, min_per_class=3)  # lesson 08 splits again


def test_only_empty_class_folders_fall_back_with_a_note(capsys, isolated_data):
    """data/my_pets/tigger/ made but empty (an older upload box did that on Save with nothing chosen)."""
    (isolated_data / "FashionMNIST").symlink_to(REAL_DATA / "FashionMNIST")
    for name in ("tigger", "misty"):
        (isolated_data / "my_pets" / name).mkdir(parents=True)
    data = pets.pets_data(size=32, n_per_class=6, allow_download=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"Note: the class folders in {isolated_data / 'my_pets'} hold no photos yet, so they")
    assert "upload box of lesson 02" in lines[0] and lines[1].startswith("Source: offline stand-in")
    assert data.source.startswith("offline stand-in")


def test_a_photo_folder_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(paths.DataError, match="the photo folder .*/nope does not exist. Check the path"):
        pets.pets_data(size=32, root=tmp_path / "nope", allow_download=False, verbose=False)


def test_install_from_gz_rejects_wrong_files_and_places_nothing(tmp_path):
    source = tmp_path / "debian"
    source.mkdir()
    for name in fashion_files.FASHION_FILES:
        with gzip.open(source / f"{name}.gz", "wb") as handle:
            handle.write(b"\x00" * 100)
    raw = tmp_path / "raw"
    with pytest.raises(paths.DataError, match="does not hold the real Fashion-MNIST"):
        fashion_files.install_fashion_mnist_from_gz(source, raw)
    assert [p for p in raw.iterdir()] == []


def test_fetch_data_script_installs_from_debian_files_offline(tmp_path):
    if not fashion_files.DEBIAN_FASHION_DIR.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (make test installs it)")
    env = {"COURSE_DATA_DIR": str(tmp_path), "COURSE_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = course("fetch", "data", env=env)
    assert result.returncode == 0, result.stderr
    assert "installed from /usr/share/datasets/fashion-mnist" in result.stdout
    assert fashion_files.check_fashion_mnist(tmp_path / "FashionMNIST" / "raw") == []
    again = course("fetch", "data", env=env)
    assert "ready in" in again.stdout


def test_fetch_data_script_asks_for_the_debian_package_when_nothing_works(tmp_path):
    env = {"COURSE_DATA_DIR": str(tmp_path), "COURSE_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = course("fetch", "data", "--debian-dir", str(tmp_path / "none"), env=env)
    assert result.returncode == 3
    assert "apt-get install dataset-fashion-mnist" in result.stderr


def run_cells(notebook: str, cell_ids: list[str], **overrides) -> dict:
    """Run some cells of a lesson as the student's kernel would, the parameters cell first, then ``overrides``."""
    import json

    cells = {c.get("id"): c for c in json.loads((ROOT / "notebooks" / notebook).read_text())["cells"]}
    namespace: dict = {}
    for i, cell_id in enumerate(["c01", *cell_ids]):
        exec(compile("".join(cells[cell_id]["source"]), f"{notebook}:{cell_id}", "exec"), namespace)
        if i == 0:
            namespace.update(overrides)
    return namespace


@pytest.mark.parametrize(
    ("notebook", "cells", "tiggers", "needed"),
    [
        ("02_scenario_a_small_data.ipynb", ["c17"], 1, 2),
        ("08_validate_augment_schedule.ipynb", ["c03", "c05", "c06"], 2, 3),
        ("09_save_predict_explain.ipynb", ["s03"], 2, 3),
    ],
)
def test_a_lesson_with_too_few_photos_says_what_to_add_and_goes_on(notebook, cells, tiggers, needed, tmp_path, capsys):
    """Lesson 08 once trained on 7 photos and reported 1.000 accuracy on a single validation photo."""
    (tmp_path / "FashionMNIST").symlink_to(REAL_DATA / "FashionMNIST")
    root = tmp_path / "my_pets"
    names = ["misty/1.jpg", "misty/2.jpg", "neither/1.jpg", "neither/2.jpg", "neither/3.jpg"]
    for k, name in enumerate(names + [f"tigger/{k}.jpg" for k in range(tiggers)]):
        write_photo(root / name, source=["chelsea", "coffee", "rocket", "astronaut"][k % 4])
    settings = dict(MY_PHOTOS=str(root), ALLOW_DOWNLOAD=False, N_PER_CLASS=6, IMAGE_SIZE=32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COURSE_DATA_DIR", str(tmp_path))
        namespace = run_cells(notebook, cells, **settings)
    out = capsys.readouterr().out
    assert "Traceback" not in out
    assert f"Your photos are not used yet. Too few photos in {root}: this needs at least {needed} readable" in out
    assert "Source: offline stand-in from Fashion-MNIST" in out
    assert namespace["pets"].source.startswith("offline stand-in")
    if notebook.startswith("08"):
        assert "every class is in train and in validation: True" in out
    if notebook.startswith("09"):  # the stand-in split three ways and its features computed, every class in validation
        assert set(namespace["val_y"].tolist()) == set(range(len(namespace["CLASSES"])))
        assert len(namespace["val_f"]) == len(namespace["val_y"])
