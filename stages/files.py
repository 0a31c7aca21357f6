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
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional, Sequence

from stages.errors import PipelineError

# `dvc exp run --temp/--queue` runs stages in <repo>/.dvc/tmp/exps/<name>/.
EXPS_MARKER = "/.dvc/tmp/exps/"


def git_output(args: list[str], cwd: Path) -> Optional[str]:
    """Stripped stdout of ``git <args>`` in ``cwd``, or ``None`` when git fails or is absent."""
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def _outside_exp_copy(path: str) -> Optional[Path]:
    # `dvc exp run --temp/--queue` runs stages in <repo>/.dvc/tmp/exps/<name>/.
    path = path.replace(os.sep, "/")
    if EXPS_MARKER in path:
        return Path(path.split(EXPS_MARKER, 1)[0])
    return None


def main_workspace(cwd: Optional[Path] = None, env: Optional[Mapping[str, str]] = None) -> Path:
    """The repository the user works in: ``$DVC_ROOT``, else the git top level of ``cwd``, else ``cwd``.

    Inside a temporary DVC experiment copy (``.../.dvc/tmp/exps/...``) it is the folder
    holding that ``.dvc``.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else Path(cwd)
    dvc_root = env.get("DVC_ROOT")
    for candidate in (dvc_root, str(cwd.absolute())):
        if candidate and (outside := _outside_exp_copy(candidate)) is not None:
            return outside
    if dvc_root:
        return Path(dvc_root)
    toplevel = git_output(["rev-parse", "--show-toplevel"], cwd)
    return Path(toplevel) if toplevel else cwd.absolute()


def user_path(path: os.PathLike | str, env: Optional[Mapping[str, str]] = None) -> Path:
    """A path from params.yaml: ``~`` expanded, and a relative one taken from the main workspace.

    So ``data.path: ../shared/x`` means the same folder under ``dvc repro`` and in a queued
    experiment's copy under ``.dvc/tmp/exps/``.
    """
    path = Path(path).expanduser()
    return path if path.is_absolute() else main_workspace(env=env) / path


def ensure_writable_dir(path: os.PathLike | str) -> Path:
    """Create ``path``'s parent folder if needed and check it is writable, before work starts."""
    parent = Path(path).absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=parent, prefix=".write-probe-", delete=True)
        probe.close()
    except OSError as exc:
        raise PipelineError(
            f"{parent}: cannot write outputs there ({exc.strerror or exc}); fix its permissions or free space"
        ) from None
    return parent


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: os.PathLike | str) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces ``path`` when the block succeeds."""
    path = Path(path)
    parent = ensure_writable_dir(path)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{path.name}.tmp-"))
    # mkdtemp makes the folder owner-only; outputs should be as readable as any other folder.
    tmp.chmod(0o755)
    try:
        yield tmp
        old = parent / f".{path.name}.old-{os.getpid()}"
        if path.exists() or path.is_symlink():
            os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)
    finally:
        _remove(tmp)


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix) that replaces it when the block succeeds.

    For writers that want a file name rather than a handle, such as ``model.save``.
    """
    path = Path(path)
    parent = ensure_writable_dir(path)
    fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=f".{path.stem}.tmp-", suffix=path.suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file owner-only; outputs should be as readable as any other file.
        tmp.chmod(0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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


def read_csv(path: os.PathLike | str, columns: Sequence[str], hint: str) -> list[dict[str, str]]:
    """Read a CSV an earlier stage wrote as a list of rows of strings.

    A missing or unreadable file, a missing column, an empty value in one of ``columns``
    or a file without rows is a one-line :class:`PipelineError` ending with ``hint``
    (what to run to produce the file again).
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise PipelineError(f"{path}: missing column(s) {', '.join(missing)}; {hint}")
            rows = list(reader)
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; {hint}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PipelineError(f"{path}: unreadable ({exc}); {hint}") from None
    if not rows:
        raise PipelineError(f"{path}: has no rows; {hint}")
    for line, row in enumerate(rows, start=2):
        empty = [c for c in columns if not (row.get(c) or "").strip()]
        if empty:
            raise PipelineError(f"{path}: line {line} has no {', '.join(empty)}; {hint}")
    return rows
