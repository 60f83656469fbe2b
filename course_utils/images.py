"""One check and one loader for every photo the course reads: folders, uploads, galleries and prediction.

Every photo goes through ``open_photo``: it is turned upright by its EXIF orientation tag (phones store most
photos sideways and let the tag say how to display them), a very large JPEG is decoded at 1/2, 1/4 or 1/8 of
its size (Pillow's ``draft``: cheap, and far more pixels than any backbone needs), and anything unusable
raises ``PhotoError`` with a reason a student can act on. ``image_problem`` returns that reason instead.
"""

from __future__ import annotations

import io
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS

from .paths import DataError

SUPPORTED_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM", "MPO")  # what Pillow decodes here
REDUCIBLE_FORMATS = ("JPEG", "MPO")  # formats Pillow can decode at 1/2, 1/4 or 1/8 size (draft)
HEIF_SUFFIXES = (".heic", ".heif", ".hif")
HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1")
HEIF_ADVICE = (
    "HEIC/HEIF photo (the iPhone's default format): this format is not supported here. Convert it to JPEG: "
    "on the iPhone choose Settings > Camera > Formats > Most Compatible (new photos are then JPEG), or share "
    "the photo as JPEG; on Linux `heif-convert IMG.heic IMG.jpg` (package libheif-examples); on macOS "
    "`sips -s format jpeg IMG.heic --out IMG.jpg`"
)
TRUNCATED = "file is truncated (incomplete download or copy?): copy or download it again"
EXIF_ORIENTATION = 0x0112
SourceType = str | Path | bytes | bytearray | memoryview


class PhotoError(DataError):
    """A file is not a usable photo; the message says why and what to do."""


@dataclass(frozen=True)
class PhotoCheck:
    """What check_photo found: a problem ('' if usable), the size as displayed, and notes (rotated, reduced)."""

    problem: str
    size: tuple[int, int] | None = None  # (width, height) upright, before any reduction
    rotated: bool = False  # turned upright by its EXIF orientation tag
    reduced_from: tuple[int, int] | None = None  # stored size when it was decoded reduced


def _is_bytes(source: SourceType) -> bool:
    return isinstance(source, (bytes, bytearray, memoryview))


def _head(source: SourceType, n: int = 32) -> bytes:
    if _is_bytes(source):
        return bytes(source[:n])
    with open(source, "rb") as handle:
        return handle.read(n)


def _size_in_bytes(source: SourceType) -> int:
    return len(source) if _is_bytes(source) else Path(source).stat().st_size


def is_heif(source: SourceType, name: str = "") -> bool:
    """True for an HEIC/HEIF photo (by its ISO-BMFF 'ftyp' brand, or by its name)."""
    if Path(name).suffix.lower() in HEIF_SUFFIXES:
        return True
    head = _head(source, 12)
    return head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


_LIMIT_LOCK = threading.Lock()


@contextmanager
def _pillow_limit_lifted():
    """Pillow refuses to even open a photo over 2 x Image.MAX_IMAGE_PIXELS (a global). Lift it around open only:
    the size is then checked here, and a large photo is decoded reduced or refused with a reason."""
    with _LIMIT_LOCK:
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield limit
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def _megapixels(size: tuple[int, int]) -> str:
    return f"{size[0]} x {size[1]} = {size[0] * size[1] / 1e6:.0f} megapixels"


def _read_error(exc: BaseException) -> str:
    """Pillow's error as a reason: a file that ends too early (Pillow's 'image file is truncated', 'Truncated
    File Read', 'broken data stream') is named as such; anything else keeps Pillow's words."""
    text = str(exc)
    if any(sign in text.lower() for sign in ("truncated", "broken data stream")) or isinstance(exc, EOFError):
        return TRUNCATED
    return f"cannot be read as an image ({type(exc).__name__}: {text})"


def _decode(source: SourceType, name: str) -> tuple[Image.Image, PhotoCheck]:
    """The decoded, upright photo (any mode) and what was done to it; PhotoError when it is not usable."""
    if name.startswith("."):
        raise PhotoError("not an image file (hidden or system file, e.g. .DS_Store)")
    suffix = Path(name).suffix.lower()
    if not _is_bytes(source) and suffix not in IMG_EXTENSIONS and suffix not in HEIF_SUFFIXES:
        raise PhotoError(f"not an image file (extension '{suffix or 'none'}')")
    if _size_in_bytes(source) == 0:
        raise PhotoError("empty file (0 bytes)")
    if is_heif(source, name):
        raise PhotoError(HEIF_ADVICE)

    def opened() -> Image.Image:
        return Image.open(io.BytesIO(bytes(source)) if _is_bytes(source) else source)

    try:
        with _pillow_limit_lifted() as limit:
            with opened() as probe:
                probe.verify()  # the file's structure (chunk checksums, markers), before decoding any pixel
            img = opened()
    except UnidentifiedImageError:
        if suffix not in IMG_EXTENSIONS:
            raise PhotoError(f"not an image file (extension '{suffix or 'none'}')") from None
        raise PhotoError("cannot be read as an image (not an image, or a format Pillow does not know)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise PhotoError(_read_error(exc)) from None
    try:
        stored, fmt, reduced_from = img.size, img.format, None
        if fmt not in SUPPORTED_FORMATS:
            raise PhotoError(f"image format {fmt} is not supported; save it as JPEG or PNG")
        if limit is not None and stored[0] * stored[1] > limit:
            if fmt in REDUCIBLE_FORMATS:
                # the strongest reduction that keeps 1024 pixels on the short side (more than any backbone uses)
                scale = next((s for s in (8, 4, 2) if min(stored) // s >= 1024), 2)
                img.draft("RGB", (max(1, stored[0] // scale), max(1, stored[1] // scale)))
            if img.size[0] * img.size[1] > limit:
                raise PhotoError(
                    f"too large to decode safely ({_megapixels(stored)}, {fmt}; the limit is "
                    f"{limit / 1e6:.0f} megapixels): save a smaller copy, e.g. 4000 pixels on the long side"
                    + ("" if fmt in REDUCIBLE_FORMATS else ", or as JPEG (large JPEGs are read at reduced size)")
                )
            reduced_from = stored
        try:
            img.load()
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise PhotoError(_read_error(exc)) from None
        try:
            orientation = img.getexif().get(EXIF_ORIENTATION, 1)
        except (OSError, SyntaxError, ValueError, TypeError):  # a damaged EXIF block: the pixels are still fine
            orientation = 1
        upright = ImageOps.exif_transpose(img) if orientation in range(2, 9) else img
        if upright is not img:
            img.close()
        swap = orientation in (5, 6, 7, 8)
        size = (stored[1], stored[0]) if swap else stored
        return upright, PhotoCheck("", size, orientation in range(2, 9), reduced_from)
    except BaseException:
        img.close()
        raise


def _name_of(source: SourceType, name: str | None) -> str:
    if name is not None:
        return name
    return "" if _is_bytes(source) else Path(source).name


def check_photo(source: SourceType, name: str | None = None) -> PhotoCheck:
    """Open and fully decode a photo (a path, or uploaded bytes and their file ``name``); never raises for a bad one."""
    try:
        img, check = _decode(source, _name_of(source, name))
    except PhotoError as exc:
        return PhotoCheck(str(exc))
    except OSError as exc:  # the file vanished or cannot be read at all
        return PhotoCheck(f"cannot be read ({type(exc).__name__}: {exc})")
    img.close()
    return check


def image_problem(source: SourceType, name: str | None = None) -> str:
    """Why a file (a path, or uploaded bytes with their file ``name``) is not a usable photo ('' when it is)."""
    return check_photo(source, name).problem


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(img, dtype=np.float64)
        top = array.max() if array.max() > 0 else 1.0
        img = Image.fromarray((array / top * 255.0).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def load_rgb(source: SourceType, name: str | None = None) -> Image.Image:
    """Any photo (a path or its bytes) as upright 8-bit RGB: EXIF orientation applied, a very large JPEG decoded
    reduced, grayscale, palette, RGBA (on white) and 16-bit included. PhotoError says why a file is unusable."""
    img, _ = _decode(source, _name_of(source, name))
    with img:
        return _to_rgb(img)
