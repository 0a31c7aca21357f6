"""``painter-trial check``: from a member's shell and clone, whether the team setup works, before any training.

Two checks, each a line when it passes and a one-line :class:`PipelineError` naming the
fix when it does not: the MLflow server (reachable, the login, the experiment, the bucket
behind its artifacts: :func:`painter_id.tracking.store.prepare_store`), and the project's
default DVC remote (there, reachable, its bucket, the S3 credentials), with the trial's
servers or a team's real ones alike.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

from painter_id.core.errors import PipelineError, first_line
from painter_id.core.params import MlflowParams

LOGIN_VARS = "MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"


def check_mlflow(cwd: Path) -> str:
    """The MLflow server this shell points at answers, takes the login, and can store artifacts."""
    from painter_id.core.params import load_section
    from painter_id.tracking.store import prepare_store, resolve_tracking_uri, sqlite_path

    params = load_section("mlflow", cwd / "params.yaml") if (cwd / "params.yaml").exists() else MlflowParams()
    uri = resolve_tracking_uri(params, cwd)
    if sqlite_path(uri) is not None or "://" not in uri:
        raise PipelineError(f"MLflow: runs go to the local store {uri}, not to the team's server; export "
                            f"{LOGIN_VARS} (painter-trial env NAME prints them for a trial)")
    uri, _ = prepare_store(params, cwd)
    user = os.environ.get("MLFLOW_TRACKING_USERNAME") or "(no login)"
    return f"MLflow {uri}: logged in as {user}; experiment {params.experiment!r} and its artifact store ready"


def remote_problem(name: str, url: str, exc: BaseException) -> str:
    """The one-line error for DVC remote ``name`` at ``url`` that failed with ``exc``."""
    kind, text = type(exc).__name__, first_line(exc)
    where = f"DVC remote {name!r} ({url})"
    if kind in ("NoCredentialsError", "PartialCredentialsError"):
        return (f"{where}: no S3 credentials: export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or keep them "
                f"out of git with: dvc remote modify --local {name} access_key_id ... (and secret_access_key)")
    if isinstance(exc, FileNotFoundError) or "NoSuchBucket" in text or "bucket does not exist" in text:
        bucket = url.split("://", 1)[-1].split("/", 1)[0]
        return (f"{where}: bucket {bucket!r} does not exist on the S3 server; create it (see docs/team-setup.md) "
                f"or correct the remote: dvc remote modify {name} url s3://BUCKET/PATH")
    if kind in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionError") or "Could not connect" in text:
        return (f"{where}: the S3 server does not answer ({text[:200]}): start it (for a trial: painter-trial start), "
                f"or correct AWS_ENDPOINT_URL (or: dvc remote modify {name} endpointurl URL)")
    if any(code in text for code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden")):
        return (f"{where}: the S3 server refused the credentials ({text[:200]}): correct AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY")
    return f"{where}: cannot be listed ({kind}: {text[:200]}); check it with: dvc push -v"


def check_dvc_remote(cwd: Path) -> str:
    """The project's default DVC remote is set, answers, has its bucket, and takes this shell's credentials."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        repo = Repo(str(cwd))
    except NotDvcRepoError:
        raise PipelineError(f"{cwd} is no DVC project: run painter-trial check in your clone of the project") from None
    with repo:
        name = repo.config["core"].get("remote")
        if not name:
            raise PipelineError("no default DVC remote: add the team's with `dvc remote add -d store s3://dvc-store/dvc`, "
                                "commit .dvc/config and push it (docs/team-setup.md)")
        remote = repo.cloud.get_remote(name)
        url = repo.config["remote"][name]["url"]
        try:
            # The bucket, not the remote's folder: a remote nothing was pushed to yet has no folder.
            remote.fs.ls(remote.path.split("/", 1)[0])
        except Exception as exc:  # botocore, s3fs and DVC raise their own types
            raise PipelineError(remote_problem(name, url, exc)) from None
    return f"DVC remote {name!r} ({url}): reachable, bucket there, credentials accepted"


def check(cwd: Optional[Path] = None) -> list[str]:
    """Both checks, in the order a member needs them; the first that fails raises its one line."""
    cwd = Path.cwd() if cwd is None else Path(cwd)
    # "Found credentials in environment variables", "experiment ... in ...": the check's own lines say it.
    for name in ("botocore", "aiobotocore", "painter_id.tracking.store"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return [check_mlflow(cwd), check_dvc_remote(cwd)]
