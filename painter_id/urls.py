"""Links with credentials: ``${NAME}`` references, Basic auth, and the redacted form that is safe to show."""

from __future__ import annotations

import base64
import os
import re
import urllib.parse
import urllib.request

from painter_id.errors import PipelineError

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _host_port(parts: urllib.parse.SplitResult) -> str:
    """``host`` or ``host:port`` of a split URL: its netloc without user and password."""
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


def redact_url(url: str) -> str:
    """``url`` without user, password, query or fragment, safe to show in logs and errors."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, _host_port(parts), parts.path, "", ""))


def expand_env(url: str) -> str:
    """Replace each ``${NAME}`` in ``url`` by the environment variable ``NAME``.

    So a password can stay out of ``params.yaml`` (and out of ``dvc.lock`` and git, which
    record params verbatim): ``data.url: https://${ART_USER}:${ART_TOKEN}@host/a.zip``.
    """
    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise PipelineError(f"params.yaml: data.url uses ${{{name}}} but {name} is not set; export {name} and run again")
        return urllib.parse.quote(os.environ[name], safe="")

    return ENV_REFERENCE.sub(value, url)


def has_literal_password(url: str) -> bool:
    """True when ``url`` spells out a password rather than a ``${NAME}`` reference."""
    password = urllib.parse.urlsplit(url).password
    return bool(password) and not ENV_REFERENCE.fullmatch(password)


def authorized_request(url: str) -> urllib.request.Request:
    """A request for ``url``; ``user:password@`` in the link becomes a Basic auth header."""
    parts = urllib.parse.urlsplit(url)
    request = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=_host_port(parts))))
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        request.add_header("Authorization", f"Basic {token}")
    return request
