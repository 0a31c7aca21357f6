"""The ``--tracking-uri`` and ``--experiment`` flags of the commands that read the pipeline's runs."""

from __future__ import annotations

import argparse

from painter_id.core.params import MlflowParams


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tracking-uri`` and ``--experiment``, as the commands that read the pipeline's runs take them."""
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: as the train stage)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default: mlflow.experiment)")


def store_from_arguments(args: argparse.Namespace, params: MlflowParams) -> tuple[str, str]:
    """``(tracking URI, experiment name)``: the command-line flags, else what the train stage uses."""
    from painter_id.tracking.store import resolve_tracking_uri

    return args.tracking_uri or resolve_tracking_uri(params), args.experiment or params.experiment
