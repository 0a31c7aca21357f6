"""Atomic output writing: every output appears whole or not at all.

Outputs are written to a temporary sibling (same folder, so the rename stays on one
filesystem) and renamed into place only once complete; an error or interrupt removes the
temporary and leaves whatever was there before.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from painter_id.core import stop
from painter_id.core.errors import PipelineError
from painter_id.core.paths import TEMP_PARENT, TEMP_PREFIXES


def owned_folder(path: os.PathLike | str) -> Path:
    """``path`` as an absolute path, after checking that it and its parents are folders or missing.

    A file (or a broken link) where painter-id keeps a folder is one line naming it, not a
    traceback from deep inside whatever tried to create the folder.
    """
    path = Path(path).absolute()
    for entry in (path, *path.parents):
        if entry.is_dir():
            break
        if entry.exists() or entry.is_symlink():
            what = "a broken link" if not entry.exists() else "a file"
            raise PipelineError(f"{entry} is {what} where painter-id keeps a folder; move it away (or delete it) "
                                "and run again")
    return path


def ensure_writable_dir(path: os.PathLike | str) -> Path:
    """Create ``path``'s parent folder if needed and check it is writable, before work starts."""
    parent = owned_folder(Path(path).absolute().parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=parent, prefix=".write-probe-", delete=True)
        probe.close()
    except OSError as exc:
        raise PipelineError(
            f"{parent}: cannot write outputs there ({exc.strerror or exc}); fix its permissions or free space"
        ) from None
    return parent


def process_alive(pid: int) -> bool:
    """True while process ``pid`` exists on this machine (a reused pid reads as alive: the safe side)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid > 0
    return True


def remove_stale(parent: Path, prefix: str) -> None:
    """Remove ``parent/<prefix><pid>-*`` left by a process that is gone (killed with -9, power cut).

    Every temporary name carries its owner's pid, so a rerun can tell a dead run's leftovers
    from a live run's work in progress.
    """
    for entry in parent.glob(f"{glob_escape(prefix)}*"):
        pid = entry.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            _remove(entry)


def glob_escape(text: str) -> str:
    """``text`` with glob's special characters matched literally."""
    return "".join(f"[{ch}]" if ch in "*?[" else ch for ch in text)


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A new folder ``parent/<prefix><pid>-<random>``, after removing those of dead processes.

    The one rule for temporaries: each lies beside what it is for, named with its owner's pid,
    and removed by its owner when done, or by the next run once the owner is gone.
    """
    owned_folder(parent).mkdir(parents=True, exist_ok=True)
    remove_stale(parent, prefix)
    return Path(tempfile.mkdtemp(dir=parent, prefix=f"{prefix}{os.getpid()}-"))


def remove_dead_temporaries() -> None:
    """Remove every temporary (:data:`painter_id.core.paths.TEMP_PREFIXES`) whose process is gone.

    Run before every stage, so what a killed stage left is gone by the next run of any stage,
    whichever path that run takes.
    """
    if TEMP_PARENT.is_dir():
        for prefix in TEMP_PREFIXES:
            remove_stale(TEMP_PARENT, prefix)


@contextlib.contextmanager
def _created(create: Callable[[], Path]) -> Iterator[Path]:
    """What ``create()`` makes, for the length of a block, removed after it whatever happens.

    A signal while it is made waits until its removal is arranged (:func:`stop.held`), so
    even a Ctrl-C sent the moment it appears leaves nothing behind.
    """
    with contextlib.ExitStack() as cleanup:
        with stop.held():
            created = create()
            cleanup.callback(_remove, created)
        yield created


@contextlib.contextmanager
def temporary_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """:func:`make_temp_dir` for the length of a block, removed after it whatever happens."""
    with _created(lambda: make_temp_dir(parent, prefix)) as folder:
        yield folder


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: os.PathLike | str) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces the folder ``path`` when the block succeeds."""
    path = Path(path)
    owned_folder(path)  # a file there is not ours to replace
    parent = ensure_writable_dir(path)
    with _created(lambda: make_temp_dir(parent, f".{path.name}.tmp-")) as tmp:
        remove_stale(parent, f".{path.name}.old-")
        # mkdtemp makes the folder owner-only; outputs should be as readable as any other folder.
        tmp.chmod(0o755)
        yield tmp
        old = parent / f".{path.name}.old-{os.getpid()}"
        if path.exists() or path.is_symlink():
            os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix) that replaces it when the block succeeds.

    For writers that want a file name rather than a handle, such as ``model.save``.
    """
    path = Path(path)
    parent = ensure_writable_dir(path)
    remove_stale(parent, f".{path.stem}.tmp-")
    with _created(lambda: _temp_file(parent, f".{path.stem}.tmp-{os.getpid()}-", path.suffix)) as tmp:
        yield tmp
        # mkstemp makes the file owner-only; outputs should be as readable as any other file.
        tmp.chmod(0o644)
        os.replace(tmp, path)


def _temp_file(parent: Path, prefix: str, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(dir=parent, prefix=prefix, suffix=suffix)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_file(path: os.PathLike | str, mode: str = "w", **open_kwargs) -> Iterator:
    """Open a temporary file that replaces ``path`` when the block succeeds."""
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
        open_kwargs.setdefault("newline", "")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_kwargs) as handle:
            yield handle


def write_json(path: os.PathLike | str, data) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_file(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")


def write_csv(path: os.PathLike | str, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Write a CSV with ``header`` then ``rows``, atomically."""
    with atomic_file(path) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
