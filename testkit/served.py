"""A model trained, evaluated and registered once, and what the serving tests compare of its answers."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from painter_id.cli import predict as predict_command

NAME = "painter-id"


CHAMPION = f"models:/{NAME}@champion"


def predict_csv(capsys, *args: str) -> dict[str, list[tuple[str, float]]]:
    """``painter-predict`` output as ``{file name: [(artist, probability), ...]}``."""
    predict_command.main(list(args))
    grouped: dict[str, list[tuple[str, float]]] = {}
    for row in csv.DictReader(io.StringIO(capsys.readouterr().out)):
        grouped.setdefault(Path(row["path"]).name, []).append((row["artist"], float(row["probability"])))
    return grouped


def as_lists(frame_rows: list[dict], names: list[str]) -> dict[str, list[tuple[str, float]]]:
    """The model's long output (index, rank, artist, probability) keyed by file name."""
    grouped: dict[str, list[tuple[str, float]]] = {}
    for row in sorted(frame_rows, key=lambda r: (r["index"], r["rank"])):
        grouped.setdefault(names[row["index"]], []).append((row["artist"], row["probability"]))
    return grouped


def assert_same(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)
    for name in expected:
        assert [a for a, _ in got[name]] == [a for a, _ in expected[name]], name
        assert [p for _, p in got[name]] == pytest.approx([p for _, p in expected[name]], abs=1e-5), name
