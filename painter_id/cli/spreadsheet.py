"""CSV meant for people: cells a spreadsheet would run as a formula are written as plain text.

Policy: the CSVs the commands print for people to open (``painter-predict``'s output,
``painter-compare --format csv``) pass every text cell through :func:`safe_cell`, so an
artist, file or run name starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return gets a leading ``'`` (the OWASP advice; spreadsheets show the text, not a formula).
The pipeline's own tables (``data/``, ``metrics/``) keep names verbatim: they are read back
by the stages and by ``dvc plots``, and a changed name would be another artist.
"""

from __future__ import annotations

import csv
from typing import Iterable, Sequence, TextIO

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """Numbers unchanged; anything else as text, with ``'`` before it when a spreadsheet would run it."""
    if value is None or isinstance(value, (int, float)):
        return value  # a negative number is a number to a spreadsheet, not a formula
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


class SafeWriter:
    """A ``csv.writer`` whose rows go through :func:`safe_cell`."""

    def __init__(self, out: TextIO, **kwargs) -> None:
        self._writer = csv.writer(out, **kwargs)

    def writerow(self, row: Sequence[object]) -> None:
        """Write one row, text cells neutralised."""
        self._writer.writerow([safe_cell(value) for value in row])

    def writerows(self, rows: Iterable[Sequence[object]]) -> None:
        """Write every row of ``rows``, text cells neutralised."""
        for row in rows:
            self.writerow(row)
