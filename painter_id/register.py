"""Command ``painter-register``: promote a training run's MLflow Model to a registered model version.

    painter-register                              # the best run by test_accuracy
    painter-register --metric test_macro_f1       # the best by another metric
    painter-register --run tatty-jean             # a named run (or a run id)
    painter-register --name painter-id --alias champion

Creates a new version of the registered model ``--name`` from the run's logged model, tagged
with the DVC experiment name (``dvc.exp_name``) and the git commit of the training, and
moves ``--alias`` to it, so ``models:/<name>@<alias>`` (painter-predict, mlflow models serve,
painter-page) always means the promoted one. Also ``python -m painter_id.register``.
"""

from __future__ import annotations

import argparse
import logging
import math
from typing import Optional, Sequence

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from painter_id import tracking
from painter_id.compare import fetch_runs
from painter_id.errors import PipelineError, first_line
from painter_id.params import load_section
from painter_id.runner import run_stage

log = logging.getLogger(__name__)

DEFAULT_NAME = "painter-id"
DEFAULT_ALIAS = "champion"
DEFAULT_METRIC = "test_accuracy"
# painter_id.mlflow_model.NAME; not imported, since that module loads TensorFlow (seconds) for nothing here.
LOGGED_MODEL_NAME = "model"


def model_of(client: mlflow.MlflowClient, run: Run) -> str:
    """The id of the MLflow Model the train stage logged in ``run``, or a one-line error."""
    ids = [output.model_id for output in (run.outputs.model_outputs if run.outputs else [])]
    if not ids:
        found = client.search_logged_models([run.info.experiment_id],
                                            filter_string=f"source_run_id = '{run.info.run_id}'")
        ids = [model.model_id for model in found if model.name == LOGGED_MODEL_NAME]
    if not ids:
        raise PipelineError(f"run {run.info.run_name} ({run.info.run_id}) has no MLflow Model; "
                            "train it with mlflow.log_model: true")
    return ids[-1]


def find_run(runs: Sequence[Run], wanted: str) -> Run:
    """The run named ``wanted`` (run name or run id), the newest if several share the name."""
    matches = [run for run in runs if wanted in (run.info.run_id, run.info.run_name)]
    if not matches:
        raise PipelineError(f"--run {wanted!r}: no such run name or id in the experiment; "
                            "`painter-compare` lists them")
    return max(matches, key=lambda run: run.info.start_time or 0)


def best_run(client: mlflow.MlflowClient, runs: Sequence[Run], metric: str, lowest: bool = False) -> Run:
    """The finished run with a logged model and the best ``metric`` (highest, or lowest with ``lowest``)."""
    scored = [run for run in runs if run.info.status == "FINISHED"
              and not math.isnan(run.data.metrics.get(metric, math.nan))]
    with_model = [run for run in scored if _has_model(client, run)]
    if not with_model:
        raise PipelineError(f"no finished run has both the metric {metric!r} and an MLflow Model; run "
                            "`dvc repro` (train with mlflow.log_model: true, then evaluate) first")
    pick = min if lowest else max
    return pick(with_model, key=lambda run: run.data.metrics[metric])


def _has_model(client: mlflow.MlflowClient, run: Run) -> bool:
    try:
        model_of(client, run)
        return True
    except PipelineError:
        return False


def register(client: mlflow.MlflowClient, run: Run, name: str, alias: str) -> mlflow.entities.model_registry.ModelVersion:
    """A new version of ``name`` from ``run``'s model, tagged with its DVC experiment and commit; ``alias`` moves to it."""
    model_id = model_of(client, run)
    tags = {"dvc_exp": run.data.tags.get("dvc.exp_name") or run.info.run_name or "",
            "git_commit": run.data.tags.get("git.commit", ""), "run_name": run.info.run_name or ""}
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Which painter made this painting (painter-id)")
    version = client.create_model_version(name, source=f"models:/{model_id}", run_id=run.info.run_id,
                                          model_id=model_id, tags={k: v for k, v in tags.items() if v})
    client.set_registered_model_alias(name, alias, version.version)
    return version


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line flags of ``painter-register``."""
    parser = argparse.ArgumentParser(prog="painter-register", description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="run name (e.g. the DVC experiment name) or run id; "
                                                    "default: the best run by --metric")
    parser.add_argument("--metric", default=DEFAULT_METRIC, help="default: %(default)s")
    parser.add_argument("--lowest", action="store_true", help="the lowest --metric is best (for a loss)")
    parser.add_argument("--name", default=DEFAULT_NAME, help="registered model (default: %(default)s)")
    parser.add_argument("--alias", default=DEFAULT_ALIAS, help="alias moved to the new version (default: %(default)s)")
    tracking.add_store_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Register the chosen run's model and print the new version."""
    args = parse_args(argv)
    uri, experiment = tracking.store_from_arguments(args, load_section("mlflow"))
    runs = fetch_runs(uri, experiment)
    if not runs:
        raise PipelineError(f"no runs in MLflow experiment {experiment!r} at {uri}; run `dvc repro` first")
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    run = find_run(runs, args.run) if args.run else best_run(client, runs, args.metric, args.lowest)
    try:
        version = register(client, run, args.name, args.alias)
    except MlflowException as exc:
        raise PipelineError(f"cannot register in {uri}: {first_line(exc)[:300]}") from None
    score = run.data.metrics.get(args.metric)
    print(f"registered {args.name} version {version.version} from run {run.info.run_name} ({run.info.run_id}"
          f"{f', {args.metric} {score:.4f}' if score is not None else ''}); "
          f"alias {args.alias!r} -> version {version.version}: models:/{args.name}@{args.alias}")


def cli() -> None:
    """Entry point of the ``painter-register`` console command."""
    run_stage("register", main)


if __name__ == "__main__":
    cli()
