"""Notebook widgets as plain functions: the activation explorer, the photo upload box and the prediction box.

The logic (which image a layer/channel choice shows, how uploaded files are checked and saved) lives in
plain functions tested without a browser; the widgets only wire them to ipywidgets controls.
"""

from __future__ import annotations

import html
import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .folders import PhotoIndex, add_photos
from .images import PhotoError, load_rgb


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
DEFAULT_RERUN = "the cell that loads the dataset"
NOTHING_ARRIVED = (
    "No photos arrived. Choose photos first (the 'choose photos' button), then press Save.\n"
    "Had you chosen some? Then together they were too large for the notebook's connection to Python (Jupyter's "
    "default limit is 10 MiB per selection, two to four phone photos; `course lab` and `make lab` raise it) and "
    "were dropped on the way. Choose fewer at a time and press Save after each choice, or copy the photos into "
    "{root}/<class>/ with your file manager (or: python data_scripts/make_dataset.py FOLDER)."
)


def rerun_advice(cell: str = DEFAULT_RERUN) -> str:
    """The line that says which cell to run from after new photos were saved."""
    return (
        f"Next: run {cell} and every cell below it (click that cell, then Run > Run Selected Cell and All Below), "
        "so that training sees the new photos."
    )


def save_uploads(files, dest_dir: str | Path, dataset_root: str | Path | None = None) -> dict[str, list]:
    """Save uploaded files ({'name', 'content'} dicts, as FileUpload.value gives) into ``dest_dir``.

    ``course_utils.folders.add_photos`` does it (the same as data_scripts/make_dataset.py): each file checked,
    written atomically under a name that never overwrites a photo, refused when its bytes are already in
    ``dataset_root`` (default ``dest_dir``; the upload box passes the folder holding every class: the same photo
    twice could land in training and in validation). Nothing is written, no folder made, when nothing is usable.
    Returns {'saved': [(name, path)], 'skipped': [(name, reason)]}.
    """
    dest = Path(dest_dir).expanduser()
    root = Path(dataset_root).expanduser() if dataset_root is not None else dest
    shown_from = root.parent if root == dest else root
    report: dict[str, list] = {"saved": [], "skipped": []}
    items = []
    for item in files:
        content = bytes(item["content"])
        expected = item.get("size")
        if expected and len(content) != expected:  # the browser said one size, Python got another
            report["skipped"].append(
                (item["name"], f"arrived incomplete ({len(content)} of {expected} bytes): choose it again")
            )
            continue
        items.append((item["name"], content))
    for added in add_photos(items, dest, PhotoIndex(root)):
        if added.saved is not None:
            report["saved"].append((added.name, added.saved))
        elif added.same_as is not None:
            where = added.same_as.relative_to(shown_from)
            report["skipped"].append((added.name, f"the same photo is already saved as {where.as_posix()}"))
        else:
            report["skipped"].append((added.name, added.problem))
    return report


def format_upload_report(
    report: Mapping[str, list], dataset_cell: str = DEFAULT_RERUN, root: str | Path = "data/my_pets"
) -> str:
    """Plain lines: which file was saved under which name, which was not and why, and which cell to run next."""
    if not report["saved"] and not report["skipped"]:
        return NOTHING_ARRIVED.format(root=root)
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
        lines.append(rerun_advice(dataset_cell))
    return "\n".join(lines)


def _status_html(text: str) -> str:
    return (
        f"<pre style='white-space: pre-wrap; margin: 0; font-size: 0.95em; line-height: 1.35'>{html.escape(text)}</pre>"
    )


def _clear(upload) -> None:
    """Empty the file chooser, in Python and in the browser (which may still show files that never arrived)."""
    upload.value = ()
    upload.send_state("value")


def _renew_chooser(box, row) -> None:
    """Put a fresh file chooser in place of ``box.upload`` (after a press on which nothing arrived).

    A selection too large for the connection is dropped on the way, and the browser's copy of that chooser then
    waits for ever for Python to answer it: ipywidgets sends a widget's next change only after the last one was
    answered, so every later choice in it would be held back too. A new chooser has no such debt."""
    import ipywidgets as widgets

    old = box.upload
    new = widgets.FileUpload(accept=old.accept, multiple=old.multiple, description=old.description)
    row.children = tuple(new if child is old else child for child in row.children)
    box.upload = new
    old.close()


def photo_upload_widget(root: str | Path, classes=("tigger", "misty", "neither"), dataset_cell: str = DEFAULT_RERUN):
    """Pick a class, choose photos, press Save: they land (checked, no duplicates) in root/<class>/.

    ``dataset_cell`` names the cell to run from after a save (e.g. "the cell `pets = pets_data(...)` below").
    ``box.status.value`` is HTML; ``box.status_text`` holds the same as plain text."""
    import ipywidgets as widgets

    label = widgets.Dropdown(options=list(classes), value=classes[0], description="class")
    upload = widgets.FileUpload(accept="image/*", multiple=True, description="choose photos")
    save = widgets.Button(description="Save", icon="save")
    status = widgets.HTML(layout=widgets.Layout(width="100%"))
    row = widgets.HBox([label, upload, save])
    box = widgets.VBox([row, status])

    def show(text: str) -> None:
        box.status_text = text
        status.value = _status_html(text)

    def on_save(_=None):
        folder = Path(root) / label.value
        chosen = box.upload.value
        try:
            report = save_uploads(chosen, folder, dataset_root=root)
        except OSError as exc:  # a full disk, a folder that cannot be written: say so, stay usable
            report = {"saved": [], "skipped": [(f.get("name", "?"), f"not written: {exc}") for f in chosen]}
        finally:
            _clear(box.upload)
        if not chosen:
            _renew_chooser(box, row)
        show(f"class {label.value} ({folder}):\n" + format_upload_report(report, dataset_cell, root))
        return report

    show(
        f"Photos go to {Path(root)}/<class>/. Pick a class, choose photos (a few at a time: large selections may not "
        "reach Python), then press Save."
    )
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
        return (
            "No photos arrived. Choose photos first (the 'choose photos' button), then press Predict. Had you "
            "chosen some? Then together they were too large for the notebook's connection to Python (Jupyter's "
            "default limit is 10 MiB per selection; `course lab` raises it): choose fewer at a time, or use "
            "`course predict` in a terminal."
        )
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
    row = widgets.HBox([upload, button])
    box = widgets.VBox([row, status])

    def show(text: str) -> None:
        box.status_text = text
        status.value = _status_html(text)

    def on_predict(_=None):
        chosen = box.upload.value
        try:
            results = predict_uploads(chosen, classify)
        finally:
            _clear(box.upload)
        if not chosen:
            _renew_chooser(box, row)
        show(format_prediction_report(results))
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
