"""One MLflow run per training: its name, tags, params, metrics and artifacts, and how it ends.

A run is created and ended by :func:`start_run` (FINISHED, FAILED, or KILLED on an
interrupt); params and free text are recorded without URL credentials (:func:`painter_id.core.urls.redact_text`).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import mlflow
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException

from painter_id.core.atomic import temporary_dir
from painter_id.core.errors import first_line
from painter_id.core.paths import ARTIFACT_TEMP, TEMP_PARENT
from painter_id.core.urls import redact_text, redact_url
from painter_id.core.workspace import git_output
from painter_id.tracking.store import HOST_TAG, PID_TAG

log = logging.getLogger(__name__)

# MLflow limits a batch to 1000 metrics and 100 params.
METRIC_BATCH = 1000
# The run's headline is ``accuracy`` (what evaluate scored); the per-epoch curves are named apart.
HISTORY_KEYS = {"loss": "train_loss", "accuracy": "train_accuracy"}
# What the headline figures were scored on: "80 test paintings", "5-fold cross-validation over 431 paintings".
SCORED_ON_TAG = "scored_on"
PARAM_BATCH = 100


def run_name(backbone: str, frozen_layers: int, env: Optional[Mapping[str, str]] = None) -> str:
    """The DVC experiment name under ``dvc exp run``, else ``<backbone>-frozen<N>-<timestamp>``."""
    env = os.environ if env is None else env
    return env.get("DVC_EXP_NAME") or f"{backbone}-frozen{frozen_layers}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_tags(cwd: Optional[Path] = None, env: Optional[Mapping[str, str]] = None,
             source: Optional[str] = None) -> dict[str, str]:
    """Tags tying a run to its code and its author: git commit and remote, source, user, DVC experiment.

    ``mlflow.user`` is the MLflow login (``MLFLOW_TRACKING_USERNAME``) when there is one, else
    the local user: MLflow's UI shows it as the run's user (``unknown`` without it), so a team
    can tell whose run is whose. ``mlflow.source.name`` is ``source`` (default: the script
    this process runs, relative to ``cwd``), shown with the commit as the run's source.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else Path(cwd)
    commit = git_output(["rev-parse", "HEAD"], cwd)
    remote = git_output(["remote", "get-url", "origin"], cwd)
    tags = {
        "git.commit": commit,
        "mlflow.source.git.commit": commit,
        "mlflow.source.git.repoURL": redact_url(remote) if remote and "://" in remote else remote,
        "mlflow.source.name": source or _entry_point(cwd),
        "mlflow.source.type": "LOCAL",
        "mlflow.user": env.get("MLFLOW_TRACKING_USERNAME") or _local_user(),
        "dvc.exp_name": env.get("DVC_EXP_NAME"),
        "dvc.baseline_rev": env.get("DVC_EXP_BASELINE_REV") or commit,
    }
    return {key: value for key, value in tags.items() if value}


def _entry_point(cwd: Path) -> str:
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] not in ("", "-c") else None
    if script is None:
        return "python"
    try:
        return script.absolute().relative_to(cwd.absolute()).as_posix()  # stages/train.py
    except ValueError:
        return script.name


def _local_user() -> Optional[str]:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment nor the password database
        return None


@contextlib.contextmanager
def start_run(client: mlflow.MlflowClient, experiment_id: str, name: str,
              tags: Mapping[str, str]) -> Iterator[str]:
    """Create a run and yield its id; it ends FINISHED, FAILED on an error or KILLED on an interrupt."""
    owner = {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    run = client.create_run(experiment_id, run_name=name, tags={**tags, **owner})
    run_id = run.info.run_id
    log.info("MLflow: run %r (%s)", name, run_id)
    status = RunStatus.to_string(RunStatus.FAILED)
    try:
        yield run_id
        status = RunStatus.to_string(RunStatus.FINISHED)
    except KeyboardInterrupt:
        status = RunStatus.to_string(RunStatus.KILLED)
        raise
    finally:
        client.set_terminated(run_id, status=status)


def log_params(client: mlflow.MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Log ``params`` (values as strings; ``None`` as ``null``, like params.yaml; no URL credentials)."""
    items = [Param(key, "null" if value is None else redact_text(str(value))) for key, value in params.items()]
    for start in range(0, len(items), PARAM_BATCH):
        client.log_batch(run_id, params=items[start:start + PARAM_BATCH])


def log_metrics(client: mlflow.MlflowClient, run_id: str, metrics: Mapping[str, float],
                step: int = 0, model_id: Optional[str] = None) -> None:
    """Log numeric ``metrics`` at ``step``; with ``model_id`` they are also the logged model's."""
    now = int(time.time() * 1000)
    _log_batches(client, run_id, [Metric(key, float(value), now, step, model_id=model_id)
                                  for key, value in metrics.items()])


def log_history(client: mlflow.MlflowClient, run_id: str, rows: Sequence[Mapping[str, float]]) -> None:
    """Log per-epoch rows (``{"epoch": n, "loss": ...}``) as metrics at step ``epoch``; NaN (nothing measured) is skipped.

    A store that fails is a warning, never an error: a busy store must not cost hours of
    training, and ``metrics/history.csv`` holds every row anyway.
    """
    now = int(time.time() * 1000)
    items = [Metric(HISTORY_KEYS.get(key, key), float(value), now, int(row["epoch"])) for row in rows
             for key, value in row.items() if key != "epoch" and not math.isnan(value)]
    try:
        _log_batches(client, run_id, items)
    except Exception as exc:  # MLflow, SQLAlchemy and requests all raise their own types
        log.warning("MLflow: epoch %d metrics not logged (%s)", int(rows[0]["epoch"]), first_line(exc)[:200])


def _log_batches(client: mlflow.MlflowClient, run_id: str, items: Sequence[Metric]) -> None:
    for start in range(0, len(items), METRIC_BATCH):
        client.log_batch(run_id, metrics=list(items[start:start + METRIC_BATCH]))


def log_training(client: mlflow.MlflowClient, run_id: str, summary: Mapping[str, Any], best: Mapping[str, float],
                 cv: Mapping[str, Any], seconds: float) -> None:
    """The training's results: ``train.*`` (its summary, the kept epoch's loss and accuracy, its time) and ``cv_*``."""
    at_best = {"train.best_loss": best["loss"], "train.best_accuracy": best["accuracy"]}
    numbers = {**{f"train.{key}": value for key, value in summary.items() if value is not None},
               **{key: value for key, value in at_best.items() if not math.isnan(value)},
               "train.seconds": round(seconds, 1),
               **{f"cv_{key}": value for key, value in cv.items() if isinstance(value, (int, float))}}
    log_metrics(client, run_id, numbers)


def log_dataset(client: mlflow.MlflowClient, run_id: str, dataset: Mapping[str, Any]) -> None:
    """Record the run's training data as an MLflow dataset input: its name, digest, source and counts."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    entity = Dataset(name=dataset["name"], digest=dataset["digest"], source_type="painter-id",
                     source=json.dumps({"source": redact_text(dataset["source"])}), profile=json.dumps(dataset["profile"]))
    client.log_inputs(run_id, datasets=[DatasetInput(entity, tags=[InputTag("mlflow.data.context", "training")])])


def log_artifacts(client: mlflow.MlflowClient, run_id: str, paths: Iterable[os.PathLike | str]) -> None:
    """Copy each file in ``paths`` into the run's artifacts; YAML files (params) without URL credentials."""
    for path in paths:
        path = Path(path)
        if path.suffix not in (".yaml", ".yml"):
            client.log_artifact(run_id, str(path))
            continue
        with temporary_dir(TEMP_PARENT, ARTIFACT_TEMP) as folder:
            clean = folder / path.name
            clean.write_text(redact_text(path.read_text(encoding="utf-8")), encoding="utf-8")
            client.log_artifact(run_id, str(clean))


def find_run(client: mlflow.MlflowClient, run_id: str) -> bool:
    """True when ``run_id`` exists in the store and is not deleted."""
    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException:
        return False


def log_to_mlflow(uri: str, experiment_id: str, run: dict, metrics: dict, scored_on: str,
                  artifacts: list[Path]) -> None:
    """Add the evaluation's metrics, what they were scored on (tag ``scored_on``) and pictures to the training's run.

    If that run is gone (the store was deleted or replaced), a new run tagged
    ``evaluation_only`` takes them, with a warning, so the numbers are never lost.
    """
    client = mlflow.MlflowClient(uri)
    run_id = run["run_id"]
    if run.get("tracking_uri") and run["tracking_uri"] != uri:
        log.warning("models/run.json names store %s, logging into %s", run["tracking_uri"], uri)
    if find_run(client, run_id):
        # Linked to the run's MLflow Model too (MLflow 3): its page and the registry show them.
        log_metrics(client, run_id, metrics, model_id=run.get("model_id"))
        client.set_tag(run_id, SCORED_ON_TAG, scored_on)
        log_artifacts(client, run_id, artifacts)
        log.info("MLflow: test metrics logged into run %s", run_id)
        return
    log.warning("MLflow run %s of models/run.json is not in %s; logging into a new evaluation-only run",
                run_id, uri)
    tags = {**run_tags(), "evaluation_only": "true", "training_run_id": run_id, SCORED_ON_TAG: scored_on}
    with start_run(client, experiment_id, f"evaluate-{run_id[:8]}", tags) as new_id:
        log_metrics(client, new_id, metrics)
        log_artifacts(client, new_id, artifacts)
