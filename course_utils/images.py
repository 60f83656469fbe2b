"""One check and one loader for every photo the course reads: folders, uploads and prediction."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS

SUPPORTED_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM", "MPO")  # what Pillow decodes here


def _open(source: str | Path | bytes):
    return Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source)


def load_rgb(source: str | Path | bytes) -> Image.Image:
    """Open any image (a path or its bytes) as 8-bit RGB: grayscale, palette, RGBA (on white) and 16-bit included."""
    with _open(source) as img:
        img.load()
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            array = np.asarray(img, dtype=np.float64)
            top = array.max() if array.max() > 0 else 1.0
            img = Image.fromarray((array / top * 255.0).astype(np.uint8), mode="L")
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)
        return img.convert("RGB")


def image_problem(source: str | Path | bytes, name: str | None = None) -> str:
    """Why a file (a path, or uploaded bytes with their file ``name``) is not a usable photo ('' when it is)."""
    name = (
        name
        if name is not None
        else Path(source).name
        if not isinstance(source, (bytes, bytearray, memoryview))
        else ""
    )
    if name.startswith("."):
        return "not an image file (hidden or system file)"
    if not isinstance(source, (bytes, bytearray, memoryview)) and Path(name).suffix.lower() not in IMG_EXTENSIONS:
        return "not an image file"
    try:
        with _open(source) as img:
            img.verify()  # structure
        with _open(source) as img:
            img.load()  # every pixel decodes (a truncated file fails here)
            fmt = img.format
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return f"cannot be read as an image ({type(exc).__name__})"
    if fmt not in SUPPORTED_FORMATS:
        return f"image format {fmt} is not supported"
    return ""
