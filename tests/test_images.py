"""The one photo check and loader (course_utils.images), on real files of every kind a student brings."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from photo_files import heic_photo, huge_jpeg, huge_png, jpeg_bytes, phone_photo, truncated_jpeg
from PIL import Image

from course_utils import folders, images
from course_utils.backbones import imagenet_categories, load_backbone
from course_utils.photos import top_k


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute pixel difference (0-255) of two same-size RGB photos."""
    return float(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).mean())


def written(path, data: bytes):
    path.write_bytes(data)
    return path


def test_phone_photo_is_loaded_upright(tmp_path):
    path = tmp_path / "IMG_0001.jpg"
    original = phone_photo(path, "china", orientation=6)
    with Image.open(path) as raw:
        assert raw.size == (427, 640)  # stored sideways
        sideways = raw.convert("RGB")
    upright = images.load_rgb(path)
    assert upright.size == (640, 427) == original.size
    assert difference(upright, sideways.transpose(Image.Transpose.ROTATE_270)) == 0.0  # turned as the tag says
    assert difference(upright, original) < 3.0  # the photo as taken (JPEG noise aside)
    check = images.check_photo(path)
    assert check.problem == "" and check.rotated and check.size == (640, 427)


def test_orientation_changes_what_the_pretrained_model_sees(tmp_path):
    """Ignoring the tag is not cosmetic: ImageNet's MobileNetV2 calls the upright photo a palace and the
    sideways one something else."""
    path = tmp_path / "IMG_0002.jpg"
    phone_photo(path, "china", orientation=6)
    model, categories = load_backbone("mobilenet_v2"), imagenet_categories()
    honoured = top_k(model, images.load_rgb(path), categories, k=1)[0][0]
    ignored = top_k(model, Image.open(path).convert("RGB"), categories, k=1)[0][0]
    assert honoured == "palace"
    assert ignored != honoured


@pytest.mark.parametrize("orientation", [3, 8])
def test_other_orientations_are_honoured_too(tmp_path, orientation):
    path = tmp_path / f"o{orientation}.jpg"
    original = phone_photo(path, "rocket", orientation=orientation)
    assert difference(images.load_rgb(path), original) < 3.0
    assert difference(Image.open(path).convert("RGB").resize(original.size), original) > 20.0  # stored turned


@pytest.mark.slow  # a 200-megapixel JPEG
def test_a_200_megapixel_jpeg_is_decoded_reduced_without_a_traceback(tmp_path):
    path = huge_jpeg(tmp_path / "IMG_huge.jpg")
    limit = Image.MAX_IMAGE_PIXELS
    assert 2 * limit < 15000 * 14000
    with pytest.raises(Image.DecompressionBombError):  # Pillow alone refuses to open it
        Image.open(path)
    check = images.check_photo(path)
    assert check.problem == "" and check.reduced_from == (15000, 14000) and check.size == (15000, 14000)
    img = images.load_rgb(path)
    assert img.mode == "RGB" and img.size == (1875, 1750)  # 1/8: decoded from the JPEG's coarse scale
    assert limit == Image.MAX_IMAGE_PIXELS  # Pillow's own limit is left as it was


@pytest.mark.slow  # writes and reads a huge image
def test_a_huge_png_is_skipped_with_a_reason(tmp_path):
    path = huge_png(tmp_path / "scan.png")
    problem = images.image_problem(path)
    assert problem.startswith("too large to decode safely (15000 x 14000 = 210 megapixels, PNG")
    assert "smaller copy" in problem and "as JPEG" in problem
    with pytest.raises(images.PhotoError, match="too large"):
        images.load_rgb(path)


def test_the_limit_is_pillows_own_setting(tmp_path, monkeypatch):
    """The same rule at any limit: a 640 x 427 JPEG over a lowered limit is read at half size."""
    path = tmp_path / "p.jpg"
    phone_photo(path, "china", orientation=6)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    assert images.check_photo(path).reduced_from == (427, 640)
    assert images.load_rgb(path).size == (320, 214)  # upright, 1/2
    assert Image.MAX_IMAGE_PIXELS == 100_000


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: heic_photo(p / "IMG_0003.HEIC"), "HEIC/HEIF photo"),
        (lambda p: heic_photo(p / "renamed.jpg"), "HEIC/HEIF photo"),  # found by its content, not its name
        (lambda p: truncated_jpeg(p / "half.jpg"), "file is truncated (incomplete download or copy?)"),
        (lambda p: written(p / "zero.jpg", b""), "empty file (0 bytes)"),
        (lambda p: written(p / ".DS_Store", b"\0\0\0\1Bud1"), "hidden or system file"),
        (lambda p: written(p / "notes.txt", b"hello"), "not an image file (extension '.txt')"),
        (lambda p: written(p / "fake.jpg", b"GIF? no, text"), "cannot be read as an image"),
    ],
    ids=["heic", "heic-renamed", "truncated", "empty", "ds-store", "text", "garbage"],
)
def test_reasons_a_student_can_act_on(tmp_path, make, expected):
    path = make(tmp_path)
    problem = images.image_problem(path)
    assert expected in problem
    with pytest.raises(images.PhotoError, match=expected.split(" (")[0].replace("?", ".")):
        images.load_rgb(path)
    if expected.startswith("HEIC"):
        assert "Most Compatible" in problem and "heif-convert" in problem  # how to convert


def test_uploaded_bytes_get_the_same_check():
    photo = jpeg_bytes()
    assert images.image_problem(photo, name="cat.jpg") == ""
    assert images.image_problem(photo[: len(photo) // 3], name="cat.jpg").startswith("file is truncated")
    assert images.image_problem(b"", name="cat.jpg") == "empty file (0 bytes)"
    heic = (Path(__file__).parent / "files" / "chelsea.heic").read_bytes()
    assert images.image_problem(heic, name="IMG_1.jpg").startswith("HEIC/HEIF photo")
    assert images.load_rgb(photo).size == (96, 64)


@pytest.mark.slow  # decodes photos of many megapixels
def test_folder_scan_names_tiny_rotated_and_large_photos(tmp_path):
    root = tmp_path / "my_pets"
    (root / "misty").mkdir(parents=True)
    Image.open(io.BytesIO(jpeg_bytes(size=(20, 14)))).save(root / "misty" / "tiny.jpg")
    phone_photo(root / "misty" / "sideways.jpg")
    huge_jpeg(root / "tigger" / "huge.jpg")
    huge_png(root / "tigger" / "scan.png")
    heic_photo(root / "neither" / "IMG_1.heic")
    truncated_jpeg(root / "neither" / "half.jpg")
    (root / "neither" / "ok.jpg").write_bytes(jpeg_bytes("coffee"))
    scan = folders.scan_image_folder(root)
    text = scan.summary()
    assert scan.counts() == {"misty": 2, "neither": 1, "tigger": 1}
    assert "1 image(s) smaller than 32 px on a side, upscaled (blurry); use larger photos if you can: " in text
    assert "if you can: misty/tiny.jpg" in text
    assert "turned upright by their EXIF orientation tag (as your phone shows them): misty/sideways.jpg" in text
    assert "read at reduced size" in text and "tigger/huge.jpg" in text
    assert "skipped tigger/scan.png: too large to decode safely" in text
    assert "skipped neither/IMG_1.heic: HEIC/HEIF photo" in text
    assert "skipped neither/half.jpg: file is truncated" in text
    dataset = folders.image_folder_dataset(root, size=32, verbose=False)
    shapes = {tuple(dataset[i][0].shape) for i in range(len(dataset))}
    assert shapes == {(3, 32, 32)}


def test_photo_crops_are_seeded_normalized_views_of_each_photo():
    import torch

    from course_utils import explore
    from course_utils.photos import bundled_photos, photo_crops
    from course_utils.preprocess import IMAGENET_MEAN, IMAGENET_STD

    photos = bundled_photos(("chelsea", "coffee"))
    crops, labels, names = photo_crops(photos, views=3, size=24, seed=5)
    assert crops.shape == (6, 3, 24, 24) and labels.tolist() == [0, 0, 0, 1, 1, 1] and names == ["chelsea", "coffee"]
    assert torch.equal(photo_crops(photos, 3, 24, seed=5)[0], crops) and not torch.equal(crops[0], crops[1])
    pixels = crops * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5  # normalized back to [0, 1] pixels
    assert explore.photo_crops is photo_crops  # lesson 01 imports it from explore: one function
