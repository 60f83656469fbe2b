"""Keep and use a trained classifier: one file per model, and a command that classifies photos with it.

    python -m course_utils.predict MODEL_FILE PHOTO... [--top K] [--json]      (or: course predict ...)

A model file (written by ``save_classifier``, lesson 09) holds everything needed to use the model in a fresh
process, without the notebook that trained it:

    {"format": "course-classifier", "version": 1, "backbone": "mobilenet_v2", "classes": [...],
     "preprocess": {"resize": 96, "size": 96, "mean": [...], "std": [...]}, "state_dict": {...}, "info": {...}}

Only tensors, strings and numbers: ``load_classifier`` reads it with ``torch.load(weights_only=True)``, which
never runs code stored in a file. Photos are read by the course's one loader (``course_utils.images``): upright
by their EXIF orientation tag, very large ones reduced, unreadable ones named with the reason.

Exit status: 0 when every photo was classified; 1 when at least one photo could not be read (the others are
still classified); 2 when the model file cannot be used or the command line is wrong.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torchvision import models, transforms

from .backbones import BACKBONES, replace_head
from .images import check_photo, load_rgb
from .paths import atomic_write_bytes
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, photo_transform

FORMAT = "course-classifier"
VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


class ModelFileError(RuntimeError):
    """A model file cannot be used; the message says why and what to do."""


@dataclass
class Classifier:
    """A loaded model file: the network (eval mode), its class names, backbone and preprocessing."""

    model: nn.Module
    classes: list[str]
    backbone: str
    preprocess: dict
    path: Path | None = None
    info: dict = field(default_factory=dict)

    def transform(self) -> transforms.Compose:
        """PIL photo -> normalized tensor, exactly as the model was trained: preprocess.photo_transform with the
        size, resize, mean and std stored in the file."""
        p = self.preprocess
        return photo_transform(p["size"], p["resize"], tuple(p["mean"]), tuple(p["std"]))

    @torch.no_grad()
    def probabilities(self, photos: list) -> torch.Tensor:
        """Class probabilities (N x classes) for PIL photos."""
        device = next(self.model.parameters()).device
        batch = torch.stack([self.transform()(photo) for photo in photos]).to(device)
        return self.model.eval()(batch).softmax(1).cpu()

    def top(self, photo, k: int = 3) -> list[tuple[str, float]]:
        """The k most probable classes of one PIL photo, with their probabilities."""
        probs = self.probabilities([photo])[0]
        values, indices = probs.topk(min(k, len(self.classes)))
        return [(self.classes[i], float(v)) for v, i in zip(values, indices, strict=True)]

    def describe(self) -> str:
        """One line: file, backbone, classes, input size."""
        where = f"{self.path}: " if self.path else ""
        return (
            f"{where}{self.backbone}, classes {', '.join(self.classes)}, "
            f"{self.preprocess['size']} x {self.preprocess['size']} px input"
        )


def build_network(backbone: str, num_classes: int) -> nn.Module:
    """The bare architecture of a saved classifier: the torchvision backbone (no weights) with a new head."""
    if backbone not in BACKBONES:
        raise ModelFileError(f"unknown backbone {backbone!r}; supported: {', '.join(BACKBONES)}")
    model = getattr(models, backbone)(weights=None)
    replace_head(model, num_classes)
    return model


def first_sentence(text: str, limit: int = 200) -> str:
    """The first sentence of ``text``'s first line, without its final full stop; over ``limit`` characters it is
    shortened at a word boundary and ends in "..." (never cut inside a word)."""
    lines = text.strip().splitlines()
    sentence = re.split(r"(?<=[.!?])\s", lines[0].strip(), maxsplit=1)[0].rstrip(".") if lines else ""
    if len(sentence) <= limit:
        return sentence
    head = sentence[: limit + 1]
    cut = head[: head.rfind(" ")] if " " in head else sentence.split()[0]
    return cut if cut == sentence else cut.rstrip(",;:") + " ..."


def _fit(network: nn.Module, state: dict, backbone: str, num_classes: int, what: str) -> None:
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = [first_sentence(line) for line in str(exc).split("\n\t")[1:3]] or [first_sentence(str(exc))]
        raise ModelFileError(
            f"{what} does not fit a {backbone} with {num_classes} classes ({'; '.join(first)}). "
            "It was made for another backbone (or changed by hand): load it with the backbone it was made for, "
            "or train and save the model again."
        ) from None


def save_classifier(
    path: str | Path,
    model: nn.Module,
    classes: list[str],
    backbone: str,
    size: int,
    resize: int | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    info: dict | None = None,
) -> Path:
    """Write weights, class names, backbone name and preprocessing to one file (atomically); return its path.

    The weights are checked against a fresh ``backbone`` first, so a file can only claim the backbone it fits."""
    classes = [str(name) for name in classes]
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    _fit(build_network(backbone, len(classes)), state, backbone, len(classes), "the model's weights")
    record = {
        "format": FORMAT,
        "version": VERSION,
        "backbone": backbone,
        "classes": classes,
        "preprocess": {
            "resize": int(resize or size),
            "size": int(size),
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
        },
        "state_dict": state,
        "info": dict(info or {}),
    }
    buffer = io.BytesIO()
    torch.save(record, buffer)
    path = Path(path).expanduser()
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _read(path: Path) -> object:
    if not path.is_file():
        raise ModelFileError(
            f"{path} does not exist (or is not a file). Save a model first (lesson 09, save_classifier)."
        )
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head != ZIP_MAGIC:
        if not check_photo(path).problem:
            raise ModelFileError(
                f"{path} is a photo, not a model file. The model file comes first: "
                "python -m course_utils.predict MODEL_FILE PHOTO..."
            )
        kind = "an empty file" if path.stat().st_size == 0 else "not a file written by torch.save"
        raise ModelFileError(f"{path} is not a model file ({kind}). Pass the .pt file that save_classifier wrote.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for a damaged file
        text = str(exc)
        if "Weights only load failed" in text:
            raise ModelFileError(
                f"{path} holds Python objects, not only weights (was it written with torch.save(model)?). "
                "It is not loaded: that could run code. Save the model with save_classifier instead."
            ) from None
        raise ModelFileError(
            f"{path} is truncated or damaged ({type(exc).__name__}: {first_sentence(text)}). "
            "Copy it again, or save the model again."
        ) from None


def load_classifier(path: str | Path, backbone: str | None = None, device: str | torch.device = "cpu") -> Classifier:
    """Read a file written by save_classifier (weights_only=True) and rebuild the network; clear errors for a
    missing, truncated or non-model file, a bare state_dict, or a file made for another ``backbone``."""
    path = Path(path).expanduser()
    record = _read(path)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        if isinstance(record, dict) and record and all(isinstance(v, torch.Tensor) for v in record.values()):
            raise ModelFileError(
                f"{path} holds only weights (a state_dict), without the class names, backbone and preprocessing "
                "needed to use them. Save the model with save_classifier."
            )
        raise ModelFileError(f"{path} is a torch file but not a classifier saved by save_classifier.")
    if int(record.get("version", 0)) > VERSION:
        raise ModelFileError(
            f"{path} was written by a newer version of the course (format {record['version']}); update the course."
        )
    missing = [key for key in ("backbone", "classes", "preprocess", "state_dict") if key not in record]
    if missing:
        raise ModelFileError(f"{path} lacks {', '.join(missing)}: it is damaged; save the model again.")
    made_for = record["backbone"]
    if backbone is not None and backbone != made_for:
        raise ModelFileError(f"{path} was made for {made_for}, not {backbone}: load it with backbone={made_for!r}.")
    classes = list(record["classes"])
    network = build_network(made_for, len(classes))
    _fit(network, record["state_dict"], made_for, len(classes), f"the weights in {path}")
    network.to(device).eval()
    return Classifier(network, classes, made_for, dict(record["preprocess"]), path, dict(record.get("info", {})))


def photo_files(arguments: list[str | Path]) -> list[Path]:
    """The photos named on a command line: files as given, folders expanded (sorted, hidden files left out)."""
    found = []
    for argument in map(Path, arguments):
        if argument.is_dir():
            found += sorted(p for p in argument.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            found.append(argument)
    return found


def predict_photos(classifier: Classifier, photos: list[str | Path], top: int = 3, batch_size: int = 32) -> list[dict]:
    """One record per photo: {'photo', 'top': [{'class', 'probability'}], 'rotated'} or {'photo', 'error'}."""
    records, ready = [], []
    for photo in map(Path, photos):
        if not photo.exists():
            records.append({"photo": str(photo), "error": "no such file"})
            continue
        check = check_photo(photo)
        if check.problem:
            records.append({"photo": str(photo), "error": check.problem})
            continue
        record = {"photo": str(photo), "top": [], "rotated": check.rotated}
        records.append(record)
        ready.append(record)
    k = min(top, len(classifier.classes))
    for start in range(0, len(ready), batch_size):
        chunk = ready[start : start + batch_size]
        probs = classifier.probabilities([load_rgb(r["photo"]) for r in chunk])
        for record, row in zip(chunk, probs, strict=True):
            values, indices = row.topk(k)
            record["top"] = [
                {"class": classifier.classes[i], "probability": round(float(v), 4)}
                for v, i in zip(values, indices, strict=True)
            ]
    return records


def format_predictions(records: list[dict]) -> str:
    """One line per photo: its top classes with probabilities, or why it could not be read."""
    lines = []
    for record in records:
        if "error" in record:
            lines.append(f"{record['photo']}: NOT READ: {record['error']}")
            continue
        ranked = ", ".join(f"{t['class']} {t['probability']:.2f}" for t in record["top"])
        lines.append(
            f"{record['photo']}: {ranked}" + ("  (turned upright by its EXIF tag)" if record["rotated"] else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`course predict MODEL_FILE PHOTO... [--top K] [--json]` (or `python -m course_utils.predict ...`)."""
    invoked_as_course = sys.argv[0].startswith("course ")  # the `course` dispatcher names the program
    parser = argparse.ArgumentParser(
        prog=sys.argv[0] if invoked_as_course else "python -m course_utils.predict",
        description="Classify photos with a model file saved by save_classifier (lesson 09).",
        epilog="Exit status: 0 every photo classified, 1 some photo could not be read, 2 the model file is unusable.",
    )
    parser.add_argument("model", type=Path, help="the model file (.pt) written by save_classifier")
    parser.add_argument("photos", nargs="+", help="photo files, or folders of photos")
    parser.add_argument("--top", type=int, default=3, metavar="K", help="how many classes to show per photo (3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error("--top must be at least 1")
    try:
        classifier = load_classifier(args.model)
    except ModelFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    records = predict_photos(classifier, photo_files(args.photos), top=args.top)
    if args.json:
        model = {"file": str(args.model), "backbone": classifier.backbone, "classes": classifier.classes}
        print(json.dumps({"model": model, "predictions": records}, indent=1))
    else:
        print(f"model: {classifier.describe()}")
        print(format_predictions(records))
    unread = [r for r in records if "error" in r]
    if not records:
        print("no photos found in " + ", ".join(args.photos), file=sys.stderr)
    if unread:
        print(f"{len(unread)} of {len(records)} photo(s) could not be read (listed above).", file=sys.stderr)
    return 1 if unread or not records else 0


if __name__ == "__main__":
    sys.exit(main())
