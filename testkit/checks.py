"""What a test checks of a stage's outcome: one-line errors, outputs left intact, no leftovers, interrupts."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from testkit.project import REPO_ROOT

# absl's "WARNING: All log messages before absl::InitializeLog()..." and glog lines "I0000 00:00:...".
TF_NATIVE_LOG = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|[IWEF]\d{4} \d\d:\d\d:\d\d)")


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def assert_one_line_error(proc: subprocess.CompletedProcess, stage: str, *fragments: str, strict: bool = True) -> str:
    """Exit 2, no traceback, one ``error: <stage>:`` line holding ``fragments``; return it.

    ``strict``: that line is all the stage printed (the error came before any log line);
    TensorFlow's own C++ start-up lines, which no setting silences, are not the stage's.
    """
    lines = [line for line in proc.stderr.strip().splitlines() if not TF_NATIVE_LOG.match(line)]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0] and errors[0].startswith(f"error: {stage}: ")
    if strict:
        assert lines == errors, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0]
    return errors[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> sha256), to prove outputs are byte-identical."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    """Temporary names the stages use (``.x.tmp-*``, ``.download-*``, ``*.part``) still under ``folder``."""
    return sorted(p.name for p in folder.rglob(".*") if ".tmp-" in p.name or p.name.startswith((".download-", ".write-probe")))


def _ignore_sigint() -> None:
    # What a shell does to a job it starts in the background (`cmd &`) without job control.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def interrupt(project: Path, stage: str, sig: signal.Signals, started,
              sigint_ignored: bool = False, to_group: bool = False) -> subprocess.CompletedProcess:
    """Start ``python -m stages.<stage>``, send ``sig`` once ``started()`` is true, and wait for it.

    ``sigint_ignored`` starts the stage with SIGINT ignored, as a background job inherits it.
    ``to_group`` sends ``sig`` to the stage and every process it started, as a terminal's
    Ctrl-C does (the stage runs in a process group of its own, so the test gets none).
    """
    proc = subprocess.Popen([sys.executable, "-m", f"stages.{stage}"], cwd=project, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, start_new_session=True,
                            preexec_fn=_ignore_sigint if sigint_ignored else None)
    deadline = time.monotonic() + 60
    while not started() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the stage finished before it could be interrupted: give it more work"
    if to_group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def assert_interrupted(proc: subprocess.CompletedProcess, stage: str, code: int = 130) -> None:
    """Exit ``code`` (130 after SIGINT, 143 after SIGTERM), no traceback, the one interrupted line last."""
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {stage}: interrupted; its previous outputs were left as they were, run it again")
