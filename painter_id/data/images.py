"""Image IO shared by every stage that reads pixels: decode, check, convert to RGB, fit a square.

One code path for all of them, so download, resize, evaluate and predict agree on what an
image is (EXIF orientation applied, every mode brought to 8-bit RGB).
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageOps

from painter_id.core.params import RESIZE_MODES

# Only the pixel-count check below decides what is too large; Pillow's own guard would
# raise a warning or error with a different limit than data.max_pixels.
Image.MAX_IMAGE_PIXELS = None

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# The full-scale value of each one-channel mode deeper than 8 bits.
HIGH_DEPTH_RANGE = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}



class ImageRejected(Exception):
    """The file is not a usable image; ``str(exc)`` is the reason written to ``rejected.csv``."""


def sha256_file(path: os.PathLike | str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def is_image_name(path: os.PathLike | str) -> bool:
    """True for a visible file whose suffix names an image format (skips ``.DS_Store``, ``._x.jpg``)."""
    name = Path(path).name
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES


def open_image(path: os.PathLike | str | bytes, max_pixels: Optional[int] = None,
               draft_size: Optional[int] = None) -> Image.Image:
    """Open and fully decode an image (a file, or the bytes of one), or raise :class:`ImageRejected`.

    ``max_pixels`` is checked from the header, before decoding, so a decompression bomb
    costs nothing. ``draft_size`` lets the JPEG decoder shrink by a power of two while
    decoding (much faster when the target is small); the result is still at least that big.
    """
    # Bytes: an upload or a served request, decoded by exactly the code that reads files.
    source = io.BytesIO(path) if isinstance(path, bytes) else Path(path)
    try:
        if (len(path) if isinstance(path, bytes) else source.stat().st_size) == 0:
            raise ImageRejected("empty file")
    except OSError as exc:
        raise ImageRejected(f"unreadable: {exc.strerror or exc}") from None
    try:
        img = Image.open(source)
    except Exception as exc:  # Pillow raises many types for non-images
        raise ImageRejected(f"not an image: {type(exc).__name__}") from None
    width, height = img.size
    if max_pixels is not None and width * height > max_pixels:
        img.close()
        raise ImageRejected(f"too large: {width}x{height} pixels exceeds data.max_pixels={max_pixels}")
    if width == 0 or height == 0:
        raise ImageRejected("empty image: zero width or height")
    if draft_size and img.format == "JPEG":
        img.draft(img.mode if img.mode in ("L", "RGB") else None, (draft_size, draft_size))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
    except Exception as exc:
        raise ImageRejected(f"corrupt or truncated: {type(exc).__name__}: {exc}".splitlines()[0][:200]) from None
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert any mode (CMYK, 16-bit, palette, alpha, 1-bit) to 8-bit RGB."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block must not cost us the image
        pass
    if img.mode in HIGH_DEPTH_RANGE:
        img = to_8bit(img)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def to_8bit(img: Image.Image) -> Image.Image:
    """A one-channel 16-bit, 32-bit or float image as 8-bit ``L``, scaled by its mode's range.

    The range is the mode's, never the image's own maximum, so a dark 16-bit image stays
    dark: ``I;16*`` and ``I`` span 0..65535, ``F`` (float TIFF) spans 0..1; values outside
    are clipped and NaN is black. (16-bit RGB and RGBA PNGs are already brought to 8 bits
    by Pillow when it opens them.)
    """
    arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0)
    scaled = np.clip(np.rint(arr * (255.0 / HIGH_DEPTH_RANGE[img.mode])), 0, 255)
    return Image.fromarray(scaled.astype(np.uint8), "L")


def load_rgb(path: os.PathLike | str | bytes, max_pixels: Optional[int] = None, draft_size: Optional[int] = None) -> Image.Image:
    """:func:`open_image` then :func:`to_rgb`; a mode that cannot become RGB is :class:`ImageRejected` too."""
    img = open_image(path, max_pixels=max_pixels, draft_size=draft_size)
    try:
        return to_rgb(img)
    except Exception as exc:  # Pillow raises ValueError, OSError... for modes it cannot convert
        raise ImageRejected(f"unsupported image mode {img.mode}: {type(exc).__name__}") from None


def fit_square(img: Image.Image, size: int, mode: str = "pad") -> Image.Image:
    """Bring an RGB image to ``size`` x ``size``.

    ``pad`` keeps the whole painting and its aspect ratio on a black square, ``crop`` takes
    the central square, ``stretch`` ignores the aspect ratio.
    """
    if mode == "stretch":
        return img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    if mode == "crop":
        return ImageOps.fit(img, (size, size), Image.Resampling.BILINEAR)
    if mode == "pad":
        return ImageOps.pad(img, (size, size), Image.Resampling.BILINEAR, color=(0, 0, 0))
    raise ValueError(f"unknown resize mode {mode!r}; use one of {RESIZE_MODES}")


def load_square(path: os.PathLike | str | bytes, size: int, mode: str = "pad",
                max_pixels: Optional[int] = None) -> np.ndarray:
    """Decode ``path`` (a file, or its bytes) and return a ``(size, size, 3)`` uint8 array, the model's input format."""
    img = load_rgb(path, max_pixels=max_pixels, draft_size=size)
    return np.asarray(fit_square(img, size, mode), dtype=np.uint8)
