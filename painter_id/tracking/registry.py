"""The model registry: promote a training run's MLflow Model to a registered model version.

Creates a new version of the registered model ``--name`` from the run's logged model, tagged
with the DVC experiment name (``dvc.exp_name``) and the git commit of the training, and
moves ``--alias`` to it, so ``models:/<name>@<alias>`` (painter-predict, mlflow models serve,
painter-page) always means the promoted one. Used by ``painter-register``.
"""

from __future__ import annotations

import logging
import math
import re
from typing import TYPE_CHECKING, Optional, Sequence

from painter_id.core.compat import mlflow_tracking_uri
from painter_id.core.errors import PipelineError, first_line

if TYPE_CHECKING:  # mlflow is imported where it is used: the command answers --help at once
    import mlflow
    from mlflow.entities import Run

log = logging.getLogger(__name__)

DEFAULT_NAME = "painter-id"
DEFAULT_ALIAS = "champion"
# The headline evaluate logs: the test split's accuracy, or without one the cross-validated mean.
DEFAULT_METRIC = "accuracy"
# painter_id.tracking.mlflow_model.NAME; not imported, since that module loads more than this needs.
LOGGED_MODEL_NAME = "model"
# What the registry accepts (MLflow's rules, checked here before anything is written).
ALIAS = re.compile(r"^[\w-]{1,255}$")
VERSION_ALIAS = re.compile(r"^[vV]\d+$")


def check_names(name: str, alias: str) -> None:
    """A one-line error for a model name or alias the registry would refuse, before anything is written."""
    if not name.strip() or "/" in name or ":" in name or name in (".", ".."):
        raise PipelineError(f"--name {name!r}: a registered model's name must not be empty or hold '/' or ':'")
    if not ALIAS.match(alias):
        raise PipelineError(f"--alias {alias!r}: an alias is 1 to 255 letters, digits, '_' or '-' (e.g. champion)")
    if alias.lower() == "latest" or VERSION_ALIAS.match(alias):
        raise PipelineError(f"--alias {alias!r}: 'latest' and v<number> are names the registry keeps for itself; "
                            "choose another, e.g. champion")


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


def dataset_of(run: Run) -> Optional[str]:
    """The digest of the paintings ``run`` trained on (its MLflow dataset input), or None for a run without one."""
    inputs = run.inputs.dataset_inputs if run.inputs else []
    return inputs[0].dataset.digest if inputs else None


def find_run(runs: Sequence[Run], wanted: str) -> Run:
    """The run named ``wanted`` (run name or run id), the newest if several share the name."""
    matches = [run for run in runs if wanted in (run.info.run_id, run.info.run_name)]
    if not matches:
        raise PipelineError(f"--run {wanted!r}: no such run name or id in the experiment; "
                            "`painter-compare` lists them")
    return max(matches, key=lambda run: run.info.start_time or 0)


def best_run(client: mlflow.MlflowClient, runs: Sequence[Run], metric: str, lowest: bool = False) -> Run:
    """The finished run with a logged model and the best ``metric`` (highest, or lowest with ``lowest``).

    Only runs on the paintings of the newest finished run compete: a score on the synthetic
    set and one on real paintings are not comparable.
    """
    finished = [run for run in runs if run.info.status == "FINISHED"]
    newest = max(finished, key=lambda run: run.info.start_time or 0, default=None)
    scored = [run for run in finished if not math.isnan(run.data.metrics.get(metric, math.nan))
              and dataset_of(run) == dataset_of(newest)]
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


def check_same_dataset(client: mlflow.MlflowClient, run: Run, name: str, alias: str) -> None:
    """A one-line error when ``alias`` points at a model trained on other paintings than ``run``'s."""
    from mlflow.exceptions import MlflowException

    try:
        current = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return  # no such model or alias yet
    held = client.get_run(current.run_id) if current.run_id else None
    if held is not None and dataset_of(held) != dataset_of(run):
        raise PipelineError(f"{name}@{alias} is version {current.version}, trained on other paintings than run "
                            f"{run.info.run_name}; its scores are not comparable: pass --allow-other-dataset to "
                            "promote it anyway")


def register(client: mlflow.MlflowClient, run: Run, name: str, alias: str) -> tuple[object, bool]:
    """``run``'s model as a version of ``name`` with ``alias`` moved to it; returns ``(version, created)``.

    A model already registered under ``name`` gets no second version: the alias moves to the
    one it has. A new version is tagged with its DVC experiment and commit. Writes are ordered
    so a failure leaves the registry as it was: what this call created is deleted again.
    """
    from mlflow.exceptions import MlflowException

    model_id = model_of(client, run)
    undo = []
    # MLflow's SQL registry looks a logged model up in the process-wide store, not the client's.
    with mlflow_tracking_uri(client.tracking_uri):
        try:
            try:
                client.get_registered_model(name)
            except MlflowException:
                client.create_registered_model(name, description="Which painter made this painting (painter-id)")
                undo.append(lambda: client.delete_registered_model(name))
            # Searched by run id (hex, safe in a filter), not by the name, which may hold quotes.
            existing = [version for version in client.search_model_versions(f"run_id = '{run.info.run_id}'")
                        if version.name == name]
            if existing:
                version, created = existing[0], False
            else:
                tags = {"dvc_exp": run.data.tags.get("dvc.exp_name") or run.info.run_name or "",
                        "git_commit": run.data.tags.get("git.commit", ""), "run_name": run.info.run_name or ""}
                version = client.create_model_version(name, source=f"models:/{model_id}", run_id=run.info.run_id,
                                                      model_id=model_id, tags={k: v for k, v in tags.items() if v})
                undo.append(lambda: client.delete_model_version(name, version.version))
                created = True
            client.set_registered_model_alias(name, alias, version.version)
        except BaseException:
            for step in reversed(undo):
                try:
                    step()
                except Exception as exc:  # the first error is the one to report
                    log.warning("registry: could not undo a partial registration (%s)", first_line(exc)[:200])
            raise
    return version, created
