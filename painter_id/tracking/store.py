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
import re
import socket
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator, Mapping, Optional

import mlflow
from filelock import FileLock, Timeout
from mlflow.entities import RunStatus

from painter_id.core.atomic import owned_folder, process_alive
from painter_id.core.errors import PipelineError, first_line
from painter_id.core.limits import env_seconds
from painter_id.core.params import MlflowParams
from painter_id.core.urls import redact_text
from painter_id.core.workspace import main_workspace

log = logging.getLogger(__name__)

DEFAULT_DB = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
# How long a stage waits for another process creating the store; the environment variable sets another bound.
LOCK_WAIT_S = 300.0
LOCK_WAIT_ENV = "PAINTER_ID_LOCK_WAIT_SECONDS"
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


# The exception texts of requests/urllib3 (through MLflow) and of the database drivers, and what they mean.
UNREACHABLE = (("Connection refused", "connection refused"), ("NameResolutionError", "host not found"),
               ("Name or service not known", "host not found"), ("timed out", "timed out"),
               ("Max retries exceeded", "no answer"))
MISSING_DATABASE = re.compile(r"database \"([^\"]+)\" does not exist|Unknown database '([^']+)'")
SQL_SCHEMES = ("postgresql", "mysql", "mssql")


def store_problem(uri: str, exc: BaseException, env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """What went wrong with a team's store and how to fix it, in one line; ``None`` when not recognised.

    Covers a missing or refused login (HTTP 401, 403), a server that does not answer, and
    a PostgreSQL/MySQL store whose database does not exist or refuses the password.
    """
    env = os.environ if env is None else env
    text = str(exc)
    user = env.get("MLFLOW_TRACKING_USERNAME")
    code = getattr(exc, "error_code", None)
    if code == "UNAUTHENTICATED" or " 401 " in text:
        if not user:
            return ("the server asks for a login: export MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                    "(your MLflow login, which the server's admin creates)")
        return (f"the server refused the login of user {user!r} (HTTP 401): correct MLFLOW_TRACKING_USERNAME or "
                "MLFLOW_TRACKING_PASSWORD (the server's admin can reset the password)")
    if code == "PERMISSION_DENIED" or " 403 " in text:
        return (f"user {user!r} may not do this (HTTP 403): ask the MLflow server's admin for EDIT permission "
                "on the experiment, or use another mlflow.experiment")
    missing = MISSING_DATABASE.search(text)
    if missing:
        name = missing.group(1) or missing.group(2)
        return (f"database {name!r} does not exist on that server: create it (e.g. createdb {name}, see "
                "docs/team-setup.md) or correct mlflow.tracking_uri (or MLFLOW_TRACKING_URI)")
    if "password authentication failed" in text or "Access denied for user" in text:
        return ("the database refused the password: put it in ~/.pgpass (or the file PGPASSFILE names), "
                "never in the URI, which runs record")
    for marker, reason in UNREACHABLE:
        if marker in text:
            return (f"the server does not answer ({reason}): start it (for a trial: painter-trial start), "
                    "or correct MLFLOW_TRACKING_URI (or mlflow.tracking_uri)")
    return None


def check_database(uri: str) -> None:
    """Connect once to a SQL store (PostgreSQL, MySQL) within seconds; raise what went wrong.

    MLflow itself retries a failed connection for minutes before it gives up.
    """
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": 5}, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


def check_artifact_store(uri: str) -> None:
    """Ask a tracking server that serves artifacts whether it can list them: a missing bucket is seen now.

    Otherwise it would be seen at the end of a training, when the run's files are logged.
    A server that does not serve artifacts (clients write to the store themselves) answers
    404 without a JSON error and is left alone.
    """
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    reply = http_request(get_default_host_creds(uri), "/api/2.0/mlflow-artifacts/artifacts", "GET",
                         max_retries=0, timeout=10)
    if reply.status_code == 200:
        return
    try:
        message = str(reply.json().get("message", ""))
    except ValueError:
        return
    bucket = re.search(r"in (s3://([^/\s:]+)[^\s:]*)", message)
    if "bucket does not exist" in message and bucket:
        raise PipelineError(
            f"MLflow server {redact_text(uri)} cannot store artifacts: bucket {bucket.group(2)!r} ({bucket.group(1)}) does not "
            "exist on its S3 server; create it there (see docs/team-setup.md), or restart the server with another "
            "--artifacts-destination")
    if message:
        raise PipelineError(f"MLflow server {redact_text(uri)} cannot store artifacts ({message[:300]}); see the server's log")


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
    _check_local_artifacts(experiment.artifact_location)
    return experiment.experiment_id


def _check_local_artifacts(location: str) -> None:
    # MLflow creates a run's artifact folders as it logs, deep in a traceback if a file is in the way.
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme in ("", "file"):
        owned_folder(urllib.request.url2pathname(parsed.path))


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
    lock_wait = env_seconds(LOCK_WAIT_ENV, LOCK_WAIT_S)
    try:
        if db is not None:
            _check_sqlite_writable(db)
            artifacts = owned_folder(db.parent / ARTIFACTS_DIR).as_uri()
            with FileLock(f"{db}.lock", timeout=lock_wait):
                experiment_id = _get_or_create_experiment(mlflow.MlflowClient(uri), params.experiment, artifacts)
        else:
            if uri.split(":", 1)[0].split("+", 1)[0] in SQL_SCHEMES:
                check_database(uri)
            with quick_http():
                experiment_id = _get_or_create_experiment(mlflow.MlflowClient(uri), params.experiment, None)
                if uri.startswith(("http://", "https://")):
                    check_artifact_store(uri)
    except PipelineError:
        raise
    except Timeout:
        raise PipelineError(f"MLflow store {db}: locked by another process for {lock_wait:g} s "
                            f"({LOCK_WAIT_ENV} sets how long to wait); let it finish or stop it, then run again") from None
    except Exception as exc:  # MLflow, SQLAlchemy and requests all raise their own types
        reason = first_line(exc)[:300]
        if db is not None and "database is locked" in reason:
            # SQLite gave up waiting (its busy timeout) for another process's write transaction.
            raise PipelineError(
                f"MLflow store {db}: locked by another process (a training, evaluation or `mlflow ui` "
                "writing to it); let it finish or stop it, then run again"
            ) from None
        problem = store_problem(uri, exc)
        if problem:
            raise PipelineError(f"MLflow tracking store {redact_text(uri)}: {problem}") from None
        raise PipelineError(
            f"MLflow tracking store {redact_text(uri)} cannot be used ({redact_text(reason)}); start it or set "
            "mlflow.tracking_uri (or MLFLOW_TRACKING_URI) to a store that works"
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
