"""The trial stack's S3 server: moto's S3 API, every bucket and object also kept as a file in a folder.

moto (pinned in the ``team`` extra) keeps what it is sent in memory only, which a trial that
is stopped and started again would lose. Here every bucket created or deleted and every
object written or deleted through the API is mirrored, before the request is answered, to
``<folder>/<bucket>/<key>`` (written to ``<folder>/.staging`` and renamed, so a file is
whole or absent), and ``serve`` loads that folder back when it starts. The hooks sit on
moto's ``S3Backend`` methods that every write goes through (``put_object`` also serves
copies and completed multipart uploads; ``delete_objects`` calls ``delete_object``).

Run by :mod:`painter_id.tracking.trial_stack` as ``python .../trial_s3.py --folder F --port P``
(a file that imports nothing of painter_id, so it needs no import path); only on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path
from typing import Callable, Optional, Sequence

log = logging.getLogger(__name__)

# Bucket names start with a letter or digit, so this folder can never be one.
STAGING = ".staging"


def object_path(root: Path, bucket: str, key: str) -> Path:
    """Where object ``key`` of ``bucket`` is kept: one folder per ``/``-separated part, each part %-escaped.

    ``.``, ``..`` and empty parts are escaped too, so no key reaches outside its bucket's folder.
    """
    parts = []
    for part in key.split("/"):
        escaped = urllib.parse.quote(part, safe=" !$&'()+,;=@[]^`{}~")
        parts.append({"": "%", ".": "%2E", "..": "%2E%2E"}.get(escaped, escaped))
    return root / bucket / Path(*parts)


def key_of(root: Path, path: Path) -> tuple[str, str]:
    """``(bucket, key)`` of a file under ``root``: the inverse of :func:`object_path`."""
    bucket, *parts = path.relative_to(root).parts
    return bucket, "/".join("" if part == "%" else urllib.parse.unquote(part) for part in parts)


def storable_path(root: Path, bucket: str, key: str) -> Path:
    """:func:`object_path`, checked to be free for a file (raises ``OSError`` otherwise).

    S3 allows objects ``a`` and ``a/b`` side by side; a folder cannot hold both a file and a
    folder ``a``, so the second is refused before moto stores it.
    """
    path = object_path(root, bucket, key)
    if path.is_dir() or any(parent.is_file() for parent in path.parents):
        raise OSError(f"object {key!r} of bucket {bucket}: its path clashes with another object's; use another key")
    return path


def write_object(path: Path, staging: Path, data: bytes) -> None:
    """Keep ``data`` at ``path``: a file staged in ``staging`` and renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staged = tempfile.mkstemp(dir=staging)
    try:
        # No fsync: the rename already keeps a killed server from leaving half an object, and
        # one fsync per object would slow a `dvc push` of thousands of files for a power cut's sake.
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(staged, path)
    finally:
        Path(staged).unlink(missing_ok=True)


def remove_object(root: Path, bucket: str, key: str) -> None:
    """Forget object ``key``: its file, and the folders that it leaves empty."""
    path = object_path(root, bucket, key)
    path.unlink(missing_ok=True)
    for parent in path.parents:
        if parent == root / bucket:
            break
        try:
            parent.rmdir()
        except OSError:  # not empty, or already gone
            break


def install_hooks(root: Path) -> None:
    """Mirror every bucket and object change of moto's S3 backend (this process's) into ``root``."""
    from moto.s3.exceptions import InvalidArgumentError
    from moto.s3.models import S3Backend

    # moto's server is threaded: a change and its file are made under one lock, so two writes
    # of one key leave the file holding what moto holds.
    lock = threading.Lock()
    put, delete, create, drop = (S3Backend.put_object, S3Backend.delete_object,
                                 S3Backend.create_bucket, S3Backend.delete_bucket)

    def put_object(self, bucket_name, key_name, value, *args, **kwargs):
        with lock:
            try:
                path = storable_path(root, bucket_name, key_name)
            except OSError as exc:  # an S3 error the client shows, not a server error it retries
                raise InvalidArgumentError(str(exc), "Key", key_name) from None
            key = put(self, bucket_name, key_name, value, *args, **kwargs)
            write_object(path, root / STAGING, bytes(key.value))
        return key

    def delete_object(self, bucket_name, key_name, *args, **kwargs):
        with lock:
            result = delete(self, bucket_name, key_name, *args, **kwargs)
            remove_object(root, bucket_name, key_name)
        return result

    def create_bucket(self, bucket_name, *args, **kwargs):
        bucket = create(self, bucket_name, *args, **kwargs)
        (root / bucket_name).mkdir(exist_ok=True)
        return bucket

    def delete_bucket(self, bucket_name):
        bucket = drop(self, bucket_name)
        if bucket is not None:  # moto refuses (None) while the bucket holds objects
            shutil.rmtree(root / bucket_name, ignore_errors=True)
        return bucket

    S3Backend.put_object, S3Backend.delete_object = put_object, delete_object
    S3Backend.create_bucket, S3Backend.delete_bucket = create_bucket, delete_bucket


def load(root: Path, region: str = "us-east-1") -> int:
    """Create in moto's backend every bucket and object kept under ``root``; return the number of objects."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    shutil.rmtree(root / STAGING, ignore_errors=True)  # what a killed server was writing: never answered
    (root / STAGING).mkdir(parents=True)
    count = 0
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != STAGING):
        backend.create_bucket(folder.name, region)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            backend.put_object(*key_of(root, path), path.read_bytes())
            count += 1
    return count


def serve(root: Path, port: int, ready: Optional[Callable[[], None]] = None) -> None:
    """Answer S3 requests on 127.0.0.1:``port`` until SIGTERM or SIGINT, keeping everything under ``root``."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    root.mkdir(parents=True, exist_ok=True)
    count = load(root)  # before the hooks: loading must not write the files it reads
    install_hooks(root)
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    log.info("S3 on http://127.0.0.1:%d, %d objects kept in %s", port, count, root)
    # shutdown() waits for serve_forever to return, so it runs in another thread than the handler's.
    stop = lambda *_: threading.Thread(target=server.shutdown, daemon=True).start()  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if ready:
        ready()
    server.serve_forever()
    server.server_close()


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``python trial_s3.py --folder F --port P``."""
    parser = argparse.ArgumentParser(prog="trial_s3.py", description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True, help="where buckets and objects are kept")
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    serve(args.folder.absolute(), args.port)


if __name__ == "__main__":
    # Run as a file, its folder comes first on the import path: its neighbours (store.py,
    # runs.py...) must not shadow a module that moto or werkzeug imports.
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]
    main()
