"""Notebook widgets as plain functions: the activation explorer, the photo upload box and the prediction box.

The logic (which image a layer/channel choice shows, how uploaded files are checked and saved) lives in
plain functions tested without a browser; the widgets only wire them to ipywidgets controls.
"""

from __future__ import annotations

import hashlib
import html
import io
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .images import PhotoError, image_problem, load_rgb
from .paths import atomic_write_bytes, file_sha256


# --------------------------------------------------------------------------- activation explorer
def channel_image(activations: Mapping[str, torch.Tensor], layer: str, channel: int) -> np.ndarray:
    """One channel of one layer's maps, scaled to [0, 1] (a constant map gives zeros)."""
    if layer not in activations:
        raise KeyError(f"no layer {layer!r}; choose one of {', '.join(activations)}")
    maps = activations[layer]
    if not 0 <= channel < maps.shape[0]:
        raise IndexError(f"{layer} has {maps.shape[0]} channels (0-{maps.shape[0] - 1}); got channel {channel}")
    array = maps[channel].float().numpy()
    low, high = float(array.min()), float(array.max())
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


def to_png(array: np.ndarray, size: int = 192) -> bytes:
    """A [0, 1] grey map as PNG bytes, enlarged (nearest neighbour) to about ``size`` pixels."""
    img = Image.fromarray((np.clip(array, 0, 1) * 255).astype(np.uint8), mode="L")
    scale = max(1, size // max(img.size))
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def activation_explorer(activations: Mapping[str, torch.Tensor], size: int = 192):
    """Dropdown (layer) + slider (channel) + the channel's map; changing the layer clamps the channel."""
    import ipywidgets as widgets

    names = list(activations)
    layer = widgets.Dropdown(options=names, value=names[0], description="layer")
    channel = widgets.IntSlider(value=0, min=0, max=activations[names[0]].shape[0] - 1, description="channel")
    picture = widgets.Image(format="png", width=size, height=size)
    caption = widgets.Label()

    def redraw(*_):
        maps = activations[layer.value]
        channel.max = maps.shape[0] - 1  # the slider clamps its value to the new range
        picture.value = to_png(channel_image(activations, layer.value, channel.value), size)
        caption.value = (
            f"{layer.value}: channel {channel.value} of {maps.shape[0]}, {maps.shape[1]}x{maps.shape[2]} pixels"
        )

    layer.observe(redraw, names="value")
    channel.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox([layer, channel]), picture, caption])
    box.layer, box.channel, box.picture, box.caption = layer, channel, picture, caption
    return box


# ----------------------------------------------------------------------------------- photo upload
def _safe_name(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).lstrip(".") or "photo"
    return stem


def _photo_hashes(root: Path) -> dict[str, Path]:
    """sha256 -> file for every file in the class folders under ``root``."""
    if not root.is_dir():
        return {}
    files = (p for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith("."))
    return {file_sha256(p): p for p in files}


def save_uploads(files, dest_dir: str | Path, dataset_root: str | Path | None = None) -> dict[str, list]:
    """Save uploaded files ({'name', 'content'} dicts, as FileUpload.value gives) into ``dest_dir``.

    Each file is checked first (the same check as the dataset); good ones are written atomically under a name
    that never overwrites an existing photo. A file whose bytes are already in ``dataset_root`` (default
    ``dest_dir``; the upload widget passes the folder holding every class) is refused: the same photo twice could
    land in both training and validation. Returns {'saved': [(name, path)], 'skipped': [(name, reason)]}.
    """
    dest = Path(dest_dir).expanduser()
    root = Path(dataset_root).expanduser() if dataset_root is not None else dest
    dest.mkdir(parents=True, exist_ok=True)
    known = _photo_hashes(root)
    report: dict[str, list] = {"saved": [], "skipped": []}
    for item in files:
        name, content = item["name"], bytes(item["content"])
        problem = image_problem(content, name=Path(name).name)
        if problem:
            report["skipped"].append((name, problem))
            continue
        digest = hashlib.sha256(content).hexdigest()
        if digest in known:
            where = known[digest].relative_to(root.parent if root == dest else root)
            report["skipped"].append((name, f"the same photo is already saved as {where}"))
            continue
        target = dest / _safe_name(name)
        stem, suffix, n = target.stem, target.suffix or ".jpg", 1
        target = target.with_suffix(suffix)
        while target.exists():
            target = dest / f"{stem}_{n}{suffix}"
            n += 1
        atomic_write_bytes(target, content)
        known[digest] = target
        report["saved"].append((name, target))
    return report


def format_upload_report(report: Mapping[str, list], dataset_cell: str = "the cell that loads the dataset") -> str:
    """Plain lines: which file was saved under which name, which was not and why, and what to do next."""
    if not report["saved"] and not report["skipped"]:
        return "No photos chosen: choose photos first (the 'choose photos' button), then press Save."
    lines = []
    if report["saved"]:
        lines.append(f"Saved {len(report['saved'])} photo(s):")
        for name, path in report["saved"]:
            renamed = "" if path.name == name else f"  (renamed: {name} -> {path.name})"
            lines.append(f"  {name} -> {path.parent.name}/{path.name}{renamed}")
    if report["skipped"]:
        lines.append(f"Not saved: {len(report['skipped'])} file(s):")
        lines += [f"  {name}: {reason}" for name, reason in report["skipped"]]
    if report["saved"]:
        lines.append(f"Re-run {dataset_cell} so that training sees the new photos.")
    return "\n".join(lines)


def _status_html(text: str) -> str:
    return (
        f"<pre style='white-space: pre-wrap; margin: 0; font-size: 0.95em; line-height: 1.35'>{html.escape(text)}</pre>"
    )


def photo_upload_widget(
    root: str | Path, classes=("tigger", "misty", "neither"), dataset_cell: str = "the cell that loads the dataset"
):
    """Pick a class, choose photos, press Save: they land (checked, no duplicates) in root/<class>/.

    ``box.status.value`` is HTML; ``box.status_text`` holds the same as plain text."""
    import ipywidgets as widgets

    label = widgets.Dropdown(options=list(classes), value=classes[0], description="class")
    upload = widgets.FileUpload(accept="image/*", multiple=True, description="choose photos")
    save = widgets.Button(description="Save", icon="save")
    status = widgets.HTML(layout=widgets.Layout(width="100%"))
    box = widgets.VBox([widgets.HBox([label, upload, save]), status])

    def show(text: str) -> None:
        box.status_text = text
        status.value = _status_html(text)

    def on_save(_=None):
        report = save_uploads(upload.value, Path(root) / label.value, dataset_root=root)
        show(f"class {label.value} ({Path(root) / label.value}):\n" + format_upload_report(report, dataset_cell))
        upload.value = ()
        return report

    show(f"Photos go to {Path(root)}/<class>/. Pick a class, choose photos, then press Save.")
    save.on_click(on_save)
    box.label, box.upload, box.save_button, box.status, box.save = label, upload, save, status, on_save
    return box


# ----------------------------------------------------------------------------------- photo prediction
def predict_uploads(files, classify) -> list[dict]:
    """Uploaded files -> [{'name', 'top': classify(photo)}] or [{'name', 'error'}]; each photo is read by the course's
    one loader (upright by its EXIF tag, large ones reduced) and ``classify`` gets a PIL photo."""
    results = []
    for item in files:
        name, content = item["name"], bytes(item["content"])
        try:
            photo = load_rgb(content, name=Path(name).name)
        except PhotoError as exc:
            results.append({"name": name, "error": str(exc)})
            continue
        results.append({"name": name, "top": list(classify(photo))})
    return results


def format_prediction_report(results: list[dict]) -> str:
    """One line per photo: 'name: class 0.91, class 0.06, ...' or why it could not be read."""
    if not results:
        return "No photos chosen: choose photos first (the 'choose photos' button), then press Predict."
    lines = []
    for result in results:
        if "error" in result:
            lines.append(f"{result['name']}: not read: {result['error']}")
        else:
            lines.append(f"{result['name']}: " + ", ".join(f"{name} {prob:.2f}" for name, prob in result["top"]))
    return "\n".join(lines)


def photo_predict_widget(classify):
    """Choose photos, press Predict: each photo's top classes with probabilities (``classify(photo)`` gives them).

    ``box.predict()`` does what the button does and returns the results; ``box.status_text`` holds the text shown."""
    import ipywidgets as widgets

    upload = widgets.FileUpload(accept="image/*", multiple=True, description="choose photos")
    button = widgets.Button(description="Predict", icon="search")
    status = widgets.HTML(layout=widgets.Layout(width="100%"))
    box = widgets.VBox([widgets.HBox([upload, button]), status])

    def show(text: str) -> None:
        box.status_text = text
        status.value = _status_html(text)

    def on_predict(_=None):
        results = predict_uploads(upload.value, classify)
        show(format_prediction_report(results))
        upload.value = ()
        return results

    show("Choose photos, then press Predict.")
    button.on_click(on_predict)
    box.upload, box.predict_button, box.status, box.predict = upload, button, status, on_predict
    return box


def uploaded_file(name: str, content: bytes, mime: str = "") -> dict:
    """A file as ipywidgets' FileUpload.value holds it: use it to simulate an upload in code or tests."""
    import datetime

    return {
        "name": name,
        "type": mime,
        "size": len(content),
        "content": memoryview(bytes(content)),
        "last_modified": datetime.datetime.now(datetime.timezone.utc),
    }
