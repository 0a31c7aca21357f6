"""Artist and file names from a source: the rules that turn them into folders, CSV cells and labels.

Names are user data: every character is kept except blanks, which are normalised, and a name
that cannot become a path (not UTF-8, too long, blank) is reported, never guessed at.
"""

from __future__ import annotations

import unicodedata
from typing import Optional

from painter_id.sources.layout import nfc

# Control characters and separators (tab, newline, no-break space...) are blanks in a name.
BLANK_CATEGORIES = {"Cc", "Zs", "Zl", "Zp"}


MAX_NAME_BYTES = 255  # the longest file or folder name common file systems allow


def artist_key(name: str) -> str:
    """Matching key: ``Albrecht_Durer``, ``Albrecht_Dürer`` and ``Albrecht Dürer`` give the same."""
    decomposed = unicodedata.normalize("NFKD", artist_name(name))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.casefold().split())


def folder_name(artist: str) -> str:
    """Output folder of an artist: the NFC name with spaces (and any path separator) as ``_``.

    A leading ``.`` gets a ``_`` before it, so ``.`` and ``..`` never name a folder above.
    """
    name = nfc(artist).replace(" ", "_").replace("/", "_").replace("\\", "_")
    return f"_{name}" if name.startswith(".") else name


def shown(name: str) -> str:
    """``name`` as text that can be written anywhere: bytes that are not UTF-8 as ``\\xNN``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def name_problem(name: str) -> Optional[str]:
    """Why a file or folder name cannot become a path in data/raw and a CSV cell, or ``None``.

    The one rule every name from a source goes through: it must be UTF-8 (Linux allows any
    bytes; the CSVs, MLflow and plots need text).
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return f"name is not valid UTF-8 ({shown(name)}); rename it"
    return None


def artist_name(text: str) -> str:
    """The artist a folder name (or an ``artists.csv`` name) stands for; empty when nothing is left.

    NFC, ``_`` as a space, control characters and runs of white space as one space, trimmed.
    Every other character is kept: names are user data, and every writer must take them.
    """
    spaced = "".join(" " if unicodedata.category(ch) in BLANK_CATEGORIES else ch for ch in nfc(text).replace("_", " "))
    return " ".join(spaced.split())
