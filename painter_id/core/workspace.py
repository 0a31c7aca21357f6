"""Where the user's workspace is, also from inside a queued DVC experiment's copy, and git facts about it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Mapping, Optional

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

    So ``data.path: ../shared/x`` means the same folder whatever folder a stage runs in.
    (DVC's own dependency on it in ``dvc.yaml`` is taken from the copy a queued experiment
    runs in, under ``.dvc/tmp/exps/``; ``stages.source`` asks for an absolute path there.)
    """
    path = Path(path).expanduser()
    return path if path.is_absolute() else main_workspace(env=env) / path
