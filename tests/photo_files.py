"""Real photo files of the kinds students bring, made on the fly with Pillow (imported by the tests)."""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path

from PIL import Image

from course_utils.photos import bundled_photo

FILES = Path(__file__).resolve().parent / "files"
ORIENTATION = 0x0112


def jpeg_bytes(name: str = "chelsea", size: tuple[int, int] | None = (96, 64), quality: int = 90) -> bytes:
    """A bundled photo as JPEG bytes."""
    img = bundled_photo(name)
    if size:
        img = img.resize(size)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def phone_photo(path: Path, name: str = "china", orientation: int = 6) -> Image.Image:
    """A JPEG stored sideways with an EXIF orientation tag, as phones write them; returns the upright photo.

    Orientation 6 means "rotate 90 degrees clockwise to display": the stored pixels are the upright photo turned
    90 degrees counter-clockwise (a landscape photo stored portrait, or a portrait one stored landscape)."""
    upright = bundled_photo(name)
    stored = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}[orientation]
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    upright.transpose(stored).save(path, format="JPEG", quality=95, exif=exif)
    return upright


def huge_jpeg(path: Path, size: tuple[int, int] = (15000, 14000)) -> Path:
    """A real JPEG above Pillow's decompression-bomb limit (210 megapixels, like a 200 MP phone camera):
    mostly one grey, with the cat photo in the middle. About 2.5 MB, made in well under a second."""
    img = Image.new("L", size, 120)
    cat = bundled_photo("chelsea").convert("L").resize((size[0] // 3, size[1] // 3))
    img.paste(cat, (size[0] // 3, size[1] // 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="JPEG", quality=60)
    return path


def huge_png(path: Path, size: tuple[int, int] = (15000, 14000), grey: int = 200) -> Path:
    """A real grayscale PNG of one colour above Pillow's limit, written row by row (never all in memory)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    width, height = size
    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes([grey]) * width  # filter type 0, then the pixels
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def heic_photo(path: Path) -> Path:
    """A real HEIC photo (see tests/files/README.md for how it was made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FILES / "chelsea.heic", path)
    return path


def truncated_jpeg(path: Path, name: str = "rocket") -> Path:
    """A JPEG cut off after a third of its bytes (an interrupted download or copy)."""
    data = jpeg_bytes(name, (128, 96))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) // 3])
    return path
