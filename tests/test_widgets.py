"""Widget logic in plain Python: the activation explorer and the photo upload box."""

from __future__ import annotations

import html
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from course_utils import widgets
from course_utils.explore import activations_by_stage, cosine_neighbours, one_nn_accuracy

FILES = Path(__file__).resolve().parent / "files"


@pytest.fixture
def acts():
    generator = torch.Generator().manual_seed(0)
    return {"early": torch.rand(4, 16, 16, generator=generator), "late": torch.rand(32, 2, 2, generator=generator)}


def png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def test_channel_image_is_the_channel_scaled_to_unit_range(acts):
    img = widgets.channel_image(acts, "late", 7)
    raw = acts["late"][7].numpy()
    assert img.min() == 0 and img.max() == 1
    np.testing.assert_allclose(img, (raw - raw.min()) / (raw.max() - raw.min()), rtol=1e-6)
    assert widgets.channel_image({"flat": torch.ones(1, 3, 3)}, "flat", 0).tolist() == [[0.0] * 3] * 3


def test_channel_image_errors_name_the_choices(acts):
    with pytest.raises(KeyError, match="early, late"):
        widgets.channel_image(acts, "middle", 0)
    with pytest.raises(IndexError, match="4 channels"):
        widgets.channel_image(acts, "early", 4)


def test_explorer_follows_layer_and_channel_choices(acts):
    box = widgets.activation_explorer(acts, size=64)
    assert box.channel.max == 3 and box.caption.value.startswith("early: channel 0 of 4")
    first = box.picture.value
    box.channel.value = 2
    assert box.picture.value != first and png_size(box.picture.value) == (64, 64)
    box.layer.value = "late"
    assert box.channel.max == 31 and "late: channel 2 of 32, 2x2" in box.caption.value
    box.channel.value = 31
    box.layer.value = "early"  # channel 31 does not exist there: clamped
    assert box.channel.value == 3 and box.caption.value.startswith("early: channel 3 of 4")
    assert box.picture.value == widgets.to_png(widgets.channel_image(acts, "early", 3), 64)


def test_activations_by_stage_on_a_real_backbone():
    from course_utils.backbones import load_backbone

    model = load_backbone("resnet18", pretrained=False)
    acts = activations_by_stage(model, torch.rand(3, 64, 64))
    assert list(acts) == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert tuple(acts["stem"].shape) == (64, 32, 32) and tuple(acts["layer4"].shape) == (512, 2, 2)
    assert not model._forward_hooks and not model.relu._forward_hooks  # hooks removed


def test_nearest_neighbours_and_one_nn_accuracy():
    refs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    queries = torch.tensor([[2.0, 0.1], [0.1, 3.0]])
    assert cosine_neighbours(queries, refs, k=1)[:, 0].tolist() == [0, 1]
    assert one_nn_accuracy(refs, torch.tensor([0, 1, 2]), queries, torch.tensor([0, 2])) == 0.5


def _jpeg(name: str = "chelsea") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(getattr(skdata, name)()).resize((40, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_save_uploads_keeps_photos_and_skips_the_rest(tmp_path):
    photo = _jpeg()
    files = [
        widgets.uploaded_file("cat.jpg", photo),
        widgets.uploaded_file(".DS_Store", b"\0\0\0\1Bud1"),
        widgets.uploaded_file("half.jpg", photo[: len(photo) // 3]),
        widgets.uploaded_file("../../evil.jpg", _jpeg("coffee")),
        widgets.uploaded_file("IMG_7.HEIC", (FILES / "chelsea.heic").read_bytes()),
        widgets.uploaded_file("empty.jpg", b""),
    ]
    report = widgets.save_uploads(files, tmp_path / "tigger")
    assert [(name, p.name) for name, p in report["saved"]] == [("cat.jpg", "cat.jpg"), ("../../evil.jpg", "evil.jpg")]
    assert all(p.parent == tmp_path / "tigger" for _, p in report["saved"])
    reasons = dict(report["skipped"])
    assert list(reasons) == [".DS_Store", "half.jpg", "IMG_7.HEIC", "empty.jpg"]
    assert reasons["half.jpg"].startswith("file is truncated (incomplete download or copy?)")
    assert reasons["IMG_7.HEIC"].startswith("HEIC/HEIF photo") and reasons["empty.jpg"] == "empty file (0 bytes)"
    assert (tmp_path / "tigger" / "cat.jpg").read_bytes() == photo
    other = _jpeg("rocket")
    again = widgets.save_uploads([widgets.uploaded_file("cat.jpg", other)], tmp_path / "tigger")
    assert [p.name for _, p in again["saved"]] == ["cat_1.jpg"]  # another photo with the same name: never overwrites
    assert sorted(p.name for p in (tmp_path / "tigger").iterdir()) == ["cat.jpg", "cat_1.jpg", "evil.jpg"]


def test_the_same_photo_is_refused_in_any_class_folder(tmp_path):
    """Saved twice, one photo could land in training and in validation: the check compares the bytes (sha256)."""
    photo = _jpeg()
    first = widgets.save_uploads([widgets.uploaded_file("cat.jpg", photo)], tmp_path / "tigger", dataset_root=tmp_path)
    assert len(first["saved"]) == 1
    files = [
        widgets.uploaded_file("copy of cat.jpg", photo),
        widgets.uploaded_file("new.jpg", _jpeg("coffee")),
        widgets.uploaded_file("new again.jpg", _jpeg("coffee")),
    ]
    report = widgets.save_uploads(files, tmp_path / "misty", dataset_root=tmp_path)
    assert [p.name for _, p in report["saved"]] == ["new.jpg"]
    assert report["skipped"] == [
        ("copy of cat.jpg", "the same photo is already saved as tigger/cat.jpg"),
        ("new again.jpg", "the same photo is already saved as misty/new.jpg"),
    ]
    assert sorted(p.name for p in (tmp_path / "misty").iterdir()) == ["new.jpg"]


def test_upload_report_says_what_was_saved_where_and_what_to_do_next(tmp_path):
    report = widgets.save_uploads(
        [widgets.uploaded_file("My Cat (1).jpg", _jpeg()), widgets.uploaded_file("x.txt", b"hi")], tmp_path / "misty"
    )
    text = widgets.format_upload_report(report, dataset_cell="the pets_data cell")
    assert text.splitlines() == [
        "Saved 1 photo(s):",
        "  My Cat (1).jpg -> misty/My_Cat_1_.jpg  (renamed: My Cat (1).jpg -> My_Cat_1_.jpg)",
        "Not saved: 1 file(s):",
        "  x.txt: not an image file (extension '.txt')",
        "Next: run the pets_data cell and every cell below it (click that cell, then Run > Run Selected Cell and "
        "All Below), so that training sees the new photos.",
    ]


def test_saving_nothing_makes_no_folder_and_says_what_to_do(tmp_path):
    """Save pressed with nothing chosen, or a selection too large for Jupyter's connection (it never arrives)."""
    report = widgets.save_uploads([], tmp_path / "misty", dataset_root=tmp_path)
    assert report == {"saved": [], "skipped": []} and list(tmp_path.iterdir()) == []
    text = widgets.format_upload_report(report, root=tmp_path)
    assert text.startswith("No photos arrived. Choose photos first (the 'choose photos' button), then press Save.")
    assert "too large for the notebook's connection" in text and "10 MiB" in text and "fewer at a time" in text
    assert f"copy the photos into {tmp_path}/<class>/" in text
    box = widgets.photo_upload_widget(tmp_path / "my_pets")
    box.save_button.click()
    box.save_button.click()
    assert not (tmp_path / "my_pets").exists()  # no empty class folder for a lesson to trip over
    assert "No photos arrived" in box.status_text and "Traceback" not in box.status_text
    # the chooser of a dropped selection is replaced: a new one (in the box's row) takes the next choice
    first = box.upload
    box.save_button.click()
    assert box.upload is not first and first.comm is None  # the old chooser is closed
    assert any(child is box.upload for w in box.children for child in getattr(w, "children", (w,)))


def test_unusable_uploads_make_no_folder_and_a_name_without_suffix_gets_one(tmp_path):
    report = widgets.save_uploads([widgets.uploaded_file("notes.txt", b"hello")], tmp_path / "tigger", tmp_path)
    assert report["saved"] == [] and not (tmp_path / "tigger").exists()
    report = widgets.save_uploads([widgets.uploaded_file("photo", _jpeg())], tmp_path / "tigger", tmp_path)
    assert [p.name for _, p in report["saved"]] == ["photo.jpg"]  # the dataset reads it: it has a photo's suffix
    gif = io.BytesIO()
    Image.fromarray(skdata.chelsea()).resize((40, 30)).save(gif, format="GIF")
    report = widgets.save_uploads([widgets.uploaded_file("cat.gif", gif.getvalue())], tmp_path / "misty", tmp_path)
    assert report["skipped"] == [("cat.gif", "a GIF image, which the dataset does not read: save it as JPEG or PNG")]
    assert not (tmp_path / "misty").exists()


def test_an_upload_that_arrived_incomplete_is_named(tmp_path):
    item = dict(widgets.uploaded_file("cat.jpg", _jpeg()))
    item["size"] += 1000  # the browser's size of the file, more than Python received
    report = widgets.save_uploads([item], tmp_path / "tigger")
    assert report["saved"] == [] and report["skipped"][0][1].startswith("arrived incomplete (")
    assert report["skipped"][0][1].endswith("bytes): choose it again")


def test_names_differing_only_in_case_never_share_a_file(tmp_path):
    """On macOS and Windows Cat.JPG and cat.jpg are one file: the second gets a new name everywhere."""
    first = widgets.save_uploads([widgets.uploaded_file("Cat.JPG", _jpeg())], tmp_path / "tigger")
    second = widgets.save_uploads([widgets.uploaded_file("cat.jpg", _jpeg("coffee"))], tmp_path / "tigger")
    assert [p.name for _, p in first["saved"] + second["saved"]] == ["Cat.JPG", "cat_1.jpg"]


def test_upload_widget_save_button_writes_into_the_chosen_class(tmp_path):
    box = widgets.photo_upload_widget(tmp_path, dataset_cell="the dataset cell")
    box.label.value = "misty"
    box.upload.value = (widgets.uploaded_file("m.jpg", _jpeg(), "image/jpeg"),)
    box.save_button.click()
    assert [p.name for p in (tmp_path / "misty").iterdir()] == ["m.jpg"]
    assert box.upload.value == ()
    assert box.status_text.splitlines()[1:] == [
        "Saved 1 photo(s):",
        "  m.jpg -> misty/m.jpg",
        "Next: run the dataset cell and every cell below it (click that cell, then Run > Run Selected Cell and All "
        "Below), so that training sees the new photos.",
    ]
    assert html.unescape(box.status.value).count("m.jpg -> misty/m.jpg") == 1  # shown as readable text
    box.label.value = "tigger"
    box.upload.value = (widgets.uploaded_file("same.jpg", _jpeg(), "image/jpeg"),)
    box.save_button.click()
    assert "same.jpg: the same photo is already saved as misty/m.jpg" in box.status_text
    assert not (tmp_path / "tigger").exists() or list((tmp_path / "tigger").iterdir()) == []
    box.save_button.click()  # nothing chosen
    assert "Choose photos first" in box.status_text


def test_predict_box_gives_each_photo_upright_to_the_classifier_and_names_unreadable_ones(tmp_path):
    from photo_files import phone_photo

    phone_photo(tmp_path / "IMG_1.jpg", "china", orientation=6)  # stored 427 x 640, displayed 640 x 427
    seen = []

    def classify(photo):
        seen.append(photo.size)
        return [("wide" if photo.width > photo.height else "tall", 0.75), ("other", 0.25)]

    box = widgets.photo_predict_widget(classify)
    box.upload.value = (
        widgets.uploaded_file("IMG_1.jpg", (tmp_path / "IMG_1.jpg").read_bytes(), "image/jpeg"),
        widgets.uploaded_file("IMG_2.HEIC", (FILES / "chelsea.heic").read_bytes()),
    )
    box.predict_button.click()
    assert seen == [(640, 427)]
    lines = box.status_text.splitlines()
    assert lines[0] == "IMG_1.jpg: wide 0.75, other 0.25"
    assert lines[1].startswith("IMG_2.HEIC: not read: HEIC/HEIF photo")
    assert box.upload.value == () and "IMG_1.jpg: wide 0.75" in html.unescape(box.status.value)
    assert box.predict() == [] and "Choose photos first" in box.status_text
