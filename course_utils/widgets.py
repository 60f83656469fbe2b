"""Notebook widgets as plain functions: the activation explorer and the photo upload box.

The logic (which image a layer/channel choice shows, how uploaded files are checked and saved) lives in
plain functions tested without a browser; the widgets only wire them to ipywidgets controls.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .images import image_problem
from .paths import atomic_write_bytes


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


def save_uploads(files, dest_dir: str | Path) -> dict[str, list]:
    """Save uploaded files ({'name', 'content'} dicts, as FileUpload.value gives) into ``dest_dir``.

    Each file is checked first; good ones are written atomically under a name that never overwrites an
    existing photo. Returns {'saved': [paths], 'skipped': [(name, reason)]}.
    """
    dest = Path(dest_dir).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    report: dict[str, list] = {"saved": [], "skipped": []}
    for item in files:
        name, content = item["name"], bytes(item["content"])
        problem = image_problem(content, name=Path(name).name)
        if problem:
            report["skipped"].append((name, problem))
            continue
        target = dest / _safe_name(name)
        stem, suffix, n = target.stem, target.suffix or ".jpg", 1
        target = target.with_suffix(suffix)
        while target.exists():
            target = dest / f"{stem}_{n}{suffix}"
            n += 1
        atomic_write_bytes(target, content)
        report["saved"].append(target)
    return report


def format_upload_report(report: Mapping[str, list]) -> str:
    """One line per skipped file and a count of saved ones."""
    lines = [f"saved {len(report['saved'])} photo(s)"]
    lines += [f"skipped {name}: {reason}" for name, reason in report["skipped"]]
    return "\n".join(lines)


def photo_upload_widget(root: str | Path, classes=("tigger", "misty", "neither")):
    """Pick a class, choose photos, press Save: they land (checked) in root/<class>/."""
    import ipywidgets as widgets

    label = widgets.Dropdown(options=list(classes), value=classes[0], description="class")
    upload = widgets.FileUpload(accept="image/*", multiple=True, description="choose photos")
    save = widgets.Button(description="Save", icon="save")
    status = widgets.Textarea(
        value=f"photos go to {Path(root)}/<class>/", disabled=True, layout=widgets.Layout(width="100%", height="6em")
    )

    def on_save(_=None):
        report = save_uploads(upload.value, Path(root) / label.value)
        status.value = f"{label.value}: " + format_upload_report(report)
        upload.value = ()
        return report

    save.on_click(on_save)
    box = widgets.VBox([widgets.HBox([label, upload, save]), status])
    box.label, box.upload, box.save_button, box.status, box.save = label, upload, save, status, on_save
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
