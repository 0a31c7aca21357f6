"""Image decoding: every mode and bit depth becomes 8-bit RGB, any other bytes are rejected with a reason."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from painter_id.data.images import ImageRejected, load_rgb, load_square

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"II*\x00", b"MM\x00*", b"BM", b"RIFF\x00\x00\x00\x00WEBP"]



def rgb16_png(path: Path, pixel: tuple[int, int, int]) -> Path:
    """A 4 x 4 PNG of 16 bits per channel (Pillow cannot write one), every pixel ``pixel``."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    rows = b"".join(b"\0" + np.array(pixel * 4, dtype=">u2").tobytes() for _ in range(4))
    header = (4).to_bytes(4, "big") * 2 + bytes([16, 2, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("name, array, expected", [
    ("dark16.png", np.full((4, 4), 100, np.uint16), 0),  # dark in 16 bits stays dark (was read as 8-bit 100)
    ("mid16.png", np.full((4, 4), 200 * 257, np.uint16), 200),
    ("half.tif", np.full((4, 4), 0.5, np.float32), 128),  # float TIFF: 0..1 (was black)
    ("over.tif", np.full((4, 4), 7.0, np.float32), 255),
    ("nan.tif", np.full((4, 4), np.nan, np.float32), 0),
])
def test_high_bit_depth_is_scaled_by_its_mode_range(tmp_path, name, array, expected):
    Image.fromarray(array).save(tmp_path / name)
    pixels = np.asarray(load_rgb(tmp_path / name))
    assert pixels.shape == (4, 4, 3) and (pixels == expected).all(), pixels[0, 0]


def test_sixteen_bit_rgb_png_keeps_its_colour(tmp_path):
    pixels = np.asarray(load_rgb(rgb16_png(tmp_path / "rgb16.png", (200 * 257, 10 * 257, 65535))))
    assert (pixels == (200, 10, 255)).all()


@FAST
@given(st.sampled_from(MAGIC), st.binary(max_size=400))
def test_any_bytes_are_an_image_or_image_rejected(tmp_path, magic, body):
    path = tmp_path / "x.jpg"
    path.write_bytes(magic + body)
    try:
        array = load_square(path, 16, "pad", max_pixels=1_000_000)
    except ImageRejected as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert array.shape == (16, 16, 3) and array.dtype == np.uint8
