"""Compare the MLflow runs of the pipeline side by side, in the terminal.

    painter-compare                          # best accuracy first, as a table
    painter-compare --sort macro_f1 --where model.backbone=MobileNet
    painter-compare --format csv > runs.csv

(or ``python -m painter_id.compare``).
Reads the same store the train stage writes (``mlflow.tracking_uri`` in params.yaml,
``$MLFLOW_TRACKING_URI`` overriding), so it needs no server and no browser.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import mlflow
from mlflow.entities import Run

from painter_id import tracking
from painter_id.errors import PipelineError, first_line
from painter_id.params import load_section
from painter_id.runner import positive_int, run_stage
from painter_id.spreadsheet import SafeWriter


@dataclass(frozen=True)
class Column:
    """One column of the comparison: its header and how to read it from a run."""

    name: str
    read: Callable[[Run], object]
    numeric: bool = False


def _param(key: str, *older: str) -> Callable[[Run], object]:
    """The run's param ``key``, else the first of its ``older`` names that the run has."""
    return lambda run: next((run.data.params[k] for k in (key, *older) if k in run.data.params), "")


def _metric(key: str) -> Callable[[Run], object]:
    return lambda run: run.data.metrics.get(key, math.nan)


COLUMNS = [
    Column("run", lambda run: run.info.run_name or run.info.run_id[:8]),
    Column("backbone", _param("model.backbone")),
    Column("frozen_layers", _param("model.frozen_layers")),
    # Runs from before the rename (dvc#10296) logged resize.size.
    Column("image_size", _param("resize.image_size", "resize.size")),
    Column("weights", _param("model.weights")),
    Column("accuracy", _metric("test_accuracy"), numeric=True),
    Column("macro_f1", _metric("test_macro_f1"), numeric=True),
    Column("top5_accuracy", _metric("test_top5_accuracy"), numeric=True),
    Column("train_seconds", _metric("train.train_seconds"), numeric=True),
    Column("status", lambda run: run.info.status),
]
SORTABLE = [column.name for column in COLUMNS if column.numeric]


def parse_filters(filters: Sequence[str]) -> dict[str, str]:
    """Turn ``["model.backbone=MobileNet"]`` into ``{"model.backbone": "MobileNet"}``."""
    parsed = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PipelineError(f"--where {item!r}: use PARAM=VALUE, e.g. --where model.backbone=MobileNet")
        parsed[key.strip()] = value.strip()
    return parsed


def fetch_runs(uri: str, experiment: str) -> list[Run]:
    """Every active run of ``experiment`` in the store at ``uri`` (an empty list if it has none)."""
    db = tracking.sqlite_path(uri)
    if db is not None and not db.exists():
        raise PipelineError(f"no MLflow store at {db}; run `dvc repro` first, or pass --tracking-uri")
    try:
        # An unreachable server must fail within seconds, as train does, not after minutes of retries.
        with tracking.quick_http():
            client = mlflow.MlflowClient(uri)
            found = client.get_experiment_by_name(experiment)
            if found is None:
                return []
            return list(client.search_runs([found.experiment_id], max_results=50_000))
    except Exception as exc:  # MLflow raises many types for a missing or broken store
        raise PipelineError(f"cannot read MLflow store {uri}: {first_line(exc)[:300]}; check --tracking-uri "
                            "(a damaged store: restore it from a backup)") from None


def select(runs: Sequence[Run], where: dict[str, str], sort: str, ascending: bool = False,
           limit: Optional[int] = None) -> list[list]:
    """Rows of :data:`COLUMNS` for runs matching ``where``, sorted by ``sort`` (missing values last)."""
    kept = [run for run in runs if all(run.data.params.get(k) == v for k, v in where.items())]
    rows = [[column.read(run) for column in COLUMNS] for run in kept]
    key_index = [column.name for column in COLUMNS].index(sort)

    def sort_key(row: list) -> tuple:
        value = row[key_index]
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        return (missing, 0.0 if missing else (value if ascending else -value))

    rows.sort(key=sort_key)
    return rows[:limit] if limit else rows


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def render_table(rows: list[list]) -> str:
    """A plain aligned text table with a header line."""
    header = [column.name for column in COLUMNS]
    cells = [header] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    numeric = [column.numeric for column in COLUMNS]
    lines = []
    for line in cells:
        lines.append("  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(line, widths, numeric)).rstrip())
    return "\n".join(lines)


def write_csv(rows: list[list], out) -> None:
    """The same rows as CSV, full precision."""
    writer = SafeWriter(out)
    writer.writerow([column.name for column in COLUMNS])
    for row in rows:
        writer.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in row])


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line flags of ``painter-compare``."""
    parser = argparse.ArgumentParser(prog="painter-compare", description=__doc__.splitlines()[0])
    parser.add_argument("--sort", default="accuracy", choices=SORTABLE, help="metric to sort by (default: accuracy)")
    parser.add_argument("--ascending", action="store_true", help="smallest first")
    parser.add_argument("--where", action="append", default=[], metavar="PARAM=VALUE",
                        help="keep runs whose MLflow param equals VALUE, e.g. model.backbone=MobileNet (repeatable)")
    parser.add_argument("--format", default="table", choices=["table", "csv"], help="output format")
    parser.add_argument("--limit", type=positive_int, default=None, help="show at most this many runs (1 or more)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: as the train stage)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default: mlflow.experiment)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Print the runs of the pipeline's MLflow experiment side by side."""
    args = parse_args(argv)
    params = load_section("mlflow")
    uri = args.tracking_uri or tracking.resolve_tracking_uri(params)
    experiment = args.experiment or params.experiment
    rows = select(fetch_runs(uri, experiment), parse_filters(args.where), args.sort, args.ascending, args.limit)
    if args.format == "csv":
        write_csv(rows, sys.stdout)
    elif rows:
        print(render_table(rows))
    else:
        print(f"no runs in MLflow experiment {experiment!r} at {uri}", file=sys.stderr)


def cli() -> None:
    """Entry point of the ``painter-compare`` console command."""
    run_stage("compare", main)


if __name__ == "__main__":
    cli()
