"""Command ``painter-register``: promote a training run's MLflow Model to a registered model version.

    painter-register                              # the best run by accuracy
    painter-register --metric test_macro_f1       # the best by another metric
    painter-register --run tatty-jean             # a named run (or a run id)
    painter-register --name painter-id --alias champion

See :mod:`painter_id.tracking.registry`. Also ``python -m painter_id.cli.register``.
"""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from painter_id.cli.store_options import add_store_arguments, store_from_arguments
from painter_id.core.errors import PipelineError, first_line
from painter_id.core.params import load_section
from painter_id.core.runner import run_stage
from painter_id.tracking.registry import DEFAULT_ALIAS, DEFAULT_METRIC, DEFAULT_NAME


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line flags of ``painter-register``."""
    parser = argparse.ArgumentParser(prog="painter-register", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--run", default=None, help="run name (e.g. the DVC experiment name) or run id; "
                                                    "default: the best run by --metric")
    parser.add_argument("--metric", default=DEFAULT_METRIC, help="default: %(default)s")
    parser.add_argument("--lowest", action="store_true", help="the lowest --metric is best (for a loss)")
    parser.add_argument("--name", default=DEFAULT_NAME, help="registered model (default: %(default)s)")
    parser.add_argument("--alias", default=DEFAULT_ALIAS, help="alias moved to the run's version (default: %(default)s)")
    parser.add_argument("--allow-other-dataset", action="store_true",
                        help="move the alias even from a model trained on other paintings")
    add_store_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Register the chosen run's model and print the new version."""
    args = parse_args(argv)
    import mlflow
    from mlflow.exceptions import MlflowException

    from painter_id.tracking.compare import fetch_runs
    from painter_id.tracking.registry import best_run, check_names, check_same_dataset, find_run, register

    check_names(args.name, args.alias)  # before anything is read or written
    uri, experiment = store_from_arguments(args, load_section("mlflow"))
    runs = fetch_runs(uri, experiment)
    if not runs:
        raise PipelineError(f"no runs in MLflow experiment {experiment!r} at {uri}; run `dvc repro` first")
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    run = find_run(runs, args.run) if args.run else best_run(client, runs, args.metric, args.lowest)
    try:
        if not args.allow_other_dataset:
            check_same_dataset(client, run, args.name, args.alias)
        version, created = register(client, run, args.name, args.alias)
    except MlflowException as exc:
        raise PipelineError(f"cannot register in {uri}: {first_line(exc)[:300]}") from None
    score = run.data.metrics.get(args.metric)
    scored_on = run.data.tags.get("scored_on")
    print(f"{'registered' if created else 'already registered:'} {args.name} version {version.version} from run "
          f"{run.info.run_name} ({run.info.run_id}"
          f"{f', {args.metric} {score:.4f}' if score is not None else ''}{f' on {scored_on}' if scored_on else ''}); "
          f"alias {args.alias!r} -> version {version.version}: models:/{args.name}@{args.alias}")


def cli() -> None:
    """Entry point of the ``painter-register`` console command."""
    run_stage("register", main)


if __name__ == "__main__":
    cli()
