"""Lesson 02's online source: the Oxford-IIIT Pet subset, downloaded from a real HTTP server on 127.0.0.1.

The server serves a small archive in the real format (images.tar.gz with images/<Breed>_<n>.jpg, and
annotations.tar.gz with annotations/list.txt, trainval.txt and test.txt), and torchvision's own OxfordIIITPet
downloads, checks (md5) and extracts it: only its two URLs are pointed at the local server.
"""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest
import torch
from photo_files import ORIENTATION, truncated_jpeg
from PIL import Image
from torchvision.datasets import OxfordIIITPet

from course_utils import paths, pets
from course_utils.photos import bundled_photo
from course_utils.preprocess import photo_transform

# breed -> (class id in list.txt, species: 1 cat / 2 dog, bundled photo its images are made from)
BREEDS = {
    "Abyssinian": (1, 1, "chelsea"),
    "Bengal": (2, 1, "china"),
    "Russian_Blue": (3, 1, "coffee"),
    "beagle": (4, 2, "rocket"),
}
REAL_DATA = paths.data_dir()  # Fashion-MNIST, for the stand-in (read before a test isolates COURSE_DATA_DIR)
PER_BREED = {"Abyssinian": 6, "Bengal": 8, "Russian_Blue": 10, "beagle": 6}


def _jpeg(img: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", **kwargs)
    return buffer.getvalue()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def pet_archives(tmp_path) -> tuple[bytes, bytes]:
    """images.tar.gz and annotations.tar.gz as the Oxford-IIIT Pet site serves them (few, small photos).

    Every Bengal photo is stored sideways with EXIF orientation 6, like a phone photo; one more Bengal file is
    a truncated JPEG (the real archive has a few broken files too)."""
    images, lines = {}, []
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    for breed, (class_id, species, photo) in BREEDS.items():
        base = bundled_photo(photo).resize((72, 48))
        for n in range(1, PER_BREED[breed] + 1):
            if breed == "Bengal":
                data = _jpeg(base.transpose(Image.Transpose.ROTATE_90), quality=80 + n, exif=exif)
            else:
                data = _jpeg(base.crop((n, 0, 72 - n, 48 - n)).resize((72, 48)), quality=90)
            images[f"images/{breed}_{n}.jpg"] = data
            lines.append(f"{breed}_{n} {class_id} {species} {n}")
    images[f"images/Bengal_{PER_BREED['Bengal'] + 1}.jpg"] = truncated_jpeg(tmp_path / "cut.jpg").read_bytes()
    lines.append(f"Bengal_{PER_BREED['Bengal'] + 1} 2 1 {PER_BREED['Bengal'] + 1}")
    header = "#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n#SPECIES: 1:Cat 2:Dog\n#BREED ID: 1-25:Cat\n"
    annotations = {
        "annotations/list.txt": (header + "\n".join(lines) + "\n").encode(),
        "annotations/trainval.txt": ("\n".join(lines) + "\n").encode(),
        "annotations/test.txt": ("\n".join(lines[:3]) + "\n").encode(),
    }
    return _tar_gz(images), _tar_gz(annotations)


@pytest.fixture
def pet_server(http_server, monkeypatch, tmp_path):
    """Serve the archives on 127.0.0.1 and point torchvision's OxfordIIITPet at them; return the request log."""
    images, annotations = pet_archives(tmp_path)
    resources = tuple(
        (http_server(f"/vgg/data/pets/data/{name}", body), hashlib.md5(body).hexdigest())
        for name, body in (("images.tar.gz", images), ("annotations.tar.gz", annotations))
    )
    monkeypatch.setattr(OxfordIIITPet, "_RESOURCES", resources)
    return resources


def test_online_source_downloads_relabels_and_checks_the_pet_photos(pet_server, isolated_data, capsys):
    data = pets.pets_data(size=32, n_per_class=4, seed=0, allow_download=True)
    out = capsys.readouterr().out
    assert "Source: Oxford-IIIT Pet subset (Oxford-IIIT Pet: Bengal -> tigger, Russian Blue -> misty" in out
    assert "skipped 1 unusable file(s): Bengal_9.jpg: file is truncated (incomplete download or copy?)" in out
    assert (isolated_data / "oxford-iiit-pet" / "images" / "Bengal_1.jpg").is_file()  # downloaded and extracted
    assert data.classes == ["misty", "neither", "tigger"]
    labels = torch.tensor(data.train.targets + data.val.targets)
    # 4 + max(5, 4 // 3) = 9 wanted per class; Bengal has only 8 readable photos
    assert torch.bincount(labels, minlength=3).tolist() == [9, 9, 8]
    assert set(data.train.targets) == set(data.val.targets) == {0, 1, 2}  # every class on both sides
    upright = photo_transform(32)(bundled_photo("china").resize((72, 48)))
    sideways = photo_transform(32)(bundled_photo("china").resize((72, 48)).transpose(Image.Transpose.ROTATE_90))
    tigger = [x for split in (data.train, data.val) for x, y in (split[i] for i in range(len(split))) if y == 2]
    assert len(tigger) == 8
    for x in tigger:  # the phone-style photos arrive upright: the one loader read them
        assert x.shape == (3, 32, 32)
        assert (x - upright).abs().mean() < 0.1 < (x - sideways).abs().mean()


def test_a_second_call_uses_the_files_already_there(pet_server, isolated_data, capsys, monkeypatch):
    pets.pets_data(size=32, n_per_class=4, allow_download=True)
    monkeypatch.setattr(OxfordIIITPet, "_RESOURCES", (("http://127.0.0.1:9/nothing-here", "0" * 32),) * 2)
    data = pets.pets_data(size=32, n_per_class=4, allow_download=True, verbose=False)
    assert len(data.train) + len(data.val) == 26


def test_a_failed_download_says_why_and_falls_back_to_the_stand_in(http_server, isolated_data, monkeypatch, capsys):
    (isolated_data / "FashionMNIST").symlink_to(REAL_DATA / "FashionMNIST")
    url = http_server("/vgg/data/pets/data/images.tar.gz", b"not a tar archive")
    monkeypatch.setattr(OxfordIIITPet, "_RESOURCES", ((url, "0" * 32), (url, "0" * 32)))
    data = pets.pets_data(size=32, n_per_class=4, allow_download=True)
    out = capsys.readouterr().out
    assert "Oxford-IIIT Pet not available (RuntimeError: File not found or corrupted." in out
    assert "using the offline stand-in" in out and data.source.startswith("offline stand-in from Fashion-MNIST")
