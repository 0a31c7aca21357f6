"""A source folder in the Kaggle layout, normalised into ``data/raw``.

Whatever the source, the result is the same layout: ``images/<Folder>/<file>`` (names in
Unicode NFC, files copied byte for byte), ``artists.csv``, ``manifest.csv``
(``path,artist,sha256,width,height,mode``) and ``rejected.csv`` (``path,reason``). Every image
is decoded once; unreadable ones, links, duplicates and name clashes are listed in
``rejected.csv`` with the reason.
"""

from __future__ import annotations

import csv
import logging
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from tqdm import tqdm

from painter_id.core import paths
from painter_id.core.atomic import write_csv
from painter_id.core.errors import PipelineError
from painter_id.core.parallel import open_workers, worker_count
from painter_id.core.params import DataParams
from painter_id.data.images import ImageRejected, is_image_name, open_image, sha256_file
from painter_id.sources.layout import Layout, find_layout, nfc
from painter_id.sources.names import MAX_NAME_BYTES, artist_key, artist_name, folder_name, name_problem, shown

log = logging.getLogger(__name__)

MANIFEST_FIELDS = ["path", "artist", "sha256", "width", "height", "mode"]


@dataclass(frozen=True)
class Candidate:
    """An image file found in an artist folder of the source."""

    src: Path
    rel: str  # NFC path relative to the source root, as written in rejected.csv
    artist: str
    out: str  # path relative to data/raw
    problem: Optional[str] = None  # why it is rejected before decoding (its name, a link)


def read_artists(path: Optional[Path]) -> tuple[list[str], list[dict[str, str]]]:
    """The source's ``artists.csv`` as (columns, rows), names in NFC; empty if there is none."""
    if path is None:
        return [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PipelineError(f"{path}: cannot read it as a UTF-8 CSV ({type(exc).__name__}); fix or remove the file") from None
    if "name" not in columns:
        raise PipelineError(f"{path}: has no 'name' column; it must list artists as in the Kaggle artists.csv")
    for row in rows:
        row["name"] = artist_name(row.get("name") or "")
    return columns, [row for row in rows if row["name"]]


def folder_problem(folder: Path, artist: str) -> Optional[str]:
    """Why no file of an artist folder can be kept because of the folder's name, or ``None``."""
    problem = name_problem(folder.name)
    if problem:
        return f"artist folder {problem}"
    if not artist:
        return (f"artist folder name {folder.name!r} is blank once underscores, spaces and control characters "
                "are removed; rename the folder")
    if len(folder_name(artist).encode("utf-8")) > MAX_NAME_BYTES:
        return f"artist name {artist[:40]!r}... is longer than {MAX_NAME_BYTES} bytes as a folder name; shorten it"
    return None


def find_candidates(layout: Layout, names: list[str]) -> list[Candidate]:
    """Every image-named file of every artist folder, matched to an ``artists.csv`` name, sorted.

    Links policy: a symbolic link is never followed (it could point anywhere, and its
    target would be copied into data/raw and the DVC remote); a linked file is listed in
    rejected.csv, a linked folder is skipped (see :mod:`painter_id.sources.layout`).
    """
    by_key = {}
    for name in names:
        by_key.setdefault(artist_key(name), name)
    found = []
    for folder in layout.artist_dirs:
        artist = "" if name_problem(folder.name) else by_key.get(artist_key(folder.name)) or artist_name(folder.name)
        problem = folder_problem(folder, artist)
        if names and not problem and artist_key(folder.name) not in by_key:
            log.warning("folder %s matches no artists.csv row; keeping it as artist %r", folder.name, artist)
        for src in sorted(folder.iterdir()):
            # Hidden files (.DS_Store, ._x.jpg) and non-image suffixes are not paintings: skipped silently.
            if not is_image_name(src) or not (src.is_file() or src.is_symlink()):
                continue
            why = problem or name_problem(src.name)
            if src.is_symlink():
                why = "symbolic link: links are not followed; copy the file itself into the folder"
            rel = shown(nfc(src.relative_to(layout.root).as_posix()))
            found.append(Candidate(src, rel, artist, f"images/{folder_name(artist)}/{nfc(src.name)}", why))
    return sorted(found, key=lambda c: c.rel)


def inspect_image(path: str, max_pixels: int) -> Union[tuple[str, int, int, str], str]:
    """Decode ``path`` fully; ``(sha256, width, height, mode)``, or the reason it is rejected."""
    try:
        with open_image(path, max_pixels=max_pixels) as img:
            width, height, mode = img.width, img.height, img.mode
        return sha256_file(path), width, height, mode
    except ImageRejected as exc:
        return str(exc)
    except OSError as exc:
        return f"unreadable: {exc.strerror or type(exc).__name__}"


def inspect_all(files: list[str], max_pixels: int, workers: int = 0) -> list[Union[tuple[str, int, int, str], str]]:
    """:func:`inspect_image` over ``paths``, in order, on every core when there are enough."""
    jobs = [(path, max_pixels) for path in files]
    with open_workers(worker_count(len(jobs), workers)) as pool:
        return list(pool.map(inspect_job, jobs, desc="decode"))


def inspect_job(job: tuple[str, int]) -> Union[tuple[str, int, int, str], str]:
    """:func:`inspect_image` of one ``(path, max_pixels)`` job (a picklable worker function)."""
    return inspect_image(*job)


def select_artists(counts: Counter, min_images: int, top_n: Optional[int]) -> list[str]:
    """Artists with at least ``min_images`` images, then the ``top_n`` largest (ties by name)."""
    ranked = sorted((a for a, n in counts.items() if n >= min_images), key=lambda a: (-counts[a], a))
    dropped = sorted(set(counts) - set(ranked))
    if dropped:
        log.info("dropped %d artists with fewer than data.min_images=%d images: %s", len(dropped), min_images, ", ".join(dropped))
    if top_n is not None and len(ranked) > top_n:
        log.info("keeping the data.top_n=%d largest artists; dropped %s", top_n, ", ".join(ranked[top_n:]))
        ranked = ranked[:top_n]
    return sorted(ranked)


def screen(candidates: list[Candidate], results: list) -> tuple[list[tuple[Candidate, tuple]], list[tuple[str, str]]]:
    """Split decoded candidates into kept ``(candidate, (sha256, width, height, mode))`` and rejected ``(path, reason)``.

    Duplicates policy: the first copy in sorted order is kept, whichever artist it is
    under; later copies are rejected, naming the kept one.
    """
    kept, rejected = [], []
    first_by_sha: dict[str, Candidate] = {}
    first_by_out: dict[str, Candidate] = {}
    for cand, result in zip(candidates, results):
        if cand.problem:
            rejected.append((cand.rel, cand.problem))
        elif isinstance(result, str):
            rejected.append((cand.rel, result))
        elif cand.out in first_by_out:
            kept_rel = first_by_out[cand.out].rel
            rejected.append((cand.rel, f"name clash after Unicode normalization: {cand.out} is already {kept_rel}"))
        elif result[0] in first_by_sha:
            first = first_by_sha[result[0]]
            where = " under another artist" if first.artist != cand.artist else ""
            rejected.append((cand.rel, f"duplicate of {first.rel}{where}"))
        else:
            first_by_sha[result[0]] = first_by_out[cand.out] = cand
            kept.append((cand, result))
    return kept, rejected


def ingest(root: Path, out: Path, params: DataParams, workers: int = 0) -> None:
    """Normalise the Kaggle-layout folder ``root`` into ``out`` (the future ``data/raw``), decoding in ``workers`` processes."""
    layout = find_layout(root)
    columns, artist_rows = read_artists(layout.artists_csv)
    if layout.artists_csv is None:
        log.info("%s: no artists.csv; building one from the artist folders", root)
    candidates = find_candidates(layout, [row["name"] for row in artist_rows])
    readable = [c for c in candidates if not c.problem]
    decoded = dict(zip(readable, inspect_all([str(c.src) for c in readable], params.max_pixels, workers)))
    results = [decoded.get(c) for c in candidates]

    kept, rejected = screen(candidates, results)

    counts = Counter(cand.artist for cand, _ in kept)
    chosen = set(select_artists(counts, params.min_images, params.top_n))
    if len(chosen) < 2:
        raise PipelineError(
            f"data.source={params.source}: only {len(chosen)} artist(s) left with at least data.min_images={params.min_images} "
            "readable images; at least 2 are needed (lower data.min_images or check the source)"
        )
    kept = [(cand, result) for cand, result in kept if cand.artist in chosen]
    for cand, _ in tqdm(kept, desc="copy", unit="img"):
        (out / cand.out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cand.src, out / cand.out)

    write_csv(out / "manifest.csv", MANIFEST_FIELDS, sorted([c.out, c.artist, *r] for c, r in kept))
    write_csv(out / "rejected.csv", ["path", "reason"], sorted(rejected))
    write_artists(out / "artists.csv", columns, artist_rows, Counter(c.artist for c, _ in kept))

    rejected_paths = {rel for rel, _ in rejected}
    rejected_by_artist = Counter(c.artist for c in candidates if c.rel in rejected_paths)
    for artist in sorted(chosen):
        log.info("%s: %d images kept, %d rejected", artist, counts[artist], rejected_by_artist[artist])
    log.info("kept %d images of %d artists; rejected %d files (see %s)", len(kept), len(chosen), len(rejected), paths.REJECTED)


def write_artists(path: Path, columns: list[str], rows: list[dict[str, str]], counts: Counter) -> None:
    """``artists.csv`` with the source's columns, one row per kept artist, ``paintings`` = images kept.

    Rows of artists without kept images are dropped; kept folders missing from the source
    table get a row with only ``name`` and ``paintings``.
    """
    columns = columns or ["name"]
    if "paintings" not in columns:
        columns = [*columns, "paintings"]
    out_rows, seen = [], set()
    for row in rows:
        if row["name"] in counts and row["name"] not in seen:
            seen.add(row["name"])
            out_rows.append([counts[row["name"]] if col == "paintings" else row.get(col, "") for col in columns])
    for name in sorted(set(counts) - seen):
        out_rows.append([name if col == "name" else counts[name] if col == "paintings" else "" for col in columns])
    write_csv(path, columns, out_rows)
