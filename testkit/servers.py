"""A team's servers in tests: the trial stack users start (:mod:`painter_id.tracking.trial_stack`), and what tests read.

The tests start their servers with ``painter-trial``, as docs/team-setup.md does, so the
trial a team runs is the tested one; here is only what a test reads from those servers or
looks for after them. No pytest here and no side effects on import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from painter_id.tracking.trial_stack import mlflow_request, s3_client


def bucket_objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    """Every object in ``bucket``: key -> content."""
    client = s3_client(endpoint)
    keys = [item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for item in page.get("Contents", [])]
    return {key: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def http_status(url: str, auth: Optional[tuple[str, str]] = None) -> int:
    """The HTTP status of a GET of ``url``, with basic auth when given."""
    return mlflow_request(url, auth)


def processes_naming(text: str) -> list[str]:
    """Command lines of the processes (Linux ``/proc``) whose command line or environment holds ``text``.

    A server of a trial names its folder in one or the other (PostgreSQL's ``-D``, the S3
    server's ``--folder``, MLflow's ``MLFLOW_AUTH_CONFIG_PATH``), helpers and workers too.
    """
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if text.encode() in command or text.encode() in environ:
            found.append(command.replace(b"\0", b" ").decode(errors="replace"))
    return found
