"""Hostile and broken input, generated at test time: odd images, broken files, bad archives.

Nothing here is a stored binary: every file is written with Pillow, zlib, zipfile or
tarfile when a test asks for it.
"""

from __future__ import annotations

import io
import struct
import tarfile
import unicodedata
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from testkit.images import painting

RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)
GRAY, ORANGE = (128, 128, 128), (200, 100, 0)
SIDE = 24  # odd images are SIDE x SIDE, so a resize to SIDE keeps every pixel where it was

# name -> (colour of the left half, colour of the right half) once in RGB; all are accepted.
ODD_IMAGES = {
    "cmyk.jpg": (RED, RED),
    "sixteen.png": (GRAY, GRAY),
    "palette_alpha.png": (WHITE, BLUE),  # transparent palette entry on the left: white background
    "rgba.png": (WHITE, GREEN),  # transparent left half: white background
    "onebit.png": (BLACK, WHITE),
    "gray.jpg": (GRAY, GRAY),
    "png_named.jpg": (ORANGE, ORANGE),  # a PNG whose name says JPEG: still an image
}
# A 40 x 20 landscape, red left and blue right, whose EXIF orientation (6) turns it portrait.
ROTATED = "rotated.jpg"
BROKEN_IMAGES = {"zero.jpg": "empty file", "truncated.jpg": "corrupt or truncated", "text.jpg": "not an image"}
BOMB = "bomb.png"
DURER_NFD = unicodedata.normalize("NFD", "Albrecht_Dürer")
DURER_NFC = unicodedata.normalize("NFC", DURER_NFD)


def halves(left, right, size=(SIDE, SIDE), mode="RGB") -> Image.Image:
    """An image whose left half is ``left`` and right half ``right``."""
    img = Image.new(mode, size, left)
    img.paste(Image.new(mode, (size[0] - size[0] // 2, size[1]), right), (size[0] // 2, 0))
    return img


def save_odd_images(folder: Path) -> None:
    """Write :data:`ODD_IMAGES` and :data:`ROTATED` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    halves((0, 255, 255, 0), (0, 255, 255, 0), mode="CMYK").save(folder / "cmyk.jpg", quality=95)
    Image.fromarray(np.full((SIDE, SIDE), 128 * 257, dtype=np.uint16)).save(folder / "sixteen.png")
    palette = halves(0, 1, mode="P")
    palette.putpalette([*BLACK, *BLUE])
    palette.save(folder / "palette_alpha.png", transparency=0)
    halves((255, 0, 0, 0), (*GREEN, 255), mode="RGBA").save(folder / "rgba.png")
    halves(0, 1, mode="1").save(folder / "onebit.png")
    halves(128, 128, mode="L").save(folder / "gray.jpg", quality=95)
    halves(ORANGE, ORANGE).save(folder / "png_named.jpg", format="PNG")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    halves(RED, BLUE, size=(40, 20)).save(folder / ROTATED, quality=95, exif=exif.tobytes())


def png_bomb(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A tiny PNG whose header claims ``width`` x ``height`` 1-bit pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(bytes(1 + width // 8) * 64)  # only the first rows: enough to look real
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


def save_broken_images(folder: Path) -> None:
    """Write :data:`BROKEN_IMAGES` and :data:`BOMB` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    painting(np.random.default_rng(1), 0, (64, 64)).save(buffer, format="JPEG", quality=90)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: buffer.tell() * 2 // 3])
    (folder / "text.jpg").write_text("this is a shopping list, not a painting\n", encoding="utf-8")
    png_bomb(folder / BOMB)


def save_clutter(folder: Path) -> None:
    """What file managers and people leave among paintings: hidden files, notes, empty folders."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "._cmyk.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")  # macOS resource fork
    (folder / "notes.txt").write_text("bought 1899\n", encoding="utf-8")
    (folder / "empty subfolder").mkdir(exist_ok=True)


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    """A deflated zip holding ``members`` (name -> bytes)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def write_tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    """A tar.gz holding ``members`` (name -> bytes) as regular files, names taken as given."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def write_archive(path: Path, members: dict[str, bytes]) -> Path:
    """:func:`write_zip` or :func:`write_tar_gz`, by ``path``'s suffix."""
    return write_zip(path, members) if path.suffix == ".zip" else write_tar_gz(path, members)


def kaggle_members(n: int = 2) -> dict[str, bytes]:
    """Archive members of a small valid Kaggle-layout data set (two artists of ``n`` JPEGs)."""
    members = {"artists.csv": b"id,name,paintings\n0,Ann,2\n1,Bob,2\n"}
    for index, artist in enumerate(("Ann", "Bob")):
        for k in range(n):
            buffer = io.BytesIO()
            painting(np.random.default_rng(10 * index + k), index, (20, 16)).save(buffer, format="JPEG")
            members[f"images/images/{artist}/{artist}_{k + 1}.jpg"] = buffer.getvalue()
    return members


def corrupt_zip(path: Path) -> Path:
    """A zip whose directory is intact but whose member data is damaged (CRC or inflate error)."""
    write_zip(path, {"images/images/Ann/Ann_1.jpg": np.random.default_rng(0).bytes(4000) + bytes(4000)})
    raw = bytearray(path.read_bytes())
    start = raw.find(b"PK\x03\x04") + 30 + len("images/images/Ann/Ann_1.jpg")
    raw[start + 100 : start + 400] = bytes(300)
    path.write_bytes(bytes(raw))
    return path
