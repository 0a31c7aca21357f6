"""Where MLflow runs are recorded: the store of a workspace and its queued experiments.

The default store is ``sqlite:///<main workspace>/mlflow.db``, where the main workspace is
the repository the user works in, even when ``dvc exp run --temp/--queue`` runs the stage
in a copy under ``.dvc/tmp/exps/``; so every experiment lands in the same store. The
store and the experiment are created once, under a file lock, before any run logs
(:func:`prepare_store`), because parallel queued experiments opening a fresh SQLite store
race in its schema migration.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path
from typing import Iterator, Mapping, Optional

import mlflow
from filelock import FileLock, Timeout
from mlflow.entities import RunStatus

from painter_id.core.atomic import process_alive
from painter_id.core.errors import PipelineError, first_line
from painter_id.core.params import MlflowParams
from painter_id.core.workspace import main_workspace

log = logging.getLogger(__name__)

DEFAULT_DB = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
LOCK_TIMEOUT_S = 300
# While checking that a remote store answers: fail within seconds, not after minutes of retries.
QUICK_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
# Who runs a run: a later run on the same host ends it as KILLED once that process is gone.
PID_TAG, HOST_TAG = "painter_id.pid", "painter_id.host"


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
















