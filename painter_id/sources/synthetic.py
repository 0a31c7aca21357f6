"""A procedural stand-in for the Kaggle paintings: invented painters, each with a style.

Used when ``data.source`` is ``synthetic`` (the default), so the whole pipeline runs
offline in seconds. Each painter has a palette, a composition and a brush (stroke
direction, length, width, texture); palettes overlap between painters and every image
varies in size, colours and layout, so a model has to learn texture and colour
statistics rather than one trivial cue. Output is the Kaggle layout
(``images/images/<Artist>/<Artist>_<n>.jpg`` + ``artists.csv``), ingested by the same code
as a real download. Same seed, byte-identical files.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

Color = tuple[int, int, int]
Painter = Callable[[ImageDraw.ImageDraw, np.random.Generator, int, int, np.ndarray], None]

# A shared pool: neighbouring palettes reuse colours, so no painter owns a colour.
POOL: dict[str, Color] = {
    "ultramarine": (40, 60, 150),
    "sky": (120, 170, 215),
    "teal": (40, 120, 120),
    "sage": (130, 160, 110),
    "olive": (110, 110, 50),
    "ochre": (200, 150, 60),
    "cadmium": (230, 190, 40),
    "vermilion": (210, 70, 40),
    "crimson": (150, 30, 50),
    "umber": (100, 65, 40),
    "sepia": (70, 50, 35),
    "ivory": (235, 225, 200),
    "rose": (220, 150, 160),
    "violet": (110, 70, 140),
    "slate": (90, 100, 110),
    "black": (25, 25, 30),
}

SIZE_RANGE = (60, 160)  # pixels a side, drawn independently: varied sizes and aspect ratios
GRAYSCALE_SHARE = 0.06  # like the real set, a few paintings are single-channel
IMBALANCE = 12.0  # largest class / smallest class, as in the real set (877 vs 24 ~ 36)
MIN_CLASS = 3  # a stratified split needs a few images of every painter


def _colors(rng: np.random.Generator, palette: np.ndarray, n: int, jitter: int = 22) -> list[Color]:
    picks = palette[rng.integers(0, len(palette), n)] + rng.integers(-jitter, jitter + 1, (n, 3))
    return [tuple(int(v) for v in c) for c in np.clip(picks, 0, 255)]


@dataclass(frozen=True)
class Brush:
    """How a painter lays down straight strokes: how many, in which direction, how long and wide."""

    count: int
    angle: float  # degrees, the strokes' mean direction
    spread: float  # degrees either side of ``angle``
    length: float  # pixels, on average
    width: int  # pixels


def _strokes(draw: ImageDraw.ImageDraw, rng: np.random.Generator, area: tuple[float, float], palette: np.ndarray,
             brush: Brush) -> None:
    """``brush.count`` straight strokes over the ``area`` (width, height) from the top left: the painter's hand."""
    w, h = area
    count = brush.count
    xs, ys = rng.uniform(0, w, count), rng.uniform(0, h, count)
    angles = np.deg2rad(brush.angle + rng.uniform(-brush.spread, brush.spread, count))
    half = brush.length * rng.uniform(0.5, 1.5, count) / 2
    dx, dy = np.cos(angles) * half, np.sin(angles) * half
    widths = rng.integers(max(1, brush.width - 1), brush.width + 2, count)
    for x, y, ex, ey, c, wd in zip(xs, ys, dx, dy, _colors(rng, palette, count), widths):
        draw.line([(x - ex, y - ey), (x + ex, y + ey)], fill=c, width=int(wd))


def _horizon(draw, rng, w, h, palette) -> None:
    # Sky over land, split at a random height, in short horizontal dabs.
    line = int(h * rng.uniform(0.3, 0.7))
    sky, land = _colors(rng, palette[:2], 1)[0], _colors(rng, palette[2:], 1)[0]
    draw.rectangle([0, 0, w, line], fill=sky)
    draw.rectangle([0, line, w, h], fill=land)
    _strokes(draw, rng, (w, line), palette[:2], Brush(w * line // 40, 0, 8, w * 0.12, 2))
    n = w * (h - line) // 40
    xs, ys = rng.uniform(0, w, n), rng.uniform(line, h, n)
    for x, y, c in zip(xs, ys, _colors(rng, palette[2:], n)):
        draw.line([(x - 5, y), (x + 5, y + rng.uniform(-1, 1))], fill=c, width=2)


def _blobs(draw, rng, w, h, palette) -> None:
    # Soft masses gathered around the centre, then short strokes in every direction.
    draw.rectangle([0, 0, w, h], fill=_colors(rng, palette, 1)[0])
    for c in _colors(rng, palette, int(rng.integers(3, 7))):
        cx, cy = rng.normal(w / 2, w / 8), rng.normal(h / 2, h / 8)
        rx, ry = rng.uniform(0.1, 0.3) * w, rng.uniform(0.1, 0.3) * h
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=c)
    _strokes(draw, rng, (w, h), palette, Brush(w * h // 60, 0, 180, 6, 2))


def _vertical(draw, rng, w, h, palette) -> None:
    # Long, thick, near-vertical strokes over the whole canvas.
    draw.rectangle([0, 0, w, h], fill=_colors(rng, palette, 1)[0])
    _strokes(draw, rng, (w, h), palette, Brush(w * h // 70, 90, 7, h * 0.45, 4))


def _dots(draw, rng, w, h, palette) -> None:
    # Pointillism: a pale ground covered in small dots of pure colour.
    draw.rectangle([0, 0, w, h], fill=_colors(rng, palette[-1:], 1)[0])
    n = w * h // 7
    xs, ys, rs = rng.uniform(0, w, n), rng.uniform(0, h, n), rng.uniform(0.8, 2.0, n)
    for x, y, r, c in zip(xs, ys, rs, _colors(rng, palette[:-1], n, jitter=30)):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=c)


def _blocks(draw, rng, w, h, palette) -> None:
    # Geometric blocks separated by dark bars.
    xs = np.sort(rng.uniform(0, w, int(rng.integers(2, 5))))
    ys = np.sort(rng.uniform(0, h, int(rng.integers(2, 5))))
    cols, rows = [0, *xs, w], [0, *ys, h]
    for i in range(len(cols) - 1):
        for j in range(len(rows) - 1):
            draw.rectangle([cols[i], rows[j], cols[i + 1], rows[j + 1]], fill=_colors(rng, palette, 1, jitter=12)[0])
    bar = int(rng.integers(2, 5))
    for x in xs:
        draw.line([(x, 0), (x, h)], fill=POOL["black"], width=bar)
    for y in ys:
        draw.line([(0, y), (w, y)], fill=POOL["black"], width=bar)


def _hatching(draw, rng, w, h, palette) -> None:
    # Long thin diagonal strokes, all leaning the same way.
    draw.rectangle([0, 0, w, h], fill=_colors(rng, palette, 1)[0])
    _strokes(draw, rng, (w, h), palette, Brush(w * h // 45, 45, 6, max(w, h) * 0.3, 1))


def _swirls(draw, rng, w, h, palette) -> None:
    # Curved strokes around a few centres.
    draw.rectangle([0, 0, w, h], fill=_colors(rng, palette, 1)[0])
    n = w * h // 50
    cx, cy = rng.uniform(0, w, n), rng.uniform(0, h, n)
    rs, starts = rng.uniform(4, 14, n), rng.uniform(0, 360, n)
    for x, y, r, a, c in zip(cx, cy, rs, starts, _colors(rng, palette, n)):
        draw.arc([x - r, y - r, x + r, y + r], a, a + 120, fill=c, width=3)


def _chiaroscuro(draw, rng, w, h, palette) -> None:
    # A dark ground with one lit oval figure, finely brushed.
    draw.rectangle([0, 0, w, h], fill=_colors(rng, palette[:1], 1)[0])
    _strokes(draw, rng, (w, h), palette[:2], Brush(w * h // 50, rng.uniform(0, 180), 30, 5, 1))
    cx, cy = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.3, 0.6)
    rx, ry = w * rng.uniform(0.12, 0.22), h * rng.uniform(0.18, 0.3)
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=_colors(rng, palette[2:], 1)[0])
    _strokes(draw, rng, (w, h), palette[1:], Brush(w * h // 120, 90, 40, 4, 1))


def _shards(draw, rng, w, h, palette) -> None:
    # Cubist facets: overlapping triangles with dark outlines.
    draw.rectangle([0, 0, w, h], fill=_colors(rng, palette, 1)[0])
    for c in _colors(rng, palette, int(rng.integers(12, 24))):
        pts = [(float(rng.uniform(-10, w + 10)), float(rng.uniform(-10, h + 10))) for _ in range(3)]
        draw.polygon(pts, fill=c, outline=POOL["sepia"])


def _wash(draw, rng, w, h, palette) -> None:
    # Watercolour: broad overlapping patches, blurred afterwards (see BLURRED).
    draw.rectangle([0, 0, w, h], fill=_colors(rng, palette, 1)[0])
    for c in _colors(rng, palette, int(rng.integers(5, 10))):
        x, y = rng.uniform(-20, w), rng.uniform(-20, h)
        draw.rectangle([x, y, x + rng.uniform(20, 60), y + rng.uniform(10, 40)], fill=c)


def _engraving(draw, rng, w, h, palette) -> None:
    # Cross-hatched dark lines on a light ground, like a print.
    draw.rectangle([0, 0, w, h], fill=_colors(rng, palette[-1:], 1)[0])
    base = rng.uniform(0, 180)
    for angle in (base, base + 90):
        _strokes(draw, rng, (w, h), palette[:-1], Brush(w * h // 90, angle, 4, 12, 1))


def _rings(draw, rng, w, h, palette) -> None:
    # Concentric circles in a few places on a flat ground.
    draw.rectangle([0, 0, w, h], fill=_colors(rng, palette, 1)[0])
    for _ in range(int(rng.integers(2, 6))):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, 35)
        for c in _colors(rng, palette, int(rng.integers(3, 6))):
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=c, width=3)
            r *= 0.72


@dataclass(frozen=True)
class Style:
    """One invented painter: ``artists.csv`` fields, a palette and a way of painting."""

    name: str
    years: str
    genre: str
    nationality: str
    palette: tuple[str, ...]
    paint: Painter


STYLES: tuple[Style, ...] = (
    Style("Aldo Marenzi", "1841 - 1902", "Impressionism", "Italian", ("sky", "ultramarine", "sage", "ochre"), _horizon),
    Style("Berthe Lindqvist", "1853 - 1921", "Expressionism", "Swedish", ("rose", "vermilion", "cadmium", "sage"), _blobs),
    Style("Casimir Olenko", "1870 - 1938", "Post-Impressionism", "Polish", ("teal", "sage", "olive", "ochre"), _vertical),
    Style("Émile Vautrin", "1859 - 1899", "Pointillism", "French",
          ("vermilion", "cadmium", "sky", "ultramarine", "ivory"), _dots),
    Style("Dora Kessling", "1882 - 1960", "Neoplasticism", "Dutch", ("vermilion", "cadmium", "ultramarine", "ivory"), _blocks),
    Style("Feliks Haraldsen", "1865 - 1930", "Symbolism", "Norwegian", ("slate", "violet", "sky", "ivory"), _hatching),
    Style("Greta Montfort", "1860 - 1915", "Post-Impressionism", "Belgian", ("ultramarine", "cadmium", "sky", "teal"), _swirls),
    Style("Hendrik Vos", "1612 - 1671", "Baroque", "Dutch", ("sepia", "umber", "ochre", "ivory"), _chiaroscuro),
    Style("Inès Barcala", "1887 - 1951", "Cubism", "Spanish", ("ochre", "umber", "slate", "olive"), _shards),
    Style("Julian Ashcombe", "1790 - 1848", "Romanticism", "British", ("sky", "rose", "sage", "ivory"), _wash),
    Style("Konrad Albrechts", "1480 - 1536", "Northern Renaissance", "German", ("black", "sepia", "umber", "ivory"), _engraving),
    Style("Lev Sorokin", "1874 - 1942", "Abstractionism", "Russian", ("crimson", "violet", "cadmium", "teal"), _rings),
)
BLURRED = {_wash}
MAX_ARTISTS = len(STYLES)
FIELDS = ["id", "name", "years", "genre", "nationality", "bio", "wikipedia", "paintings"]


def class_sizes(n_artists: int, n_images: int) -> list[int]:
    """Images per painter, geometrically decreasing so the largest is ~``IMBALANCE`` x the smallest.

    Sums to ``n_images``; each painter gets at least ``MIN_CLASS``.
    """
    ratios = [IMBALANCE ** (-i / max(n_artists - 1, 1)) for i in range(n_artists)]
    sizes = [max(MIN_CLASS, math.floor(n_images * r / sum(ratios))) for r in ratios]
    sizes[0] += n_images - sum(sizes)  # rounding remainder goes to the largest class
    return sizes


def paint(style: Style, rng: np.random.Generator) -> Image.Image:
    """One painting by ``style``: random size, colours and layout within the painter's manner."""
    w, h = (int(v) for v in rng.integers(SIZE_RANGE[0], SIZE_RANGE[1] + 1, 2))
    # Each painting shifts the whole palette a little, so colours vary between works.
    palette = np.array([POOL[c] for c in style.palette], dtype=np.int64) + rng.integers(-15, 16, 3)
    img = Image.new("RGB", (w, h))
    style.paint(ImageDraw.Draw(img), rng, w, h, palette)
    if style.paint in BLURRED:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(2, 4))))
    # Canvas grain, so no area is one flat colour.
    arr = np.asarray(img, dtype=np.int16) + rng.normal(0, 5, (h, w, 1)).astype(np.int16)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < GRAYSCALE_SHARE:
        img = img.convert("L")
    return img


def generate(root: Path, n_artists: int = 10, n_images: int = 400, seed: int = 42) -> Path:
    """Write a synthetic data set in the Kaggle layout under ``root`` and return ``root``.

    ``images/images/<Artist>/<Artist>_<n>.jpg`` and ``artists.csv`` with the Kaggle columns.
    Every image has its own random stream derived from (seed, painter, index), so the
    files depend on nothing but these arguments.
    """
    if not 2 <= n_artists <= MAX_ARTISTS:
        raise ValueError(f"n_artists must lie in [2, {MAX_ARTISTS}]")
    root.mkdir(parents=True, exist_ok=True)
    sizes = class_sizes(n_artists, n_images)
    rows = []
    with tqdm(total=sum(sizes), desc="synthetic", unit="img") as bar:
        for index, (style, count) in enumerate(zip(STYLES, sizes)):
            folder = style.name.replace(" ", "_")
            out = root / "images" / "images" / folder
            out.mkdir(parents=True, exist_ok=True)
            for n in range(count):
                rng = np.random.default_rng([seed, index, n])
                img = paint(style, rng)
                img.save(out / f"{folder}_{n + 1}.jpg", "JPEG", quality=int(rng.integers(80, 96)))
                bar.update()
            bio = f"An invented {style.nationality.lower()} painter ({style.genre.lower()}), generated procedurally."
            rows.append([index, style.name, style.years, style.genre, style.nationality, bio, "", count])
    with open(root / "artists.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        writer.writerows(rows)
    return root
