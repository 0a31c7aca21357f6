"""MLflow bookkeeping for train and evaluate: where the store is, one run per training.

The default store is ``sqlite:///<main workspace>/mlflow.db``, where the main workspace is
the repository the user works in, even when ``dvc exp run --temp/--queue`` runs the stage
in a copy under ``.dvc/tmp/exps/``; so every experiment lands in the same store. The
store and the experiment are created once, under a file lock, before any run logs
(:func:`prepare_store`), because parallel queued experiments opening a fresh SQLite store
race in its schema migration.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional

import mlflow
from filelock import FileLock, Timeout
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException

from painter_id.atomic import process_alive
from painter_id.errors import PipelineError, first_line
from painter_id.params import MlflowParams
from painter_id.urls import redact_url
from painter_id.workspace import git_output, main_workspace

log = logging.getLogger(__name__)

DEFAULT_DB = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
LOCK_TIMEOUT_S = 300
# While checking that a remote store answers: fail within seconds, not after minutes of retries.
QUICK_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
# MLflow limits a batch to 1000 metrics and 100 params.
PARAM_BATCH = 100
# A URL in free text: its user:password@ and query string (signed links) must never be recorded.
# Who runs a run: a later run on the same host ends it as KILLED once that process is gone.
PID_TAG, HOST_TAG = "painter_id.pid", "painter_id.host"
URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


def resolve_tracking_uri(params: MlflowParams, cwd: Optional[Path] = None,
                         env: Optional[Mapping[str, str]] = None) -> str:
    """The tracking URI: ``$MLFLOW_TRACKING_URI``, else ``mlflow.tracking_uri``, else the default store.

    Relative SQLite paths and plain folder paths are taken relative to the main workspace.
    """
    env = os.environ if env is None else env
    if env.get("MLFLOW_TRACKING_URI"):
        return env["MLFLOW_TRACKING_URI"]
    uri = params.tracking_uri
    if not uri:
        return f"sqlite:///{main_workspace(cwd, env) / DEFAULT_DB}"
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if path and not path.startswith("/") and path != ":memory:":
            return f"sqlite:///{main_workspace(cwd, env) / path}"
        return uri
    if "://" not in uri:
        path = Path(uri).expanduser()
        return str(path if path.is_absolute() else main_workspace(cwd, env) / path)
    return uri


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tracking-uri`` and ``--experiment``, as the commands that read the pipeline's runs take them."""
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: as the train stage)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default: mlflow.experiment)")


def store_from_arguments(args: argparse.Namespace, params: MlflowParams) -> tuple[str, str]:
    """``(tracking URI, experiment name)``: the command-line flags, else what the train stage uses."""
    return args.tracking_uri or resolve_tracking_uri(params), args.experiment or params.experiment


def sqlite_path(uri: str) -> Optional[Path]:
    """The database file of a ``sqlite:///`` URI (``None`` for other stores)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def quick_http() -> contextlib.AbstractContextManager:
    """While it is open, MLflow's HTTP requests fail within seconds instead of retrying for minutes."""
    return _environ(QUICK_HTTP)


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _check_sqlite_writable(db: Path) -> None:
    folder = db.parent
    hint = "set mlflow.tracking_uri (or MLFLOW_TRACKING_URI) to a writable place"
    if not folder.is_dir():
        raise PipelineError(f"MLflow store {db}: folder {folder} does not exist; create it or {hint}")
    probe = folder / f".{db.name}.write-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
        if db.exists():
            with open(db, "r+b"):
                pass
    except OSError as exc:
        raise PipelineError(f"MLflow store {db}: not writable ({exc.strerror or exc}); {hint}") from None


def _get_or_create_experiment(client: mlflow.MlflowClient, name: str, artifact_location: Optional[str]) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=artifact_location)
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def prepare_store(params: MlflowParams, cwd: Optional[Path] = None) -> tuple[str, str]:
    """Create (if needed) and check the tracking store and the experiment; return ``(uri, experiment_id)``.

    Runs before any training, so an unreachable or unwritable store is a one-line
    :class:`PipelineError` up front. SQLite stores are created under a lock on
    ``<db>.lock``: only one process migrates a fresh database.
    """
    uri = resolve_tracking_uri(params, cwd)
    db = sqlite_path(uri)
    # Alembic logs every schema migration step at INFO; one line from us is enough.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if db is not None:
            _check_sqlite_writable(db)
            artifacts = (db.parent / ARTIFACTS_DIR).as_uri()
            with FileLock(f"{db}.lock", timeout=LOCK_TIMEOUT_S):
                experiment_id = _get_or_create_experiment(mlflow.MlflowClient(uri), params.experiment, artifacts)
        else:
            with quick_http():
                experiment_id = _get_or_create_experiment(mlflow.MlflowClient(uri), params.experiment, None)
    except PipelineError:
        raise
    except Timeout:
        raise PipelineError(f"MLflow store {db}: locked by another process for {LOCK_TIMEOUT_S}s; try again") from None
    except Exception as exc:  # MLflow, SQLAlchemy and requests all raise their own types
        reason = first_line(exc)[:300]
        if db is not None and "database is locked" in reason:
            # SQLite gave up waiting (its busy timeout) for another process's write transaction.
            raise PipelineError(
                f"MLflow store {db}: locked by another process (a training, evaluation or `mlflow ui` "
                "writing to it); let it finish or stop it, then run again"
            ) from None
        raise PipelineError(
            f"MLflow tracking store {uri} cannot be used ({reason}); start it or set mlflow.tracking_uri "
            "(or MLFLOW_TRACKING_URI) to a store that works"
        ) from None
    log.info("MLflow: experiment %r (id %s) in %s", params.experiment, experiment_id, uri)
    end_dead_runs(uri, experiment_id)
    return uri, experiment_id


def end_dead_runs(uri: str, experiment_id: str) -> list[str]:
    """End as KILLED the RUNNING runs of this host whose process is gone (``kill -9``, a crash); return their ids.

    Housekeeping only: a store that cannot be searched is logged, never fatal.
    """
    host, ended = socket.gethostname(), []
    try:
        with quick_http():
            client = mlflow.MlflowClient(uri)
            running = client.search_runs([experiment_id], filter_string=(
                f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"), max_results=1000)
            for run in running:
                pid = run.data.tags.get(PID_TAG, "")
                if pid.isdigit() and not process_alive(int(pid)):
                    client.set_terminated(run.info.run_id, status=RunStatus.to_string(RunStatus.KILLED))
                    ended.append(run.info.run_id)
    except Exception as exc:  # MLflow, SQLAlchemy and requests all raise their own types
        log.warning("MLflow: could not look for runs left RUNNING by killed processes (%s)", first_line(exc)[:200])
    for run_id in ended:
        log.warning("MLflow: run %s was left RUNNING by a process that is gone; ended it as KILLED", run_id)
    return ended


def run_name(backbone: str, frozen_layers: int, env: Optional[Mapping[str, str]] = None) -> str:
    """The DVC experiment name under ``dvc exp run``, else ``<backbone>-frozen<N>-<timestamp>``."""
    env = os.environ if env is None else env
    return env.get("DVC_EXP_NAME") or f"{backbone}-frozen{frozen_layers}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_tags(cwd: Optional[Path] = None, env: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """Tags tying a run to its code: git commit, DVC experiment name and baseline commit."""
    env = os.environ if env is None else env
    commit = git_output(["rev-parse", "HEAD"], Path.cwd() if cwd is None else Path(cwd))
    tags = {
        "git.commit": commit,
        "mlflow.source.git.commit": commit,
        "dvc.exp_name": env.get("DVC_EXP_NAME"),
        "dvc.baseline_rev": env.get("DVC_EXP_BASELINE_REV") or commit,
    }
    return {key: value for key, value in tags.items() if value}


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


def redact(text: str) -> str:
    """``text`` with every URL's ``user:password@``, query and fragment removed, for what MLflow records."""
    def clean(match: re.Match) -> str:
        url = match.group(0)
        # Only URLs that carry something to hide: redact_url would also normalise sqlite:////x.
        return redact_url(url) if any(ch in url for ch in "@?#") else url

    return URL_IN_TEXT.sub(clean, text)


def log_params(client: mlflow.MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Log ``params`` (values as strings; ``None`` as ``null``, like params.yaml; no URL credentials)."""
    items = [Param(key, "null" if value is None else redact(str(value))) for key, value in params.items()]
    for start in range(0, len(items), PARAM_BATCH):
        client.log_batch(run_id, params=items[start:start + PARAM_BATCH])


def log_metrics(client: mlflow.MlflowClient, run_id: str, metrics: Mapping[str, float],
                step: int = 0, model_id: Optional[str] = None) -> None:
    """Log numeric ``metrics`` at ``step`` in one call; with ``model_id`` they are also the logged model's."""
    now = int(time.time() * 1000)
    items = [Metric(key, float(value), now, step, model_id=model_id) for key, value in metrics.items()]
    client.log_batch(run_id, metrics=items)


def log_artifacts(client: mlflow.MlflowClient, run_id: str, paths: Iterable[os.PathLike | str]) -> None:
    """Copy each file in ``paths`` into the run's artifacts; YAML files (params) without URL credentials."""
    for path in paths:
        path = Path(path)
        if path.suffix not in (".yaml", ".yml"):
            client.log_artifact(run_id, str(path))
            continue
        with tempfile.TemporaryDirectory(prefix=".mlflow-artifact-") as folder:
            clean = Path(folder) / path.name
            clean.write_text(redact(path.read_text(encoding="utf-8")), encoding="utf-8")
            client.log_artifact(run_id, str(clean))


def find_run(client: mlflow.MlflowClient, run_id: str) -> bool:
    """True when ``run_id`` exists in the store and is not deleted."""
    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException:
        return False
