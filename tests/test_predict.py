"""Saved classifiers (course_utils.predict): one file, loaded with weights_only=True, clear errors, and the
`python -m course_utils.predict` / `course predict` command on real photo files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from photo_files import heic_photo, huge_jpeg, jpeg_bytes, phone_photo, truncated_jpeg
from PIL import Image
from torchvision import transforms

from course_utils import predict
from course_utils.backbones import imagenet_categories, load_backbone
from course_utils.photos import bundled_photo
from course_utils.preprocess import IMAGENET_MEAN, IMAGENET_STD, photo_transform

CLASSES = ["misty", "neither", "tigger"]


def small_classifier(backbone: str = "mobilenet_v2", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = predict.build_network(backbone, len(CLASSES))
    with torch.no_grad():  # BatchNorm statistics that are not the defaults, so a lost buffer would show
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def imagenet_model_file(tmp_path_factory) -> Path:
    """The pretrained MobileNetV2 with its own ImageNet head, saved as a 1000-class classifier."""
    path = tmp_path_factory.mktemp("models") / "imagenet.pt"
    predict.save_classifier(path, load_backbone("mobilenet_v2"), imagenet_categories(), "mobilenet_v2", 224, 256)
    return path


def test_one_file_holds_weights_classes_backbone_and_preprocessing(tmp_path):
    model = small_classifier()
    path = predict.save_classifier(tmp_path / "m.pt", model, CLASSES, "mobilenet_v2", size=64, info={"val_acc": 0.9})
    record = torch.load(path, weights_only=True)  # plain data only: no code is unpickled
    assert record["format"] == "course-classifier" and record["backbone"] == "mobilenet_v2"
    assert record["classes"] == CLASSES
    assert record["preprocess"] == {"resize": 64, "size": 64, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # written atomically: no temporary file left
    loaded = predict.load_classifier(path)
    assert loaded.classes == CLASSES and loaded.info == {"val_acc": 0.9} and not loaded.model.training
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))  # the same network, BatchNorm statistics included


def test_the_saved_preprocessing_is_what_prediction_uses(tmp_path):
    path = predict.save_classifier(
        tmp_path / "m.pt", small_classifier(), CLASSES, "mobilenet_v2", 40, resize=48, mean=(0.5,) * 3, std=(0.25,) * 3
    )
    classifier = predict.load_classifier(path)
    photo = bundled_photo("chelsea")
    pixels = transforms.ToTensor()(transforms.CenterCrop(40)(transforms.Resize(48)(photo)))
    assert torch.allclose(classifier.transform()(photo), (pixels - 0.5) / 0.25, atol=1e-6)
    with torch.no_grad():
        expected = classifier.model(((pixels - 0.5) / 0.25).unsqueeze(0)).softmax(1)[0]
    top = classifier.top(photo, k=3)
    assert [name for name, _ in top] == [CLASSES[i] for i in expected.argsort(descending=True)]
    assert abs(top[0][1] - float(expected.max())) < 1e-6


def test_serving_transforms_a_photo_exactly_as_training_did(tmp_path):
    photo = bundled_photo("chelsea")  # a real photo, 451 x 300
    for size, resize, mean, std in ((40, None, IMAGENET_MEAN, IMAGENET_STD), (64, 72, (0.5,) * 3, (0.25,) * 3)):
        path = predict.save_classifier(
            tmp_path / "m.pt", small_classifier(), CLASSES, "mobilenet_v2", size, resize, mean, std
        )
        served = predict.load_classifier(path).transform()(photo)
        trained = photo_transform(size, resize, mean, std)(photo)  # what folders / pets train with
        assert served.shape == (3, size, size) and torch.equal(served, trained)


def test_a_truly_truncated_model_file_is_named_with_whole_words(tmp_path):
    good = predict.save_classifier(tmp_path / "good.pt", small_classifier(), CLASSES, "mobilenet_v2", size=64)
    data = good.read_bytes()
    for keep in (len(data) // 2, len(data) - 100):
        (tmp_path / "cut.pt").write_bytes(data[:keep])
        with pytest.raises(Exception) as raw:
            torch.load(tmp_path / "cut.pt", weights_only=True)
        with pytest.raises(predict.ModelFileError) as info:
            predict.load_classifier(tmp_path / "cut.pt")
        message = str(info.value)
        cause = message.split(f"({type(raw.value).__name__}: ", 1)[1].split("). Copy it again", 1)[0]
        torch_text = str(raw.value)
        assert torch_text.startswith(cause) and torch_text[len(cause)] in ". ", (cause, torch_text)
        assert message.endswith("Copy it again, or save the model again.")


def test_long_causes_are_shortened_between_words():
    text = "failed finding central directory because " + "the archive ends early " * 20
    short = predict.first_sentence(text, limit=60)
    assert short.endswith(" ...") and len(short) <= 64
    assert text.startswith(short[:-4]) and text[len(short) - 4] == " "
    assert predict.first_sentence("One sentence. And another one.") == "One sentence"
    assert predict.first_sentence("x" * 300, limit=50) == "x" * 300  # one long word is kept whole


def test_a_file_claiming_the_wrong_backbone_cannot_be_written(tmp_path):
    with pytest.raises(predict.ModelFileError, match="does not fit a resnet18 with 3 classes"):
        predict.save_classifier(tmp_path / "m.pt", small_classifier(), CLASSES, "resnet18", size=64)
    assert list(tmp_path.iterdir()) == []


def _errors(tmp_path) -> dict[str, tuple[Path, str]]:
    good = predict.save_classifier(tmp_path / "good.pt", small_classifier(), CLASSES, "mobilenet_v2", size=64)
    resnet = predict.save_classifier(tmp_path / "resnet.pt", small_classifier("resnet18"), CLASSES, "resnet18", size=64)
    data = good.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "photo.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "notes.txt").write_text("my model is great")
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save(small_classifier().state_dict(), tmp_path / "state_dict.pt")
    torch.save(small_classifier(), tmp_path / "pickled.pt")
    forged = torch.load(resnet, weights_only=True)
    forged["backbone"] = "mobilenet_v2"  # resnet18 weights under another backbone's name
    torch.save(forged, tmp_path / "forged.pt")
    return {
        "another backbone": (resnet, "was made for resnet18, not mobilenet_v2: load it with backbone='resnet18'"),
        "truncated": (tmp_path / "truncated.pt", "is truncated or damaged"),
        "a photo": (tmp_path / "photo.jpg", "is a photo, not a model file. The model file comes first"),
        "a text file": (tmp_path / "notes.txt", "is not a model file (not a file written by torch.save)"),
        "empty": (tmp_path / "empty.pt", "is not a model file (an empty file)"),
        "a state_dict": (tmp_path / "state_dict.pt", "holds only weights (a state_dict), without the class names"),
        "a pickled model": (tmp_path / "pickled.pt", "holds Python objects, not only weights"),
        "forged": (tmp_path / "forged.pt", "does not fit a mobilenet_v2 with 3 classes"),
        "missing": (tmp_path / "nope.pt", "does not exist"),
    }


@pytest.mark.slow  # writes and reads many model files
def test_unusable_model_files_give_clear_errors(tmp_path):
    for what, (path, message) in _errors(tmp_path).items():
        with pytest.raises(predict.ModelFileError) as info:
            predict.load_classifier(path, backbone="mobilenet_v2")
        assert message in str(info.value), what
    assert predict.load_classifier(tmp_path / "resnet.pt").backbone == "resnet18"  # fine with its own backbone


def run_predict(*args, module: str = "course_utils.predict") -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", module, *(["predict"] if module.endswith("cli") else []), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=dict(os.environ))


@pytest.mark.slow  # a fresh interpreter that loads torch
def test_command_line_honours_orientation_reads_large_photos_and_names_unreadable_ones(imagenet_model_file, tmp_path):
    photos = tmp_path / "photos"
    phone_photo(photos / "IMG_0001.jpg", "china", orientation=6)  # stored sideways, tagged
    bundled_photo("china").transpose(Image.Transpose.ROTATE_90).save(photos / "sideways.jpg", quality=95)  # no tag
    huge_jpeg(photos / "IMG_200MP.jpg")
    truncated_jpeg(photos / "half.jpg")
    heic_photo(photos / "IMG_0002.HEIC")
    result = run_predict(imagenet_model_file, photos, "--top", "2", "--json")
    assert result.returncode == 1, result.stderr  # some photos could not be read
    assert "2 of 5 photo(s) could not be read" in result.stderr
    output = json.loads(result.stdout)
    assert output["model"]["backbone"] == "mobilenet_v2" and len(output["model"]["classes"]) == 1000
    records = {Path(r["photo"]).name: r for r in output["predictions"]}
    assert list(records) == ["IMG_0001.jpg", "IMG_0002.HEIC", "IMG_200MP.jpg", "half.jpg", "sideways.jpg"]
    assert records["IMG_0001.jpg"]["top"][0]["class"] == "palace" and records["IMG_0001.jpg"]["rotated"]
    assert records["sideways.jpg"]["top"][0]["class"] != "palace"  # the same pixels without the tag
    assert len(records["IMG_0001.jpg"]["top"]) == 2 and 0 < records["IMG_0001.jpg"]["top"][0]["probability"] <= 1
    assert len(records["IMG_200MP.jpg"]["top"]) == 2  # 210 megapixels: read reduced, no traceback
    assert records["half.jpg"]["error"].startswith("file is truncated (incomplete download or copy?)")
    assert records["IMG_0002.HEIC"]["error"].startswith("HEIC/HEIF photo")


@pytest.mark.slow  # a fresh interpreter that loads torch
def test_course_predict_is_the_same_command_with_text_output(imagenet_model_file, tmp_path):
    phone_photo(tmp_path / "IMG_0001.jpg", "china", orientation=6)
    result = run_predict(imagenet_model_file, tmp_path / "IMG_0001.jpg", "--top", "1", module="course_utils.tools.cli")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("model: ") and "mobilenet_v2, classes tench, goldfish" in lines[0]
    assert (
        lines[1].startswith(f"{tmp_path / 'IMG_0001.jpg'}: palace 0.") and "turned upright by its EXIF tag" in lines[1]
    )


@pytest.mark.slow  # fresh interpreters that load torch
def test_command_line_with_an_unusable_model_file_exits_2_and_says_why(tmp_path):
    path, message = _errors(tmp_path)["truncated"]
    (tmp_path / "cat.jpg").write_bytes(jpeg_bytes())
    result = run_predict(path, tmp_path / "cat.jpg")
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
    usage = run_predict(path)
    assert usage.returncode == 2 and "the following arguments are required: photos" in usage.stderr


def test_course_help_lists_predict():
    from course_utils.tools import cli

    assert cli.COMMANDS["predict"][0] == "course_utils.predict"
    assert "  predict " in cli.usage() and "lesson 09" in cli.usage()
