"""Command ``painter-compare``: the pipeline's MLflow runs side by side, in the terminal.

    painter-compare                          # best accuracy first, as a table
    painter-compare --sort macro_f1 --where model.backbone=MobileNet
    painter-compare --all-params --format csv > runs.csv

See :mod:`painter_id.tracking.compare` for the columns. Reads the same store the train stage
writes (``mlflow.tracking_uri`` in params.yaml, ``$MLFLOW_TRACKING_URI`` overriding), so it
needs no server and no browser. Also ``python -m painter_id.cli.compare``.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Optional, Sequence

from painter_id.cli.spreadsheet import SafeWriter
from painter_id.cli.store_options import add_store_arguments, store_from_arguments
from painter_id.core.params import load_section
from painter_id.core.runner import positive_int, run_stage
from painter_id.tracking.compare import SORTABLE, Column, columns, fetch_runs, parse_filters, render_table, rows_of, select


def write_csv(runs: Sequence, cols: Sequence[Column], out) -> None:
    """The same rows as CSV, full precision."""
    writer = SafeWriter(out)
    writer.writerow([column.name for column in cols])
    for row in rows_of(runs, cols):
        writer.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in row])


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line flags of ``painter-compare``."""
    parser = argparse.ArgumentParser(prog="painter-compare", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--sort", default="accuracy", choices=SORTABLE, help="metric to sort by (default: accuracy)")
    parser.add_argument("--ascending", action="store_true", help="smallest first")
    parser.add_argument("--where", action="append", default=[], metavar="PARAM=VALUE",
                        help="keep runs whose MLflow param equals VALUE, e.g. model.backbone=MobileNet (repeatable)")
    parser.add_argument("--format", default="table", choices=["table", "csv"], help="output format")
    parser.add_argument("--limit", type=positive_int, default=None, help="show at most this many runs (1 or more)")
    parser.add_argument("--all-params", action="store_true",
                        help="every param, not only those whose value differs among the runs listed")
    add_store_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Print the runs of the pipeline's MLflow experiment side by side."""
    args = parse_args(argv)
    uri, experiment = store_from_arguments(args, load_section("mlflow"))
    runs = select(fetch_runs(uri, experiment), parse_filters(args.where), args.sort, args.ascending, args.limit)
    cols = columns(runs, args.all_params)
    if args.format == "csv":
        write_csv(runs, cols, sys.stdout)
    elif runs:
        print(render_table(runs, cols))
    else:
        print(f"no runs in MLflow experiment {experiment!r} at {uri}", file=sys.stderr)


def cli() -> None:
    """Entry point of the ``painter-compare`` console command."""
    run_stage("compare", main)


if __name__ == "__main__":
    cli()
