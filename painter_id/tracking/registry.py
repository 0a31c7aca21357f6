"""The model registry: promote a training run's MLflow Model to a registered model version.

Creates a new version of the registered model ``--name`` from the run's logged model, tagged
with the DVC experiment name (``dvc.exp_name``) and the git commit of the training, and
moves ``--alias`` to it, so ``models:/<name>@<alias>`` (painter-predict, mlflow models serve,
painter-page) always means the promoted one. Used by ``painter-register``.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Sequence

from painter_id.core.errors import PipelineError

if TYPE_CHECKING:  # mlflow is imported where it is used: the command answers --help at once
    import mlflow
    from mlflow.entities import Run

log = logging.getLogger(__name__)

DEFAULT_NAME = "painter-id"
DEFAULT_ALIAS = "champion"
DEFAULT_METRIC = "test_accuracy"
# painter_id.tracking.mlflow_model.NAME; not imported, since that module loads TensorFlow (seconds) for nothing here.
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
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Which painter made this painting (painter-id)")
    version = client.create_model_version(name, source=f"models:/{model_id}", run_id=run.info.run_id,
                                          model_id=model_id, tags={k: v for k, v in tags.items() if v})
    client.set_registered_model_alias(name, alias, version.version)
    return version
