"""Local HTTP(S) servers on 127.0.0.1 for the URL sources: a folder served as is, behind a login,
redirecting elsewhere, or dripping its bytes; each records the logins it received."""

from __future__ import annotations

import contextlib
import functools
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves a folder without logging every request to stderr; records the login each request carried."""

    def log_message(self, *args) -> None:
        pass

    def parse_request(self) -> bool:
        ok = super().parse_request()
        if ok:
            self.server.logins.append(self.headers.get("Authorization"))
        return ok


@contextlib.contextmanager
def serve_folder(root: Path, handler: type[SimpleHTTPRequestHandler] = QuietHandler,
                 tls: tuple[Path, Path] | None = None) -> Iterator[ThreadingHTTPServer]:
    """A local HTTP server (127.0.0.1, free port, from a thread) serving ``root`` while the block runs.

    ``tls``: ``(certificate, key)`` files to serve HTTPS instead. Every request's
    ``Authorization`` header (or ``None``) is appended to ``server.logins``.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    server.logins = []
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
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


class RedirectHandler(QuietHandler):
    """Answers every request with a 302 to ``self.server.target`` + the same path."""

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.server.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET


class DripHandler(QuietHandler):
    """A server that never stalls long enough for a read timeout: one byte every ``self.server.interval`` seconds.

    GET drips a body of ``self.server.length`` bytes; HEAD answers at once, without validators,
    so the source stage must read the bytes to fingerprint them.
    """

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(self.server.length))
        self.end_headers()

    def do_GET(self) -> None:
        self.do_HEAD()
        try:
            for _ in range(self.server.length):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(self.server.interval)
        except OSError:  # the client gave up: what the test wants
            pass


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files in ``folder``: ``(certificate, key)``.

    Clients trust it through ``SSL_CERT_FILE``, which OpenSSL reads for its default CA bundle.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file
