"""Links with credentials: Basic auth from the link or ``~/.netrc``, and the redacted form that is safe to show."""

from __future__ import annotations

import base64
import netrc
import os
import re
import urllib.parse
import urllib.request
from pathlib import Path

from painter_id.core.errors import PipelineError


def _host_port(parts: urllib.parse.SplitResult) -> str:
    """``host`` or ``host:port`` of a split URL: its netloc without user and password."""
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


def redact_url(url: str) -> str:
    """``url`` without user, password, query or fragment, safe to show in logs and errors."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, _host_port(parts), parts.path, "", ""))


# A URL in free text: its user:password@ and query string (signed links) must never be recorded.
URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


def redact_text(text: str) -> str:
    """``text`` with every URL's ``user:password@``, query and fragment removed, for what MLflow records or errors show."""
    def clean(match: re.Match) -> str:
        url = match.group(0)
        # Only URLs that carry something to hide: redact_url would also normalise sqlite:////x.
        return redact_url(url) if any(ch in url for ch in "@?#") else url

    return URL_IN_TEXT.sub(clean, text)


def has_password(url: str) -> bool:
    """True when ``url`` spells out a password (which DVC would copy into ``dvc.lock``)."""
    return bool(urllib.parse.urlsplit(url).password)


def netrc_login(host: str) -> tuple[str, str] | None:
    """``(login, password)`` for ``host`` from ``$NETRC`` or ``~/.netrc``, as DVC's HTTP client reads them.

    DVC checks a ``data.url`` dependency with aiohttp, which takes Basic credentials from
    that file (``trust_env``); reading the same file here makes the download see what
    ``dvc status`` sees, with no password in the link, ``params.yaml`` or ``dvc.lock``.
    """
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    if not host or not path.is_file():
        return None
    try:
        found = netrc.netrc(path).authenticators(host)
    except (netrc.NetrcParseError, OSError) as exc:
        raise PipelineError(f"{path}: cannot read it ({type(exc).__name__}); fix or remove that file") from None
    return (found[0], found[2]) if found else None


def authorized_request(url: str) -> urllib.request.Request:
    """A request for ``url`` with Basic auth from ``user:password@`` in the link, else from ``~/.netrc``."""
    parts = urllib.parse.urlsplit(url)
    request = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=_host_port(parts))))
    if parts.username is not None:
        login = urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")
    else:
        login = netrc_login(parts.hostname or "")
    if login is not None:
        user, password = login
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        request.add_header("Authorization", f"Basic {token}")
    return request
