"""Local HTTP servers on 127.0.0.1 for the URL sources: a folder served as is, or behind a login."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves a folder without logging every request to stderr."""

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve_folder(root: Path, handler: type[SimpleHTTPRequestHandler] = QuietHandler) -> Iterator[ThreadingHTTPServer]:
    """A local HTTP server (127.0.0.1, free port, from a thread) serving ``root`` while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class AuthHandler(QuietHandler):
    """Serves files only with the Basic credentials in ``self.server.expected``, else 401."""

    def allowed(self) -> bool:
        if self.headers.get("Authorization") == self.server.expected:
            return True
        self.send_error(401)
        return False

    def do_GET(self) -> None:
        if self.allowed():
            super().do_GET()

    def do_HEAD(self) -> None:
        if self.allowed():
            super().do_HEAD()
