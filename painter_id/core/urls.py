"""Links with credentials: Basic auth from the link or ``~/.netrc``, and the redacted form that is safe to show.

Where a login may go: a password written in a link is sent only to that link's origin
(scheme, host and port); a ``~/.netrc`` entry only to the host it names; neither after a
redirect from ``https`` to plain ``http``. :func:`open_url` follows redirects under that rule,
and only to ``http`` and ``https`` links.
"""

from __future__ import annotations

import base64
import netrc
import os
import re
import urllib.error
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


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(
        parts.scheme.lower())


def login_for(url: str, first: str) -> tuple[str, str] | None:
    """The Basic login that may go to ``url`` on the way from the link ``first`` the user wrote, or ``None``.

    The link's own ``user:password@`` only at ``first``'s origin; else the ``~/.netrc`` entry of
    ``url``'s host; nothing over plain ``http`` once the chain started with ``https``.
    """
    target, start = urllib.parse.urlsplit(url), urllib.parse.urlsplit(first)
    if target.scheme.lower() == "http" and start.scheme.lower() == "https":
        return None
    if start.username is not None and _origin(url) == _origin(first):
        return urllib.parse.unquote(start.username), urllib.parse.unquote(start.password or "")
    return netrc_login(target.hostname or "")


def _with_login(request: urllib.request.Request, login: tuple[str, str] | None) -> urllib.request.Request:
    if login is not None:
        token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode("ascii")
        # Unredirected: urllib would copy an ordinary header to whatever host a redirect names.
        request.add_unredirected_header("Authorization", f"Basic {token}")
    return request


def authorized_request(url: str) -> urllib.request.Request:
    """A request for ``url`` (without its ``user:password@``) with the login :func:`login_for` allows there."""
    parts = urllib.parse.urlsplit(url)
    request = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=_host_port(parts))))
    return _with_login(request, login_for(url, url))


class _LoginPerHost(urllib.request.HTTPRedirectHandler):
    """Follows a redirect with the login :func:`login_for` allows at its target, never the previous one's."""

    def __init__(self, first: str):
        super().__init__()
        self.first = first

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        target = urllib.parse.urljoin(req.full_url, newurl)
        if urllib.parse.urlsplit(target).scheme.lower() not in ("http", "https"):
            # urllib would follow ftp:// too, where no rule of ours about logins applies.
            raise urllib.error.URLError(f"redirected to {redact_url(target)}: only http and https links are followed")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.remove_header("Authorization")
            _with_login(new, login_for(new.full_url, self.first))
        return new


def open_url(url: str, timeout: float, method: str = "GET"):
    """Open ``url`` (a ``user:password@`` in it, or ``~/.netrc``, gives the login) following redirects safely."""
    request = authorized_request(url)
    request.method = method
    return urllib.request.build_opener(_LoginPerHost(url)).open(request, timeout=timeout)
